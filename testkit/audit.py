"""The auditor: reads a member's RAW items from the table and checks the ledger's invariants.

Used after concurrency, property-based, fault and load runs. It is a second, independent reading of the
data: it queries DynamoDB with a plain boto3 client of its own (not the app's client, so injected faults
and capacity meters never touch it) and decodes the wire format itself. It uses none of chalicelib's
repositories, converters or domain models: a bug in how the store maps items would otherwise be read back
through the same mapping and look consistent.

The item layout it relies on (see chalicelib/store/keys.py and chalicelib/store/ledger.py; written down
here again on purpose):
  MEMBER#<id> / PROFILE#STATE          the points state: available, owed, version, open_lots_from (ISO)
  MEMBER#<id> / LEDGER#<iso>#<id>      a ledger entry: entry_id, at, kind, points, balance_after, ref,
                                       detail (compact JSON text); an entry that credited points is also
                                       that lot: source, earned_on, expires_on, original, remaining,
                                       expired, forgiven, clawed, owed, status, and gsi2pk/gsi2sk
                                       (EXPIRY#<expires_on>) while it holds points and is active
  ORDER#<id> / ORDER                   the order: amount, refunded_amount, points_earned, points_reversed
Attributes whose value is None are not written at all.
"""
from __future__ import annotations

import json
import os
import threading
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

MEMBER = "MEMBER#"
STATE_SK = "PROFILE#STATE"
LEDGER = "LEDGER#"


# ---- the wire format, decoded by hand ---------------------------------------------------------------------
def _number(text: str) -> int:
    """Every number the ledger stores is an integer (points, fen, versions)."""
    if any(c in text for c in ".eE"):
        raise AssertionError(f"a non-integer number in the ledger: {text}")
    return int(text)


def decode(value: dict[str, Any]) -> Any:
    (kind, v), = value.items()
    if kind == "S":
        return v
    if kind == "N":
        return _number(v)
    if kind == "BOOL":
        return bool(v)
    if kind == "NULL":
        return None
    if kind == "SS":
        return set(v)
    if kind == "NS":
        return {_number(x) for x in v}
    if kind == "L":
        return [decode(x) for x in v]
    if kind == "M":
        return {k: decode(x) for k, x in v.items()}
    if kind in ("B", "BS"):
        return v
    raise AssertionError(f"unknown DynamoDB type {kind}")


def decode_item(item: dict[str, Any]) -> dict[str, Any]:
    return {k: decode(v) for k, v in item.items()}


# ---- reading --------------------------------------------------------------------------------------------
_clients: dict[tuple[str | None, str | None], Any] = {}
_lock = threading.Lock()


def _client() -> Any:
    """A client of our own (same endpoint and credentials as the app's, from the environment)."""
    import boto3

    key = (os.environ.get("AWS_ENDPOINT_URL_DYNAMODB"), os.environ.get("AWS_DEFAULT_REGION"))
    with _lock:
        if key not in _clients:
            _clients[key] = boto3.client("dynamodb")
        return _clients[key]


def _table() -> str:
    from chalicelib import bootstrap  # the table's name only: nothing of the store's mapping

    return bootstrap.settings().table_name


def _query(pk: str, sk_prefix: str) -> list[dict[str, Any]]:
    client, table = _client(), _table()
    items: list[dict[str, Any]] = []
    params: dict[str, Any] = {
        "TableName": table, "KeyConditionExpression": "pk = :pk AND begins_with(sk, :p)", "ConsistentRead": True,
        "ExpressionAttributeValues": {":pk": {"S": pk}, ":p": {"S": sk_prefix}}}
    while True:
        page = client.query(**params)
        items += [decode_item(i) for i in page.get("Items", [])]
        if "LastEvaluatedKey" not in page:
            return items
        params["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def _orders(order_ids: list[str]) -> dict[str, dict[str, Any]]:
    client, table = _client(), _table()
    found: dict[str, dict[str, Any]] = {}
    for start in range(0, len(order_ids), 100):
        pending: dict[str, Any] = {table: {"ConsistentRead": True, "Keys": [
            {"pk": {"S": f"ORDER#{oid}"}, "sk": {"S": "ORDER"}} for oid in order_ids[start:start + 100]]}}
        while pending:
            page = client.batch_get_item(RequestItems=pending)
            for raw in page.get("Responses", {}).get(table, []):
                item = decode_item(raw)
                found[item["order_id"]] = item
            pending = page.get("UnprocessedKeys") or {}
    return found


# ---- what the items say ---------------------------------------------------------------------------------
@dataclass
class Entry:
    entry_id: str
    at: datetime
    kind: str
    points: int
    ref: str
    detail: dict[str, Any]
    raw: dict[str, Any]
    lot: dict[str, Any] | None = None  # the lot fields, if this entry credited points


@dataclass
class State:
    available: int = 0
    owed: int = 0
    version: int = 0
    open_lots_from: datetime | None = None

    @property
    def balance(self) -> int:
        return self.available - self.owed


@dataclass
class Books:
    state: State
    entries: list[Entry] = field(default_factory=list)

    @property
    def lots(self) -> list[Entry]:
        return [e for e in self.entries if e.lot is not None]


_LOT_FIELDS = ("source", "earned_on", "expires_on", "original", "remaining", "expired", "forgiven", "clawed",
               "owed", "status")


def read_state(member_id: str) -> State:
    """The member's points state alone (State() when there is none: never credited, or merged away)."""
    state_items = [i for i in _query(f"{MEMBER}{member_id}", STATE_SK) if i["sk"] == STATE_SK]
    if not state_items:
        return State()
    s = state_items[0]
    return State(available=s["available"], owed=s["owed"], version=s["version"],
                 open_lots_from=datetime.fromisoformat(s["open_lots_from"]) if s.get("open_lots_from") else None)


def read_books(member_id: str) -> Books:
    """The member's points state and every ledger entry, from the raw items."""
    pk = f"{MEMBER}{member_id}"
    state = read_state(member_id)
    entries = []
    for i in _query(pk, LEDGER):
        lot = None
        if "remaining" in i:
            lot = {f: i.get(f) for f in _LOT_FIELDS}
            for f in ("expired", "forgiven", "clawed", "owed"):
                lot[f] = lot[f] or 0
            lot["status"] = lot["status"] or "active"
            lot["gsi2pk"] = i.get("gsi2pk")
        detail = json.loads(i["detail"]) if i.get("detail") else {}
        entries.append(Entry(entry_id=i["entry_id"], at=datetime.fromisoformat(i["at"]), kind=i["kind"],
                             points=i["points"], ref=i["ref"], detail=detail, raw=i, lot=lot))
    return Books(state=state, entries=entries)


def audit_member(member_id: str, books: Books | None = None) -> dict[str, int]:
    """`books`: the member's books just read with read_books (saves reading them again)."""
    books = books or read_books(member_id)
    state, entries, lots = books.state, books.entries, books.lots
    problems = []
    hidden = [e.entry_id for e in lots
              if e.lot["remaining"] > 0 and state.open_lots_from is not None and e.at < state.open_lots_from]
    if hidden:
        problems.append(f"lots holding points before the state's open_lots_from bound: {hidden}")
    lot_sum = sum(e.lot["remaining"] for e in lots)
    if state.available != lot_sum:
        problems.append(f"available {state.available} != sum of lot remainders {lot_sum}")
    entry_sum = sum(e.points for e in entries)
    if state.balance != entry_sum:
        problems.append(f"balance {state.balance} != sum of ledger entries {entry_sum}")
    if any(e.lot["remaining"] < 0 for e in lots) or state.owed < 0 or state.available < 0:
        problems.append("negative remainder, debt or available")
    for e in lots:  # each point of a lot is in exactly one place: left, expired, clawed back or spent
        lot = e.lot
        if min(lot["expired"], lot["clawed"], lot["forgiven"], lot["owed"]) < 0 \
                or lot["remaining"] + lot["expired"] + lot["clawed"] > lot["original"] \
                or lot["forgiven"] > lot["expired"]:
            problems.append(f"lot {e.entry_id}: progress does not add up {lot}")
        if lot["status"] == "expired" and lot["remaining"]:
            problems.append(f"lot {e.entry_id}: expired but still holds {lot['remaining']}")
        waiting = lot["remaining"] > 0 and lot["status"] == "active"  # the sweep must be able to find it
        if waiting and lot["gsi2pk"] != f"EXPIRY#{lot['expires_on']}":
            problems.append(f"lot {e.entry_id} holds points but is not in the expiry index for {lot['expires_on']}")
        if not waiting and lot["gsi2pk"] is not None:
            problems.append(f"lot {e.entry_id} holds nothing to expire but is still in the expiry index")
    earned = Counter(e.ref for e in entries if e.kind == "earn")
    doubled = [ref for ref, n in earned.items() if n > 1]
    if doubled:
        problems.append(f"orders credited twice: {doubled}")
    # Redemption ids are made by clients: after a merge the survivor's ledger may hold its own redemption
    # and a duplicate's with the same id. The pair (member it was made for, id) names one redemption
    # (docs/decisions.md 2026-12-02, "Moved items say whose they were").
    def made_for(e: Entry) -> str:
        return e.detail.get("redemption_member_id") or e.raw.get("origin_member_id") or member_id

    redeemed = Counter((made_for(e), e.ref) for e in entries if e.kind == "redemption")
    if any(n > 1 for n in redeemed.values()):
        problems.append("a redemption applied twice")
    cancels = Counter((made_for(e), e.ref) for e in entries if e.kind == "redemption_cancel")
    if any(n > 1 for n in cancels.values()):
        problems.append("a redemption cancelled twice")
    refunds = Counter((e.ref, e.detail.get("refund_id")) for e in entries if e.kind == "refund")  # ids per order
    if any(n > 1 for n in refunds.values()):
        problems.append("a refund applied twice")
    # Refunds must reverse exactly: every reversed point is removed, owed or forgiven (never kept), and a
    # fully refunded order has reversed all it earned.
    reversed_by_order: Counter[str] = Counter()
    for e in entries:  # a guest order attached after refunds reversed their share at the attach
        if e.kind == "earn":
            reversed_by_order[e.ref] += e.detail.get("reversed_before_attach", 0)
    for e in entries:
        if e.kind == "refund":
            d = e.detail
            if d["removed"] + d["owed"] + d["forgiven"] != d["reversed"]:
                problems.append(f"refund {d['refund_id']}: removed+owed+forgiven != reversed")
            if e.points != -(d["removed"] + d["owed"]):
                problems.append(f"refund {d['refund_id']}: ledger points do not match what was taken")
            reversed_by_order[e.ref] += d["reversed"]
    # The member's orders, as their purchase history lists them: one per earn entry.
    orders = _orders(list(earned))
    missing = sorted(set(earned) - set(orders))
    if missing:
        problems.append(f"earn entries for orders that do not exist: {missing}")
    for order_id, o in orders.items():
        points_reversed, points_earned = o.get("points_reversed", 0), o["points_earned"]
        if reversed_by_order[order_id] != points_reversed:
            problems.append(f"order {order_id}: refund entries reversed {reversed_by_order[order_id]}, "
                            f"order says {points_reversed}")
        if o.get("refunded_amount", 0) == o["amount"] and points_reversed != points_earned:
            problems.append(f"order {order_id} fully refunded but {points_earned - points_reversed} kept")
    assert not problems, f"member {member_id}: " + "; ".join(problems)
    return {"balance": state.balance, "available": state.available, "owed": state.owed, "lots": len(lots),
            "entries": len(entries), "orders": len(earned), "redemptions": len(redeemed)}
