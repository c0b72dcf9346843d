"""Orders, ledger entries (and the lots they carry), redemptions, refunds, program configuration and daily
rollups in DynamoDB.

One use case = one `Change` = one TransactWriteItems (see domain/ledger.Change)."""
from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import date, datetime
from typing import Any

from ..domain import clock, rollups
from ..domain.coupons import Basket
from ..domain.errors import Conflict, DocumentExists, StaleRead
from ..domain.ledger import Change, LedgerEntry, Lot, MemberHead, MemberState
from ..domain.orders import Breakdown, Order
from ..domain.pool import shard as stat_shard
from ..domain.receipts import Refund
from . import coupons as coupon_rows
from . import keys
from .db import Db, Tx, TxCancelled, decode_cursor, encode_cursor
from .rollups import add_to_day

MAX_MERGE_HOPS = 10
MAX_FAMILY = 100  # members merged together that find_document asks, at most


def _dt(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


class DynamoLedgerRepository:
    """Program configuration is read on every order; it is cached per container for CONFIG_SECONDS (an
    HQ edit reaches every container within a minute; the writing container at once)."""

    CONFIG_SECONDS = 60.0

    def __init__(self, db: Db) -> None:
        self.db = db
        self._config: dict[str, tuple[float, dict[str, Any] | None]] = {}

    # ---- configuration -----------------------------------------------------------------------------
    def load_config(self, name: str) -> dict[str, Any] | None:
        cached = self._config.get(name)
        if cached and time.monotonic() - cached[0] < self.CONFIG_SECONDS:
            return cached[1]
        item = self.db.get(keys.config_key(name), consistent=False)
        body = json.loads(item["body"]) if item else None
        self._config[name] = (time.monotonic(), body)
        return body

    def save_config(self, name: str, body: dict[str, Any], actor: str) -> None:
        self.db.put({**keys.config_key(name), "type": "config", "body": json.dumps(body, ensure_ascii=False),
                     "updated_by": actor, "updated_at": clock.iso(clock.now())})
        self._config[name] = (time.monotonic(), body)

    # ---- reads -------------------------------------------------------------------------------------
    def load_member(self, member_id: str) -> tuple[MemberHead | None, MemberState]:
        """Profile head and points state in ONE query (both sort keys start with PROFILE)."""
        items, _ = self.db.query(KeyConditionExpression="pk = :pk AND sk BETWEEN :p AND :last",
                                 values={":pk": keys.member_pk(member_id), ":p": keys.PROFILE,
                                         ":last": keys.ORDER_PATH_LAST_SK}, ConsistentRead=True)
        profile = next((i for i in items if i["sk"] == keys.PROFILE), None)
        state = next((i for i in items if i["sk"] == keys.MEMBER_STATE), None)
        head = None if profile is None else _head(profile)
        return head, with_home(state_from_item(state) if state else MemberState(member_id=member_id), profile)

    def heads(self, member_ids: list[str]) -> dict[str, MemberHead]:
        """Profile heads of many members, 100 per BatchGetItem (a bulk coupon issue checks 1,000 at once)."""
        found: dict[str, MemberHead] = {}
        for start in range(0, len(member_ids), 100):
            for head in self.db.batch_get([keys.member_profile(m) for m in member_ids[start:start + 100]], _head,
                                          consistent=True):
                found[head.member_id] = head
        return found

    def open_lots(self, member_id: str, since: datetime | None) -> list[Lot]:
        """Lots still holding points, read from the state's bound on (older lots hold none); lots past their
        last day but not yet swept are included: callers compare expiry with the business day."""
        start = keys.ledger_sk_from(clock.iso(since)) if since else keys.LEDGER_PREFIX
        return [_lot(i) for i in self.db.query_all(
            KeyConditionExpression="pk = :pk AND sk BETWEEN :from AND :to", FilterExpression="remaining > :zero",
            values={":pk": keys.member_pk(member_id), ":from": start, ":to": keys.LEDGER_PREFIX + "~", ":zero": 0},
            ConsistentRead=True)]

    def moving_sources(self, member_id: str) -> list[str]:
        """Members merged into this one whose items a merge is still moving here (their lots count in this
        member's balance already, but still sit in their old partition)."""
        return [i["source_member_id"] for i in self.db.query_all(
            KeyConditionExpression="pk = :pk AND begins_with(sk, :m)", FilterExpression="#s = :moving",
            values={":pk": keys.member_pk(member_id), ":m": keys.MERGE_PREFIX, ":moving": "moving"},
            ExpressionAttributeNames={"#s": "state"}, ConsistentRead=True)]

    def entry(self, member_id: str, at: datetime, entry_id: str) -> LedgerEntry | None:
        """A ledger entry (with its lot, if it credited one) where it is now: under `member_id`, or under
        whoever that member was merged into. Looked up old place first: a merge moves an item with one
        atomic put+delete, so reading the old place and then the new one cannot miss it."""
        item = self._entry_item(member_id, clock.iso(at), entry_id)
        return _entry(item) if item else None

    def due_lots(self, day: date) -> Iterator[Lot]:
        """Lots with points left whose last valid day is `day` (the sparse expiry index)."""
        for item in self.db.query_all(IndexName=keys.GSI_WORK, KeyConditionExpression="gsi2pk = :p",
                                      values={":p": keys.expiry_bucket(day)}):
            yield _lot(item)

    def guest_orders(self, phone_hash: str) -> list[Order]:
        return [_order(i) for i in self.db.query_all(IndexName=keys.GSI_LOOKUP, KeyConditionExpression="gsi1pk = :p",
                                                     values={":p": keys.guest_orders_pk(phone_hash)})]

    def tiered_members(self) -> Iterator[str]:
        """Members above the lowest tier, shard by shard of the sparse review index."""
        for shard in range(keys.TIER_SHARDS):
            for item in self.db.query_all(IndexName=keys.GSI_WORK, KeyConditionExpression="gsi2pk = :p",
                                          values={":p": keys.tier_shard_pk(shard)}):
                yield item["member_id"]

    def get_order(self, order_id: str, with_breakdown: bool = False) -> Order | None:
        """The order; `with_breakdown` also reads its earn entry (where the breakdown is kept)."""
        item = self.db.get(keys.order_key(order_id))
        if not item:
            return None
        order = _order(item)
        if with_breakdown and order.member_id and order.earn_entry_id and order.earn_entry_at:
            entry = self._entry_item(order.member_id, clock.iso(order.earn_entry_at), order.earn_entry_id)
            if entry:
                found = _entry(entry).detail.get("breakdown")
                order = order.model_copy(update={"breakdown": Breakdown.model_validate(found) if found else None})
        return order

    def _entry_item(self, member_id: str, at_iso: str, entry_id: str) -> dict[str, Any] | None:
        for _ in range(MAX_MERGE_HOPS):
            entry = self.db.get(keys.ledger_key(member_id, at_iso, entry_id))
            if entry:
                return entry
            profile = self.db.get(keys.member_profile(member_id))
            if not profile or not profile.get("merged_into"):
                return None
            member_id = profile["merged_into"]
        return None

    def order_basket(self, order_id: str) -> Basket | None:
        """The coupons redeemed at the counter for this order (beside the order's key; see store/coupons)."""
        item = self.db.get(keys.basket_key(order_id))
        return coupon_rows.basket_from_item(item) if item else None

    def member_orders(self, member_id: str, cursor: str | None, limit: int) -> tuple[list[Order], str | None]:
        """Purchase history, newest *paid* first (a POS that syncs late posts out of order): one query of the
        sparse, keys-only history index (each order's earn entry, moved with a merge), then one BatchGetItem
        for the orders' current state (refunds). The cursor must name this member's history."""
        start = decode_cursor(cursor, expect={"gsi3pk": keys.history_pk(member_id), "pk": keys.member_pk(member_id)})
        entries, last = self.db.query(IndexName=keys.GSI_HISTORY, KeyConditionExpression="gsi3pk = :h",
                                      values={":h": keys.history_pk(member_id)}, ScanIndexForward=False,
                                      Limit=limit, start=start)
        ids = [keys.history_order_id(e["gsi3sk"]) for e in entries]
        found = {o.order_id: o for o in self.db.batch_get([keys.order_key(i) for i in ids], _order)}
        return [found[i] for i in ids if i in found], encode_cursor(last)

    def history_order_ids(self, member_id: str) -> list[str]:
        """Every order in the member's purchase history, newest paid first (all pages of the keys-only history
        index; the export's read, no scan)."""
        return [keys.history_order_id(e["gsi3sk"]) for e in self.db.query_all(
            IndexName=keys.GSI_HISTORY, KeyConditionExpression="gsi3pk = :h",
            values={":h": keys.history_pk(member_id)}, ScanIndexForward=False)]

    def order_with_refunds(self, order_id: str) -> tuple[Order | None, list[Refund]]:
        """The order (with its points breakdown) and every refund recorded against it: one query of the order's
        partition (the order item and its `REFUND#` documents), + one GetItem of the earn entry."""
        key = keys.order_key(order_id)
        found = list(self.db.query_all(KeyConditionExpression="pk = :pk", values={":pk": key["pk"]},
                                       ConsistentRead=True))
        item = next((i for i in found if i["sk"] == key["sk"]), None)
        refunds = sorted((Refund.model_validate(json.loads(i["body"])["answer"]) for i in found
                          if i["sk"].startswith(keys.refund_key(order_id, "")["sk"])), key=lambda r: r.created_at)
        if item is None:
            return None, refunds
        order = _order(item)
        if order.member_id and order.earn_entry_id and order.earn_entry_at:
            entry = self._entry_item(order.member_id, clock.iso(order.earn_entry_at), order.earn_entry_id)
            found_breakdown = _entry(entry).detail.get("breakdown") if entry else None
            if found_breakdown:
                order = order.model_copy(update={"breakdown": Breakdown.model_validate(found_breakdown)})
        return order, refunds

    def ledger(self, member_id: str, cursor: str | None, limit: int) -> tuple[list[LedgerEntry], str | None]:
        pk = keys.member_pk(member_id)
        start = decode_cursor(cursor, expect={"pk": pk})
        items, last = self.db.query(KeyConditionExpression="pk = :pk AND begins_with(sk, :p)",
                                    values={":pk": pk, ":p": keys.LEDGER_PREFIX}, ScanIndexForward=False,
                                    Limit=limit, start=start)
        return [_entry(i) for i in items], encode_cursor(last)

    def all_entries(self, member_id: str) -> list[LedgerEntry]:
        return [_entry(i) for i in self.db.query_all(
            KeyConditionExpression="pk = :pk AND begins_with(sk, :p)",
            values={":pk": keys.member_pk(member_id), ":p": keys.LEDGER_PREFIX}, ConsistentRead=True)]

    def get_document(self, kind: str, owner: str, doc_id: str) -> dict[str, Any] | None:
        """The document `doc_id` written for `owner` (one GetItem). Documents are never moved by a merge."""
        item = self.db.get(keys.document_key(kind, owner, doc_id))
        return json.loads(item["body"]) if item else None

    def find_document(self, kind: str, member_id: str, doc_id: str) -> tuple[str, dict[str, Any]] | None:
        """The document a client means by (`member_id`, `doc_id`), and the member it was written for. Ids are
        made by clients, so members merged together may each hold one with the same id: the id named wins;
        else the nearest member it was merged into that holds one; else the one other member of the merge
        family (everyone merged into the survivor, through chains) that holds one. Two such others: 409.
        One GetItem when the id named holds it; otherwise one more per profile and per member asked."""
        own = self.get_document(kind, member_id, doc_id)
        if own is not None:
            return member_id, own
        profiles: dict[str, dict[str, Any]] = {}

        def profile(mid: str) -> dict[str, Any]:
            if mid not in profiles:
                profiles[mid] = self.db.get(keys.member_profile(mid)) or {}
            return profiles[mid]

        path = [member_id]
        while profile(path[-1]).get("merged_into") and len(path) <= MAX_MERGE_HOPS:
            path.append(profile(path[-1])["merged_into"])
        for survivor in path[1:]:
            found = self.get_document(kind, survivor, doc_id)
            if found is not None:
                return survivor, found
        asked, pending, visited = set(path), [path[-1]], set()
        others: list[tuple[str, dict[str, Any]]] = []
        while pending and len(visited) < MAX_FAMILY:  # everyone merged into the survivor, through chains
            mid = pending.pop()
            if mid in visited:
                continue
            visited.add(mid)
            found = None if mid in asked else self.get_document(kind, mid, doc_id)
            if found is not None:
                others.append((mid, found))
            pending.extend(sorted(profile(mid).get("merged_from", ())))
        if len(others) > 1:
            raise Conflict(f"several merged members used this {kind} id; name the member it was made for",
                           code=f"{kind}_id_ambiguous",
                           details={f"{kind}_id": doc_id, "member_ids": sorted(m for m, _ in others)})
        return others[0] if others else None

    # ---- the one write -----------------------------------------------------------------------------
    def apply(self, change: Change) -> None:
        tx = self.db.tx()
        kinds: dict[int, str] = {}
        if change.state is not None:
            new = change.state
            item = state_item(new)
            if not change.expected_version:  # version 0: the member has no points state item yet
                kinds[tx.put(item, condition="attribute_not_exists(pk)")] = "state"
            else:
                kinds[tx.put(item, condition="version = :v", values={":v": change.expected_version})] = "state"
        for lot, remaining_before in change.updated_lots:
            kinds[_update_lot(tx, lot, remaining_before)] = "lot"
        paid = {o.order_id: o.paid_at for o in (change.order, change.order_claim) if o is not None}
        for entry in change.entries:
            kinds[tx.put(_entry_item(entry, paid.get(entry.ref)), condition="attribute_not_exists(pk)")] = "entry"
        if change.order is not None:
            kinds[tx.put(_order_item(change.order), condition="attribute_not_exists(pk)")] = "order"
        if change.order_claim is not None:
            # still a guest order, refunded exactly as much as when it was read
            kinds[tx.put(_order_item(change.order_claim),
                         condition="guest = :t AND attribute_not_exists(member_id) AND refunded_amount = :r",
                         values={":t": True, ":r": change.order_claim.refunded_amount})] = "order_claim"
        if change.order_refund is not None:
            order_id, before, after, reversed_after, lines_after = change.order_refund
            kinds[tx.update(keys.order_key(order_id),
                            "SET refunded_amount = :a, points_reversed = :p, refunded_lines = :l",
                            condition="refunded_amount = :b",
                            values={":a": after, ":b": before, ":p": reversed_after,
                                    ":l": _compact(lines_after)})] = "order_state"
        if change.tier_marker is not None and change.member_id:
            marker = {"pk": keys.member_pk(change.member_id), "sk": keys.TIER_MARKER}
            if change.tier_marker.tier is None:
                tx.delete(marker)
            else:
                tx.put({**marker, "type": "tier_marker", "member_id": change.member_id, "tier": change.tier_marker.tier,
                        "gsi2pk": keys.tier_shard(change.member_id), "gsi2sk": change.member_id})
        for doc in change.documents:
            item = {**keys.document_key(doc.kind, doc.owner, doc.doc_id), "type": doc.kind,
                    "body": json.dumps(doc.body, ensure_ascii=False, default=str, separators=(",", ":"))}
            kinds[tx.put(item, condition="attribute_not_exists(pk)")] = doc.kind
        for rollup in rollups.merged([*change.rollups, *_issued_by_stores(change)]):
            add_to_day(tx, rollup)
        for event_type, data in change.events:
            at = clock.iso(clock.now())
            tx.put({**keys.event_key(change.member_id or "-", at), "type": "event", "event_type": event_type,
                    "member_id": change.member_id, "at": at, "data": _compact(data)})
        for coupon, limit in change.coupon_issues:
            kinds[coupon_rows.write_coupon(tx, coupon, limit)] = "coupon"
            kinds[len(tx.actions) - 1] = "coupon_count"
            coupon_rows.count_issued(tx, coupon.template_id, coupon.issuer, clock.business_day(coupon.issued_at), 1,
                                     stat_shard(coupon.code))
        for template_id, limited, n in change.budget_takes:
            kinds[coupon_rows.take_budget(tx, template_id, limited, n)] = "budget"
        posting = coupon_rows.post_coupons(tx, *change.coupon_posting) if change.coupon_posting else []
        for coupon, version in change.coupon_restores:
            kinds[coupon_rows.restore_coupon(tx, coupon, version)] = "coupon_restore"
        for use, sign in change.coupon_uses:
            coupon_rows.count_redemption(tx, use, sign)
        try:
            self.db.commit(tx)
        except TxCancelled as cancelled:
            failed = [kinds.get(i, "?") for i, r in enumerate(cancelled.reasons) if r == "ConditionalCheckFailed"]
            if "budget" in failed and "order" not in failed:
                raise Conflict("the template's budget is used up", code="budget_exhausted") from None
            if "order" not in failed and any(cancelled.failed_at(i) for i in posting):
                raise coupon_rows.refusal_details(change.coupon_posting[2], cancelled, posting) from None  # type: ignore[index]
            # order_claim failing (attached or refunded meanwhile) is a re-read too: the service looks again
            documents = [k for k in failed if k not in ("state", "lot", "entry", "order_state", "order_claim", "?",
                                                         "coupon", "coupon_count", "budget", "coupon_restore")]
            if documents:
                raise DocumentExists(documents[0]) from None
            raise StaleRead() from None


def _issued_by_stores(change: Change) -> list[rollups.DayRollup]:
    """Coupons a change issues from a store's quota count on that store's day (shard 0)."""
    return [rollups.DayRollup(c.issuer.removeprefix("STORE#"), clock.business_day(c.issued_at), {"coupons_issued": 1})
            for c, _ in change.coupon_issues if c.issuer.startswith("STORE#")]


# ---- mapping ----------------------------------------------------------------------------------------------
def _head(profile: dict[str, Any]) -> MemberHead:
    return MemberHead(member_id=profile["pk"].removeprefix(keys.MEMBER_PREFIX), status=profile["status"],
                      merged_into=profile.get("merged_into"), phone_masked=profile.get("phone_masked"),
                      birth_month=int(profile["birth_month"]) if profile.get("birth_month") is not None else None)


def _compact(value: Any) -> str:
    """Nested data as compact JSON text: smaller than a DynamoDB map, and every byte is a write unit."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)


def state_item(s: MemberState) -> dict[str, Any]:
    return {
        "pk": keys.member_pk(s.member_id), "sk": keys.MEMBER_STATE, "type": "member_state", "member_id": s.member_id,
        "version": s.version, "available": s.available, "owed": s.owed, "tier": s.tier, "tier_base": s.tier_base,
        "tier_since": clock.iso(s.tier_since) if s.tier_since else None, "tier_upgrade_order": s.tier_upgrade_order,
        "reviewed_on": s.reviewed_on.isoformat() if s.reviewed_on else None,
        "spend_months": s.spend_months, "orders_months": s.orders_months, "order_count": s.order_count,
        "lifetime_spend": s.lifetime_spend, "lifetime_earned": s.lifetime_earned,
        "first_purchase_at": clock.iso(s.first_purchase_at) if s.first_purchase_at else None,
        "last_purchase_at": clock.iso(s.last_purchase_at) if s.last_purchase_at else None,
        "stores": set(s.stores) or None, "categories": s.categories,
        "open_lots_from": clock.iso(s.open_lots_from) if s.open_lots_from else None,
        "home_store_id": s.home_store_id, "recent_days": s.recent_days or None,
        "coupon_orders": s.coupon_orders or None,
        # The nightly index's entry: written once, never changed (KEYS_ONLY), so updates pay no index write.
        "gsi5pk": s.member_id if s.indexed else None,
    }


def with_home(state: MemberState, profile: dict[str, Any] | None) -> MemberState:
    """The state carries the profile's home store (states written before it did learn it on their next write)."""
    if state.home_store_id is None and profile and profile.get("home_store_id"):
        return state.evolve(home_store_id=profile["home_store_id"])
    return state


def state_from_item(i: dict[str, Any]) -> MemberState:
    return MemberState(
        member_id=i["member_id"], version=i["version"], available=i["available"], owed=i["owed"],
        tier=i.get("tier"), tier_base=i.get("tier_base"), tier_since=_dt(i.get("tier_since")),
        tier_upgrade_order=i.get("tier_upgrade_order"), spend_months=i.get("spend_months", {}),
        reviewed_on=date.fromisoformat(i["reviewed_on"]) if i.get("reviewed_on") else None,
        orders_months=i.get("orders_months", {}), order_count=i.get("order_count", 0),
        lifetime_spend=i.get("lifetime_spend", 0), lifetime_earned=i.get("lifetime_earned", 0),
        first_purchase_at=_dt(i.get("first_purchase_at")), last_purchase_at=_dt(i.get("last_purchase_at")),
        stores=frozenset(i.get("stores", ())), categories=i.get("categories", {}),
        open_lots_from=_dt(i.get("open_lots_from")), home_store_id=i.get("home_store_id"),
        recent_days=i.get("recent_days", ""), coupon_orders=i.get("coupon_orders", 0), indexed="gsi5pk" in i)


_LOT_PROGRESS = ("remaining", "expired", "forgiven", "clawed", "owed", "status")


def _lot_fields(lot: Lot) -> dict[str, Any]:
    """What a lot adds to the ledger entry that carries it (the entry already names member, ref and time)."""
    fields: dict[str, Any] = {"source": lot.source, "earned_on": lot.earned_on.isoformat(),
                              "expires_on": lot.expires_on.isoformat(), "original": lot.original,
                              **{f: getattr(lot, f) for f in _LOT_PROGRESS}}
    if lot.remaining > 0 and lot.status == "active":  # sparse: only lots with points left wait for the sweep
        fields.update(gsi2pk=keys.expiry_bucket(lot.expires_on), gsi2sk=f"{lot.member_id}#{lot.lot_id}")
    return fields


def _update_lot(tx: Tx, lot: Lot, remaining_before: int) -> int:
    """Spend, re-credit, claw back or expire: only the lot's progress changes, on the remainder read."""
    names = {f"#p{i}": f for i, f in enumerate(_LOT_PROGRESS)}
    values: dict[str, Any] = {f":p{i}": getattr(lot, f) for i, f in enumerate(_LOT_PROGRESS)}
    expression = "SET " + ", ".join(f"#p{i} = :p{i}" for i in range(len(_LOT_PROGRESS)))
    index = {k: v for k, v in _lot_fields(lot).items() if k.startswith("gsi2")}
    if index:
        expression += ", gsi2pk = :g, gsi2sk = :gs"
        values.update({":g": index["gsi2pk"], ":gs": index["gsi2sk"]})
    else:
        expression += " REMOVE gsi2pk, gsi2sk"
    values[":before"] = remaining_before
    return tx.update(keys.ledger_key(lot.member_id, clock.iso(lot.at), lot.lot_id), expression,
                     condition="#p0 = :before", names=names, values=values)


def _lot(i: dict[str, Any]) -> Lot:
    return Lot(lot_id=i["entry_id"], member_id=i["member_id"], at=datetime.fromisoformat(i["at"]), source=i["source"],
               ref=i["ref"], earned_on=date.fromisoformat(i["earned_on"]),
               expires_on=date.fromisoformat(i["expires_on"]), original=i["original"], remaining=i["remaining"],
               expired=i.get("expired", 0), forgiven=i.get("forgiven", 0), clawed=i.get("clawed", 0),
               owed=i.get("owed", 0), status=i.get("status", "active"))


def _entry_item(e: LedgerEntry, paid_at: datetime | None = None) -> dict[str, Any]:
    """An order's earn entry (`paid_at`: that order's, from the same Change) is also its line in the
    purchase history index."""
    item = {**keys.ledger_key(e.member_id, clock.iso(e.at), e.entry_id), "type": "ledger", "entry_id": e.entry_id,
            "member_id": e.member_id, "at": clock.iso(e.at), "kind": e.kind, "points": e.points,
            "balance_after": e.balance_after, "ref": e.ref,
            "detail": _compact(e.detail) if e.detail else None, **(_lot_fields(e.lot) if e.lot else {})}
    if e.kind == "earn":
        if paid_at is None:  # a bug: the order would be missing from the history
            raise ValueError(f"earn entry {e.entry_id} written without its order {e.ref}")
        item.update(keys.history_keys(e.member_id, clock.iso(paid_at), clock.iso(e.at), e.ref))
    return item


def _entry(i: dict[str, Any]) -> LedgerEntry:
    return LedgerEntry(entry_id=i["entry_id"], member_id=i["member_id"], at=datetime.fromisoformat(i["at"]),
                       kind=i["kind"], points=i["points"], balance_after=i["balance_after"], ref=i["ref"],
                       detail=json.loads(i["detail"]) if i.get("detail") else {},
                       lot=_lot(i) if "remaining" in i else None)


LINE_FIELDS = ("sku", "name", "category", "qty", "amount")


def _order_item(o: Order) -> dict[str, Any]:
    """Kept under 1 KB for a typical 5-line order (every started KB is a write unit, doubled in the
    transaction): lines as compact arrays, and the points breakdown only on the earn ledger entry."""
    item = {**keys.order_key(o.order_id), "type": "order",
            **o.model_dump(mode="json", exclude={"items", "breakdown", "paid_at", "created_at", "attached_at",
                                                 "refunded_lines", "earn_entry_at", "coupons"}),
            "coupons": _compact([[c.code, c.discount] for c in o.coupons]) if o.coupons else None,
            "refunded_lines": _compact(o.refunded_lines) if o.refunded_lines else None,
            "paid_at": clock.iso(o.paid_at), "created_at": clock.iso(o.created_at),
            "attached_at": clock.iso(o.attached_at) if o.attached_at else None,
            "earn_entry_at": clock.iso(o.earn_entry_at) if o.earn_entry_at else None,
            "items": _compact([[getattr(line, f) for f in LINE_FIELDS] for line in o.items])}
    if o.guest_phone_hash and not o.member_id:  # guest orders wait in the lookup index for the attach
        item.update(gsi1pk=keys.guest_orders_pk(o.guest_phone_hash), gsi1sk=f"{clock.iso(o.paid_at)}#{o.order_id}")
    return item


def _order(i: dict[str, Any]) -> Order:
    data = {k: v for k, v in i.items() if k not in ("pk", "sk", "type", "gsi1pk", "gsi1sk")}
    data["items"] = [dict(zip(LINE_FIELDS, line, strict=True)) for line in json.loads(i["items"])]
    data["breakdown"] = None
    data["refunded_lines"] = json.loads(i["refunded_lines"]) if i.get("refunded_lines") else {}
    data["coupons"] = [{"code": c, "discount": d} for c, d in json.loads(i["coupons"])] if i.get("coupons") else []
    for optional in ("member_id", "balance_after", "tier_before", "tier_after", "guest_phone_hash", "attached_at",
                     "earn_entry_id", "earn_entry_at"):
        data.setdefault(optional, None)
    return Order.model_validate(data)
