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


# ---- coupons ----------------------------------------------------------------------------------------------
# The coupon layout, written down again on purpose (see chalicelib/store/keys.py and store/coupons.py):
#   ORG / CTPL#<t>                       the template: body (JSON text: budget, per_member_limit, ...)
#   CTPL#<t> / BUDGET#HQ                 its budget counter: issued, allocated (passed on to regions and stores);
#                                        limit and left while the budget is limited
#   COUPON#<code> / COUPON               a coupon: template_id, member_id (whom it was issued to: a merge does not
#                                        rewrite it), state, valid_to (ISO), source (issue:<id> | exchange:<id>),
#                                        issuer (the level it was issued from: HQ, REGION#<r>, STORE#<s>),
#                                        version, redemption (JSON text), redeemed_order, discount while used,
#                                        released_orders (JSON text); gsi1pk MCOUPONS#<member> and gsi1sk
#                                        <state>#<valid_to>#<code>; gsi2pk CPNEXP#<last valid day> (Asia/Shanghai)
#                                        and gsi2sk <code> only while available
#   MEMBER#<m> / COUPONS                 per template c_<t>: coupons ever issued to m, plus those of members folded
#                                        into m by merges; merged_into once m is merged away (then frozen)
#   ORDER#<o> / COUPONS                  the order's basket: coupons [{code, discount, stackable}], posted, version
#   CISSUE#<id> / ISSUE                  a bulk issue: body (JSON plan: template_id, planned [[asked, member, code]],
#                                        skipped, requested, level), status pending|done, answer (JSON) once done
#   MEMBER#<m> / LEDGER#...  kind=exchange  points exchanged: ref = exchange id, detail.code = the coupon's code
SHANGHAI = "Asia/Shanghai"
COUPON_SK, COUNTS_SK, BASKET_SK, ISSUE_SK, BUDGET_HQ = "COUPON", "COUPONS", "COUPONS", "ISSUE", "BUDGET#HQ"
HQ_LEVEL = "HQ"  # a coupon's `issuer` (and an issue plan's `level`) when it came from the template's budget


def _scan(client: Any, table: str) -> list[dict[str, Any]]:
    """Every item a coupon audit reads, in one paginated Scan (a test table holds a few thousand items)."""
    params: dict[str, Any] = {
        "TableName": table, "ConsistentRead": True,
        "FilterExpression": "#ty IN (:coupon, :tpl, :issue, :basket) OR sk = :counts OR sk = :budget "
                            "OR (#ty = :ledger AND kind = :exchange) OR sk = :profile",
        "ExpressionAttributeNames": {"#ty": "type"},
        "ExpressionAttributeValues": {
            ":coupon": {"S": "coupon"}, ":tpl": {"S": "coupon_template"}, ":issue": {"S": "coupon_issue"},
            ":basket": {"S": "coupon_basket"}, ":counts": {"S": COUNTS_SK}, ":budget": {"S": BUDGET_HQ},
            ":ledger": {"S": "ledger"}, ":exchange": {"S": "exchange"}, ":profile": {"S": "PROFILE"}}}
    items: list[dict[str, Any]] = []
    while True:
        page = client.scan(**params)
        items += [decode_item(i) for i in page.get("Items", [])]
        if "LastEvaluatedKey" not in page:
            return items
        params["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def _day(iso_time: str) -> str:
    from zoneinfo import ZoneInfo

    return datetime.fromisoformat(iso_time).astimezone(ZoneInfo(SHANGHAI)).date().isoformat()


def audit_coupons(template_ids: list[str] | set[str] | None = None, *, allow_pending: bool = False,
                  client: Any = None, table: str | None = None) -> dict[str, Any]:
    """The coupon invariants over the raw items of `template_ids` (None: every template in the table):

    - budget (HQ's level): `issued` == the template's coupons issued from HQ (issuer HQ; plus what pending
      issue plans at HQ took and have not issued yet, when `allow_pending`; otherwise a pending plan is itself a
      finding), `left` == limit - issued - allocated >= 0 when limited, no `left` when unlimited (the quota
      levels below HQ, and where `allocated` went, are audit_pool's);
    - per-member counts: c_<t> of every member == coupons of t issued to that member and to every member
      folded into it by merges (transitively); a member merged away has its counts marked merged_into the
      same survivor as its profile; a member holding coupons has a counts item;
    - each coupon: used <=> it carries a redemption of itself whose order's basket lists it once with the same
      discount; in the expiry index (gsi2) of its valid_to's day iff available; gsi1 keys match its member,
      state and valid_to; expired only after valid_to;
    - baskets: no code twice; a basket whose order was never posted lists only coupons held for that order;
    - issues: a finished issue's answer lists exactly the coupons made with its source, every requested member
      exactly once (issued or skipped), each coupon with the member the plan named;
    - exchanges: every exchange coupon has exactly one exchange ledger entry naming its code, and every
      exchange entry's code is a coupon.

    Returns counts (coupons by state, templates, pending issues) for the caller's own assertions."""
    client, table = client or _client(), table or _table()
    items = _scan(client, table)
    wanted = set(template_ids) if template_ids is not None else None
    templates: dict[str, dict[str, Any]] = {}
    budgets: dict[str, dict[str, Any]] = {}
    coupons: dict[str, dict[str, Any]] = {}
    counts: dict[str, dict[str, Any]] = {}
    baskets: dict[str, dict[str, Any]] = {}
    issues: dict[str, dict[str, Any]] = {}
    profiles: dict[str, dict[str, Any]] = {}
    exchange_entries: list[dict[str, Any]] = []
    for i in items:
        pk, sk, kind = i["pk"], i["sk"], i.get("type")
        if kind == "coupon_template":
            body = json.loads(i["body"])
            templates[body["template_id"]] = body
        elif sk == BUDGET_HQ and pk.startswith("CTPL#"):
            budgets[pk.removeprefix("CTPL#")] = i
        elif kind == "coupon" and sk == COUPON_SK:
            coupons[i["code"]] = i
        elif kind == "coupon_basket":
            baskets[i["order_id"]] = i
        elif kind == "coupon_issue":
            issues[pk.removeprefix("CISSUE#")] = i
        elif sk == COUNTS_SK and pk.startswith(MEMBER):
            counts[pk.removeprefix(MEMBER)] = i
        elif sk == "PROFILE" and pk.startswith(MEMBER):
            profiles[pk.removeprefix(MEMBER)] = i
        elif kind == "ledger" and i.get("kind") == "exchange":
            exchange_entries.append(i)
    scope = set(templates) | set(budgets) if wanted is None else wanted
    missing = sorted(t for t in scope if t not in templates)
    problems: list[str] = [f"template {t} has no template item" for t in missing]
    mine = {code: c for code, c in coupons.items() if c["template_id"] in scope}
    now = datetime.now().astimezone()

    # ---- issues (first: a pending plan explains budget taken ahead of its coupons) ----
    by_source: dict[str, list[str]] = {}
    for code, c in mine.items():
        by_source.setdefault(c["source"], []).append(code)
    pending_taken: Counter[str] = Counter()  # at HQ's level (a quota's pending plans are audit_pool's)
    pending = 0
    for issue_id, item in issues.items():
        plan = json.loads(item["body"])
        t = plan["template_id"]
        if t not in scope:
            continue
        made = by_source.get(f"issue:{issue_id}", [])
        planned = {row[2]: row for row in plan["planned"]}
        for code in made:
            if code not in planned:
                problems.append(f"issue {issue_id}: coupon {code} is not in its plan")
            elif mine[code]["member_id"] != planned[code][1]:
                problems.append(f"issue {issue_id}: coupon {code} went to {mine[code]['member_id']}, "
                                f"the plan named {planned[code][1]}")
        if item["status"] != "done":
            pending += 1
            if plan.get("level", HQ_LEVEL) == HQ_LEVEL:
                pending_taken[t] += len(plan["planned"]) - len(made)
            if not allow_pending:
                problems.append(f"issue {issue_id} is still pending: budget taken for a plan never completed")
            continue
        answer = json.loads(item["answer"])
        listed = [r["code"] for r in answer["issued"]]
        if len(set(listed)) != len(listed) or set(listed) != set(made):
            problems.append(f"issue {issue_id}: the answer lists {sorted(listed)}, the table holds {sorted(made)}")
        if answer["issued_count"] != len(listed):
            problems.append(f"issue {issue_id}: issued_count {answer['issued_count']} != {len(listed)} listed")
        asked = Counter([r.get("requested_as") or r["member_id"] for r in answer["issued"]] +
                        [s["member_id"] for s in answer["skipped"]])
        requested = Counter([row[0] for row in plan["planned"]] + [s["member_id"] for s in plan["skipped"]])
        if asked != requested or sum(asked.values()) != plan["requested"]:
            problems.append(f"issue {issue_id}: the answer does not list every requested member exactly once")

    # ---- budgets ----
    per_template = Counter(c["template_id"] for c in mine.values() if c.get("issuer", HQ_LEVEL) == HQ_LEVEL)
    for t in sorted(scope):
        b = budgets.get(t)
        if b is None:
            problems.append(f"template {t} has no budget counter")
            continue
        issued, expected = b.get("issued", 0), per_template[t] + pending_taken[t]
        if issued != expected:
            problems.append(f"template {t}: budget issued {issued}, coupons {per_template[t]}"
                            + (f" + {pending_taken[t]} taken by pending plans" if pending_taken[t] else ""))
        limit, allocated = templates.get(t, {}).get("budget"), b.get("allocated", 0)
        if limit is None:
            if "left" in b or "limit" in b:
                problems.append(f"template {t} is unlimited but its counter has limit/left {b}")
        elif b.get("limit") != limit or b.get("left") != limit - issued - allocated or b.get("left", -1) < 0:
            problems.append(f"template {t}: limit {b.get('limit')} left {b.get('left')} issued {issued}"
                            + (f" allocated {allocated}" if allocated else "") + f", budget {limit}")

    # ---- per-member counts, folded along merges ----
    direct: dict[str, Counter[str]] = {}
    for c in mine.values():
        direct.setdefault(c["member_id"], Counter())[c["template_id"]] += 1
    folded_into: dict[str, list[str]] = {}
    for m, item in counts.items():
        if item.get("merged_into"):
            folded_into.setdefault(item["merged_into"], []).append(m)

    def expected_counts(m: str, seen: frozenset[str] = frozenset()) -> Counter[str]:
        if m in seen:
            problems.append(f"member counts fold in a cycle through {m}")
            return Counter()
        total = Counter(direct.get(m, Counter()))
        for s in folded_into.get(m, []):
            total += expected_counts(s, seen | {m})
        return total

    involved = set(direct) | {m for m, i in counts.items() if any(f"c_{t}" in i for t in scope)}
    for m in sorted(involved):
        want, item = expected_counts(m), counts.get(m, {})
        for t in scope:
            if item.get(f"c_{t}", 0) != want[t]:
                problems.append(f"member {m}: count c_{t} = {item.get(f'c_{t}', 0)}, coupons say {want[t]}")
        profile = profiles.get(m)
        if profile is not None and profile.get("status") == "merged" \
                and item.get("merged_into") != profile.get("merged_into"):
            problems.append(f"member {m} merged into {profile.get('merged_into')} but its coupon counts say "
                            f"merged_into={item.get('merged_into')}")
        if item.get("merged_into") and (profile is None or profile.get("status") != "merged"):
            problems.append(f"member {m}: coupon counts merged_into {item['merged_into']}, profile not merged")

    # ---- each coupon, and the baskets ----
    states: Counter[str] = Counter()
    for code, c in mine.items():
        state, valid_to = c["state"], c["valid_to"]
        states[state] += 1
        if c.get("gsi1pk") != f"MCOUPONS#{c['member_id']}" or c.get("gsi1sk") != f"{state}#{valid_to}#{code}":
            problems.append(f"coupon {code}: member index keys {c.get('gsi1pk')} {c.get('gsi1sk')} do not match")
        bucket = f"CPNEXP#{_day(valid_to)}"
        if state == "available" and (c.get("gsi2pk") != bucket or c.get("gsi2sk") != code):
            problems.append(f"coupon {code} is available but not in the expiry index {bucket}")
        if state != "available" and ("gsi2pk" in c or "gsi2sk" in c):
            problems.append(f"coupon {code} is {state} but still in the expiry index")
        if state == "expired" and datetime.fromisoformat(valid_to) >= now:
            problems.append(f"coupon {code} expired before its valid_to {valid_to}")
        if state not in ("available", "used", "expired"):
            problems.append(f"coupon {code}: unknown state {state}")
        redemption = json.loads(c["redemption"]) if c.get("redemption") else None
        if state != "used":
            if redemption is not None or "redeemed_order" in c or "discount" in c:
                problems.append(f"coupon {code} is {state} but carries a redemption")
            continue
        if redemption is None:
            problems.append(f"coupon {code} is used without a redemption")
            continue
        order_id, discount = redemption["order_id"], redemption["discount"]
        if redemption["code"] != code or c.get("redeemed_order") != order_id or c.get("discount") != discount \
                or redemption["amount_after"] != redemption["amount_before"] - discount or discount < 0:
            problems.append(f"coupon {code}: its redemption does not add up {redemption}")
        held = [x for x in baskets.get(order_id, {}).get("coupons", []) if x["code"] == code]
        if len(held) != 1 or held[0]["discount"] != discount:
            problems.append(f"coupon {code} is used for order {order_id} but its basket lists it {held}")
    with_coupons = [o for o, b in baskets.items() if any(x["code"] in mine for x in b.get("coupons", []))]
    orders = _orders(with_coupons) if with_coupons else {}
    for order_id in with_coupons:
        listed = [x["code"] for x in baskets[order_id].get("coupons", [])]
        if len(set(listed)) != len(listed):
            problems.append(f"basket of order {order_id} lists a coupon twice: {listed}")
        if order_id in orders:
            continue  # posted (with or without them): the basket stays as the order's record
        for code in listed:
            c = mine.get(code) or coupons.get(code)
            if c is None or c["state"] != "used" or c.get("redeemed_order") != order_id:
                problems.append(f"basket of unposted order {order_id} lists {code}, which is not held for it")

    # ---- exchanges ----
    entries_by_code: dict[str, list[dict[str, Any]]] = {}
    for e in exchange_entries:
        detail = json.loads(e["detail"]) if e.get("detail") else {}
        if detail.get("template_id") in scope:
            entries_by_code.setdefault(detail.get("code", ""), []).append(e)
            if detail.get("code") not in mine:
                problems.append(f"exchange {e['ref']} spent points for a coupon that does not exist")
    for code, c in mine.items():
        if c["source"].startswith("exchange:"):
            found = entries_by_code.get(code, [])
            if len(found) != 1 or found[0]["ref"] != c["source"].removeprefix("exchange:"):
                problems.append(f"coupon {code} from {c['source']} has {len(found)} exchange entries")
        elif not c["source"].startswith("issue:"):
            problems.append(f"coupon {code}: unknown source {c['source']}")
        elif c["source"].removeprefix("issue:") not in issues:
            problems.append(f"coupon {code} from {c['source']}: no such issue")

    assert not problems, "coupons: " + "; ".join(problems)
    return {"templates": len(scope), "coupons": len(mine), "pending_issues": pending, **dict(states)}


# ---- the benefit pool ---------------------------------------------------------------------------------------
# The pool's layout, written down again on purpose (see chalicelib/store/keys.py and store/coupons.py):
#   CTPL#<t> / BUDGET#<level>            one item per level: HQ (limit, issued, allocated, left), REGION#<r>
#                                        (allocated in from HQ, sub_allocated out to its stores, issued, left),
#                                        STORE#<s> (from_hq, from_region, issued, left); each on the lookup index
#                                        (gsi1pk POOL#<level>, gsi1sk <t>) with template_id and level
#   ALLOC#<id> / ALLOC                   an allocation: template_id, source (HQ | REGION#<r>), target
#                                        (REGION#<r> | STORE#<s>), quantity (< 0: returned), body (JSON: answer)
#   ORG / STORE#<s>                      a store: region_id
#   CSTAT#<t>#<level> / <day>            a template's day for coupons issued from <level>: issued, redeemed,
#                                        discount, gift_cost, sales; level ALL#<n> (n < 8) is the brand's total,
#                                        spread over shards
#   SETTLE#<month>#<n> / <t>#<issuer>#<redeemer>   template_id, issuer, redeemer, month, count, discount,
#                                        gift_cost
#   ORDER#<o> / ORDER                    a posted order: store_id, paid_at (ISO), amount (paid), coupons (JSON
#                                        [[code, discount]])
# A coupon counts as redeemed when it is used for an order that was posted with it; the numbers put it on its
# issuer's row of the order's paid day (Asia/Shanghai) and the settlement row of that day's month, at the
# order's store. A whole refund that restores the coupon takes it back out (the coupon is available again).
STAT_FIELDS = ("issued", "redeemed", "discount", "gift_cost", "sales")
SETTLE_FIELDS = ("count", "discount", "gift_cost")
_LEVEL_FIELDS = ("issued", "allocated", "sub_allocated", "from_hq", "from_region")


def _pool_scan(client: Any, table: str) -> list[dict[str, Any]]:
    """Every item a pool audit reads, in one paginated Scan."""
    params: dict[str, Any] = {
        "TableName": table, "ConsistentRead": True,
        "FilterExpression": "#ty IN (:coupon, :tpl, :issue, :alloc, :store) OR begins_with(sk, :budget) "
                            "OR begins_with(pk, :cstat) OR begins_with(pk, :settle)",
        "ExpressionAttributeNames": {"#ty": "type"},
        "ExpressionAttributeValues": {
            ":coupon": {"S": "coupon"}, ":tpl": {"S": "coupon_template"}, ":issue": {"S": "coupon_issue"},
            ":alloc": {"S": "allocation"}, ":store": {"S": "store"}, ":budget": {"S": "BUDGET#"},
            ":cstat": {"S": "CSTAT#"}, ":settle": {"S": "SETTLE#"}}}
    items: list[dict[str, Any]] = []
    while True:
        page = client.scan(**params)
        items += [decode_item(i) for i in page.get("Items", [])]
        if "LastEvaluatedKey" not in page:
            return items
        params["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def _level_kind(level: str) -> str:
    if level == HQ_LEVEL:
        return "hq"
    kind, sep, ident = level.partition("#")
    return kind.lower() if sep and ident and kind in ("REGION", "STORE") and "#" not in ident else "?"


def audit_pool(template_ids: list[str] | set[str], *, allow_pending: bool = False, client: Any = None,
               table: str | None = None) -> dict[str, Any]:
    """The benefit pool's invariants over the raw items of `template_ids`:

    - each level's counters: HQ allocated + issued <= budget and left == budget - issued - allocated (no left
      when unlimited); a region's sub_allocated + issued <= allocated and left == allocated - issued -
      sub_allocated; a store's issued <= from_hq + from_region and left == from_hq + from_region - issued;
      nothing negative; each level on the lookup index the pool is read from;
    - the allocation documents: each well formed (a region gives only to its own stores; the answer it replays
      says what the document says), and their quantities, summed per (source, target), are exactly what the
      levels' counters say was moved: HQ's allocated, a region's allocated and sub_allocated, a store's from_hq
      and from_region (from one region only: its own);
    - the coupons: of each issuer level, exactly that level's issued (plus what pending plans at the level took
      and have not issued yet, when `allow_pending`); a coupon's issuer is its issue plan's level;
    - the numbers: each level's day rows (issued, redeemed, discount, gift cost, sales) and the brand's shards
      are what the coupons say (issued on the day of their issue; redeemed on the paid day of the order they
      were posted with), and each month's settlement rows per (issuer, redeeming store) likewise.

    Returns, per template, the levels' counters, the net moved per (source, target) and the coupons per level
    (for the caller's own assertions against what the API answered)."""
    client, table = client or _client(), table or _table()
    scope = set(template_ids)
    templates: dict[str, dict[str, Any]] = {}
    levels: dict[str, dict[str, dict[str, Any]]] = {t: {} for t in scope}
    allocations: list[dict[str, Any]] = []
    coupons: dict[str, dict[str, Any]] = {}
    issues: dict[str, dict[str, Any]] = {}
    store_region: dict[str, str] = {}
    stat_rows: dict[tuple[str, str, str], dict[str, Any]] = {}  # (t, level, day)
    settle_rows: dict[tuple[str, str, str, str], Counter[str]] = {}  # (month, t, issuer, redeemer)
    problems: list[str] = []
    for i in _pool_scan(client, table):
        pk, sk, kind = i["pk"], i["sk"], i.get("type")
        if kind == "coupon_template":
            body = json.loads(i["body"])
            if body["template_id"] in scope:
                templates[body["template_id"]] = body
        elif pk.startswith("CTPL#") and sk.startswith("BUDGET#"):
            t = pk.removeprefix("CTPL#")
            if t in scope:
                levels[t][sk.removeprefix("BUDGET#")] = i
        elif kind == "allocation" and pk.startswith("ALLOC#"):
            if i.get("template_id") in scope:
                allocations.append(i)
        elif kind == "coupon" and sk == COUPON_SK:
            if i["template_id"] in scope:
                coupons[i["code"]] = i
        elif kind == "coupon_issue":
            issues[pk.removeprefix("CISSUE#")] = i
        elif kind == "store" and pk == "ORG":
            store_region[i["store_id"]] = i.get("region_id", "")
        elif pk.startswith("CSTAT#"):
            _, t, level = pk.split("#", 2)
            if t in scope:
                if (i.get("template_id"), i.get("level"), i.get("day")) != (t, level, sk):
                    problems.append(f"stats row {pk}/{sk} says template {i.get('template_id')} level "
                                    f"{i.get('level')} day {i.get('day')}")
                stat_rows[(t, level, sk)] = i
        elif pk.startswith("SETTLE#") and i.get("template_id") in scope:
            month = pk.split("#")[1]
            if sk != f"{i['template_id']}#{i.get('issuer')}#{i.get('redeemer')}" or i.get("month") != month:
                problems.append(f"settlement row {pk}/{sk} says {i.get('template_id')}#{i.get('issuer')}#"
                                f"{i.get('redeemer')} in {i.get('month')}")
            row = settle_rows.setdefault((month, i["template_id"], i.get("issuer", ""), i.get("redeemer", "")),
                                         Counter())
            for f in SETTLE_FIELDS:
                row[f] += i.get(f, 0)
    problems += [f"template {t} has no template item" for t in sorted(scope - set(templates))]

    # ---- coupons per level, and what pending plans took ----
    made: dict[str, Counter[str]] = {t: Counter() for t in scope}
    pending_taken: dict[str, Counter[str]] = {t: Counter() for t in scope}
    by_source: Counter[str] = Counter(c["source"] for c in coupons.values())
    done_sources: set[str] = set()
    pending = 0
    for code, c in sorted(coupons.items()):
        issuer = c.get("issuer", HQ_LEVEL)
        made[c["template_id"]][issuer] += 1
        if c["source"].startswith("issue:"):
            issue = issues.get(c["source"].removeprefix("issue:"))
            level = json.loads(issue["body"]).get("level", HQ_LEVEL) if issue else None
            if level is not None and level != issuer:
                problems.append(f"coupon {code} says issuer {issuer}, its issue's plan level {level}")
        elif issuer != HQ_LEVEL:
            problems.append(f"coupon {code} from {c['source']} says issuer {issuer}: only issues draw on quotas")
    for issue_id, item in issues.items():
        plan = json.loads(item["body"])
        if plan["template_id"] not in scope:
            continue
        if item["status"] == "done":
            done_sources.add(f"issue:{issue_id}")
            continue
        pending += 1
        pending_taken[plan["template_id"]][plan.get("level", HQ_LEVEL)] += \
            len(plan["planned"]) - by_source[f"issue:{issue_id}"]
        if not allow_pending:
            problems.append(f"issue {issue_id} is still pending: quota taken for a plan never completed")

    # ---- the levels' counters ----
    report_levels: dict[str, dict[str, dict[str, Any]]] = {}
    for t in sorted(scope):
        budget = templates.get(t, {}).get("budget")
        report_levels[t] = {}
        for level, b in sorted(levels[t].items()):
            kind = _level_kind(level)
            n = {f: b.get(f, 0) for f in _LEVEL_FIELDS}
            report_levels[t][level] = {**n, "left": b.get("left"), "limit": b.get("limit")}
            where = f"template {t} level {level}"
            if kind == "?":
                problems.append(f"{where}: not a level")
                continue
            if (b.get("gsi1pk"), b.get("gsi1sk"), b.get("template_id"), b.get("level")) != \
                    (f"POOL#{level}", t, t, level):
                problems.append(f"{where}: not on the lookup index as POOL#{level} ({b.get('gsi1pk')}, "
                                f"{b.get('gsi1sk')}, {b.get('template_id')}, {b.get('level')})")
            if any(v < 0 for v in n.values()) or (b.get("left") is not None and b["left"] < 0):
                problems.append(f"{where}: a negative counter {report_levels[t][level]}")
            foreign = {"hq": ("sub_allocated", "from_hq", "from_region"),
                       "region": ("from_hq", "from_region"), "store": ("allocated", "sub_allocated")}[kind]
            if any(f in b for f in foreign):
                problems.append(f"{where}: counters of another kind of level {report_levels[t][level]}")
            if kind == "hq":
                if budget is None:
                    if "left" in b or "limit" in b:
                        problems.append(f"{where}: unlimited but has limit/left {b.get('limit')}/{b.get('left')}")
                    continue
                received, out = budget, n["allocated"]
                if b.get("limit") != budget:
                    problems.append(f"{where}: limit {b.get('limit')}, the template's budget {budget}")
            elif kind == "region":
                received, out = n["allocated"], n["sub_allocated"]
            else:
                received, out = n["from_hq"] + n["from_region"], 0
            if out + n["issued"] > received or b.get("left") != received - n["issued"] - out:
                problems.append(f"{where}: received {received}, passed on {out}, issued {n['issued']}, "
                                f"left {b.get('left')}")

    # ---- the allocation documents against the counters ----
    moved: dict[str, Counter[tuple[str, str]]] = {t: Counter() for t in scope}
    for a in allocations:
        t, source, target, quantity = a["template_id"], a.get("source", ""), a.get("target", ""), a.get("quantity")
        allocation_id = a["pk"].removeprefix("ALLOC#")
        where = f"allocation {allocation_id}"
        answer = json.loads(a["body"]).get("answer", {}) if a.get("body") else {}
        if (answer.get("allocation_id"), answer.get("template_id"), answer.get("source"), answer.get("target"),
                answer.get("quantity")) != (allocation_id, t, source, target, quantity):
            problems.append(f"{where}: its answer {answer} is not what the document says "
                            f"({t} {source} -> {target} {quantity})")
        if not isinstance(quantity, int) or quantity == 0:
            problems.append(f"{where}: quantity {quantity}")
            continue
        source_kind, target_kind = _level_kind(source), _level_kind(target)
        if source_kind == "hq" and target_kind in ("region", "store"):
            pass
        elif source_kind == "region" and target_kind == "store":
            region = store_region.get(target.removeprefix("STORE#"))
            if region != source.removeprefix("REGION#"):
                problems.append(f"{where}: {source} gave to {target}, a store of region {region}")
        else:
            problems.append(f"{where}: {source} -> {target} is not a way quota moves")
        moved[t][(source, target)] += quantity
    for t in sorted(scope):
        for (source, target), n in sorted(moved[t].items()):
            if n < 0:
                problems.append(f"template {t}: {source} -> {target} returned {-n} more than it allocated")
        counters = {level: report_levels[t].get(level, {}) for level in
                    set(levels[t]) | {lv for pair in moved[t] for lv in pair}}
        for level, counter in sorted(counters.items()):
            kind = _level_kind(level)
            if not counter:
                problems.append(f"template {t}: allocations name level {level}, which has no counter")
                continue
            expect: dict[str, int] = {}
            if kind == "hq":
                expect["allocated"] = sum(n for (s, _), n in moved[t].items() if s == level)
            elif kind == "region":
                expect["allocated"] = moved[t][(HQ_LEVEL, level)]
                expect["sub_allocated"] = sum(n for (s, _), n in moved[t].items() if s == level)
            elif kind == "store":
                expect["from_hq"] = moved[t][(HQ_LEVEL, level)]
                givers = {s for (s, g), n in moved[t].items() if g == level and s != HQ_LEVEL}
                expect["from_region"] = sum(moved[t][(s, level)] for s in givers)
                if len(givers) > 1:
                    problems.append(f"template {t}: {level} received from several regions {sorted(givers)}")
            for f, want in expect.items():
                if counter.get(f, 0) != want:
                    problems.append(f"template {t} level {level}: {f} {counter.get(f, 0)}, "
                                    f"the allocation documents sum to {want}")

        # ---- coupons per issuer level against the counters ----
        for level in sorted(set(report_levels[t]) | set(made[t]) | set(pending_taken[t])):
            issued = report_levels[t].get(level, {}).get("issued", 0)
            want = made[t][level] + pending_taken[t][level]
            if issued != want:
                problems.append(f"template {t} level {level}: issued {issued}, coupons {made[t][level]}"
                                + (f" + {pending_taken[t][level]} taken by pending plans"
                                   if pending_taken[t][level] else ""))

    # ---- the numbers: day rows and settlement, from the coupons and the orders they were posted with ----
    used = {code: c for code, c in coupons.items() if c["state"] == "used" and c.get("redeemed_order")}
    orders = _orders(sorted({c["redeemed_order"] for c in used.values()})) if used else {}
    want_stats: dict[tuple[str, str, str], Counter[str]] = {}
    want_settle: dict[tuple[str, str, str, str], Counter[str]] = {}
    for c in coupons.values():
        if c["source"] in done_sources or c["source"].startswith("exchange:"):
            want_stats.setdefault((c["template_id"], c.get("issuer", HQ_LEVEL), _day(c["issued_at"])),
                                  Counter())["issued"] += 1
    redeemed = 0
    for code, c in sorted(used.items()):
        order = orders.get(c["redeemed_order"])
        posted_with = dict(map(tuple, json.loads(order["coupons"]))) if order and order.get("coupons") else {}
        if code not in posted_with:
            continue  # held at the counter for an order not (yet) posted with it: not redeemed
        redeemed += 1
        if posted_with[code] != c.get("discount"):
            problems.append(f"coupon {code}: discount {c.get('discount')}, its order was posted with "
                            f"{posted_with[code]}")
        terms = json.loads(c["terms"])
        gift_cost = (terms.get("gift") or {}).get("cost", 0)
        day = _day(order["paid_at"])
        stats = want_stats.setdefault((c["template_id"], c.get("issuer", HQ_LEVEL), day), Counter())
        stats.update({"redeemed": 1, "discount": posted_with[code], "gift_cost": gift_cost,
                      "sales": order["amount"]})
        settle = want_settle.setdefault((day[:7], c["template_id"], c.get("issuer", HQ_LEVEL), order["store_id"]),
                                        Counter())
        settle.update({"count": 1, "discount": posted_with[code], "gift_cost": gift_cost})
    brand: dict[tuple[str, str], Counter[str]] = {}
    for (t, _level, day), want in want_stats.items():
        brand.setdefault((t, day), Counter()).update(want)
    have_brand: dict[tuple[str, str], Counter[str]] = {}
    for (t, level, day), row in stat_rows.items():
        if level.startswith("ALL#"):
            if not level.removeprefix("ALL#").isdigit() or int(level.removeprefix("ALL#")) >= 8:
                problems.append(f"template {t}: a brand-wide stats row on shard {level}")
            have_brand.setdefault((t, day), Counter()).update({f: row.get(f, 0) for f in STAT_FIELDS})
    for (t, level, day) in sorted(set(want_stats) | {k for k in stat_rows if not k[1].startswith("ALL#")}):
        row, want = stat_rows.get((t, level, day), {}), want_stats.get((t, level, day), Counter())
        have = {f: row.get(f, 0) for f in STAT_FIELDS}
        if have != {f: want[f] for f in STAT_FIELDS}:
            problems.append(f"template {t} level {level} day {day}: stats {have}, the coupons say "
                            f"{ {f: want[f] for f in STAT_FIELDS} }")
    for (t, day) in sorted(set(brand) | set(have_brand)):
        have = {f: have_brand.get((t, day), Counter())[f] for f in STAT_FIELDS}
        want = {f: brand.get((t, day), Counter())[f] for f in STAT_FIELDS}
        if have != want:
            problems.append(f"template {t} day {day}: the brand's shards say {have}, the coupons say {want}")
    for key in sorted(set(want_settle) | set(settle_rows)):
        have = {f: settle_rows.get(key, Counter())[f] for f in SETTLE_FIELDS}
        want = {f: want_settle.get(key, Counter())[f] for f in SETTLE_FIELDS}
        if have != want:
            month, t, issuer, redeemer = key
            problems.append(f"settlement {month} template {t} issuer {issuer} at {redeemer}: rows say {have}, "
                            f"the coupons say {want}")

    assert not problems, "pool: " + "; ".join(problems)
    return {"levels": report_levels, "moved": {t: dict(m) for t, m in moved.items()},
            "coupons": {t: dict(m) for t, m in made.items()}, "allocations": len(allocations),
            "redeemed": redeemed, "pending_issues": pending}
