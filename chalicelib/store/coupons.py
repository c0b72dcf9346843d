"""Coupon templates, their budget counters, coupons, the per-order basket and bulk issues in DynamoDB.

Every write that must hold a rule is a conditional write: a coupon is put only where its code is free, a
budget taken only while `left` covers it, a member's count raised only below the limit and only while that
member is live, a coupon redeemed or released only at the version that was read."""
from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from ..domain import clock
from ..domain.coupons import Basket, Coupon, CouponState, Template
from ..domain.errors import Conflict, DocumentExists, Invalid, StaleRead
from ..domain.orders import OrderCoupon
from ..domain.pool import STAT_SHARDS, CouponUse, month_of, shard
from ..domain.rollups import DayRollup
from . import keys
from .db import Db, Tx, TxCancelled, decode_cursor, encode_cursor
from .rollups import add_to_day


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)


@dataclass(frozen=True)
class Budget:
    """A budget level's counters. HQ: `allocated` went out to regions and stores. A region: `allocated` came
    in from HQ, `sub_allocated` went out to its stores. A store: `from_hq` + `from_region` came in."""

    issued: int
    left: int | None  # None: unlimited (an HQ budget without a limit)
    allocated: int = 0
    sub_allocated: int = 0
    from_hq: int = 0
    from_region: int = 0
    limit: int | None = None


def _budget(item: dict[str, Any]) -> Budget:
    return Budget(issued=item.get("issued", 0), left=item.get("left"), allocated=item.get("allocated", 0),
                  sub_allocated=item.get("sub_allocated", 0), from_hq=item.get("from_hq", 0),
                  from_region=item.get("from_region", 0), limit=item.get("limit"))


_SKIP = "skip_"  # an audience job's counter of members skipped for one reason: skip_<reason>


def _count_attr(template_id: str) -> str:
    return f"c_{template_id}"


class DynamoCouponRepository:
    def __init__(self, db: Db) -> None:
        self.db = db

    # ---- templates and budgets ---------------------------------------------------------------------
    def get_template(self, template_id: str) -> Template | None:
        item = self.db.get(keys.template_key(template_id))
        return _template(item) if item else None

    def list_templates(self) -> list[Template]:
        return [_template(i) for i in self.db.query_all(
            KeyConditionExpression="pk = :pk AND begins_with(sk, :p)",
            values={":pk": keys.ORG_PK, ":p": keys.TEMPLATE_PREFIX})]

    def budget(self, template_id: str, level: str = keys.HQ_LEVEL) -> Budget:
        return _budget(self.db.get(keys.budget_key(template_id, level)) or {})

    def put_template(self, template: Template, expected_version: int, budget: Budget) -> None:
        """The template and its budget counter together: `left` = budget − issued − allocated, on the counters
        read (an issue or allocation meanwhile makes this a re-read)."""
        tx = self.db.tx()
        item = {**keys.template_key(template.template_id), "type": "coupon_template",
                "body": _json(template.model_dump(mode="json")), "version": template.version}
        if expected_version:
            tx.put(item, condition="version = :v", values={":v": expected_version})
        else:
            tx.put(item, condition="attribute_not_exists(pk)")
        key = keys.budget_key(template.template_id)
        condition = "(attribute_not_exists(issued) OR issued = :i) AND " \
                    "(attribute_not_exists(allocated) OR allocated = :a)"
        values: dict[str, Any] = {":t": template.template_id, ":i": budget.issued, ":a": budget.allocated,
                                  ":g": keys.pool_lookup_pk(keys.HQ_LEVEL), ":lv": keys.HQ_LEVEL}
        index = "template_id = :t, gsi1pk = :g, gsi1sk = :t, #level = :lv"
        if template.budget is None:
            tx.update(key, f"SET {index} REMOVE #limit, #left", condition=condition,
                      names={"#limit": "limit", "#left": "left", "#level": "level"}, values=values)
        else:
            tx.update(key, f"SET {index}, #limit = :b, #left = :l", condition=condition,
                      names={"#limit": "limit", "#left": "left", "#level": "level"},
                      values={**values, ":b": template.budget,
                              ":l": template.budget - budget.issued - budget.allocated})
        try:
            self.db.commit(tx)
        except TxCancelled:
            raise StaleRead() from None

    # ---- coupons -----------------------------------------------------------------------------------
    def get_coupon(self, code: str) -> Coupon | None:
        item = self.db.get(keys.coupon_key(code))
        return _coupon(item) if item else None

    def coupon_at_counter(self, code: str, order_id: str) -> tuple[Coupon | None, Basket | None, bool]:
        """The coupon, the order's basket and whether the order is posted: one BatchGetItem."""
        found: dict[str, dict[str, Any]] = {}
        for item in self.db.batch_get([keys.coupon_key(code), keys.basket_key(order_id), keys.order_key(order_id)],
                                      lambda i: i, consistent=True):
            found[item["sk"]] = item
        coupon = _coupon(found["COUPON"]) if "COUPON" in found else None
        basket = basket_from_item(found["COUPONS"]) if "COUPONS" in found else None
        return coupon, basket, "ORDER" in found

    def coupons(self, codes: list[str]) -> list[Coupon]:
        return self.db.batch_get([keys.coupon_key(c) for c in codes], _coupon, consistent=True)

    def hold(self, coupon: Coupon, expected_version: int, basket: Basket, basket_version: int) -> None:
        """A redemption (or its release): the coupon and the order's basket at the versions read, while the
        order is not posted."""
        tx = self.db.tx()
        tx.put(coupon_item(coupon), condition="version = :v", values={":v": expected_version})
        if basket_version:
            tx.put(basket_item(basket), condition="version = :v", values={":v": basket_version})
        else:
            tx.put(basket_item(basket), condition="attribute_not_exists(pk)")
        posted = tx.check(keys.order_key(basket.order_id), "attribute_not_exists(pk)")
        try:
            self.db.commit(tx)
        except TxCancelled as cancelled:
            if cancelled.failed_at(posted):
                raise Conflict("the order has already been posted", code="order_posted",
                               details={"order_id": basket.order_id}) from None
            raise StaleRead() from None

    def release_after_posting(self, coupon: Coupon, expected_version: int) -> None:
        """The order was posted without this coupon: it goes back, the basket stays as the order's record."""
        tx = self.db.tx()
        tx.put(coupon_item(coupon), condition="version = :v", values={":v": expected_version})
        try:
            self.db.commit(tx)
        except TxCancelled:
            raise StaleRead() from None

    def member_coupons(self, member_ids: list[str], state: str | None, cursor: str | None, limit: int,
                       valid_after: str = "") -> tuple[list[Coupon], str | None]:
        """A member's coupons (`member_ids`: the member and everyone merged into them), by state then validity
        end; `valid_after` (ISO time) leaves out coupons whose validity ended before it. One member: one
        paginated query. A merge family: every partition read, merged, then paged by the last sort key (a
        family holds a few hundred coupons at most)."""
        prefix = f"{state}#" if state else ""
        values = {":lo": prefix + valid_after or " ", ":hi": prefix + "~"}  # (key values may not be empty)
        condition = "gsi1pk = :p AND gsi1sk BETWEEN :lo AND :hi"
        if len(member_ids) == 1:
            pk = keys.member_coupons_pk(member_ids[0])
            start = decode_cursor(cursor, expect={"gsi1pk": pk})
            if start is not None:
                after = str(start.get("gsi1sk", ""))
                if not after.startswith(prefix) or after > values[":hi"]:
                    raise Invalid("cursor is not valid for this listing", code="invalid_cursor",
                                  details=[{"loc": ["query", "cursor"], "msg": "issued for another state"}])
                # the page's coupons that ended since the first page was read: the key range keeps the cursor
                values[":lo"] = min(values[":lo"], after)
            items, last = self.db.query(IndexName=keys.GSI_LOOKUP, KeyConditionExpression=condition,
                                        values={":p": pk, **values}, Limit=limit, start=start)
            return [_coupon(i) for i in items], encode_cursor(
                {k: last[k] for k in ("pk", "sk", "gsi1pk", "gsi1sk")} if last else None)
        after = decode_cursor(cursor, expect={"family": member_ids[0]}) if cursor else None
        everything = sorted((i for m in member_ids for i in self.db.query_all(
            IndexName=keys.GSI_LOOKUP, KeyConditionExpression=condition,
            values={":p": keys.member_coupons_pk(m), **values})), key=lambda i: i["gsi1sk"])
        if after:
            everything = [i for i in everything if i["gsi1sk"] > after.get("gsi1sk", "")]
        page = everything[:limit]
        more = len(everything) > limit
        return [_coupon(i) for i in page], encode_cursor(
            {"family": member_ids[0], "gsi1sk": page[-1]["gsi1sk"]}) if more else None

    def due_coupons(self, day: date) -> Iterator[Coupon]:
        """Available coupons whose last valid day is `day` (the sparse expiry index)."""
        for item in self.db.query_all(IndexName=keys.GSI_WORK, KeyConditionExpression="gsi2pk = :p",
                                      values={":p": keys.coupon_expiry_bucket(day)}):
            yield _coupon(item)

    def expire(self, coupon: Coupon) -> bool:
        """Mark an available coupon expired (False: it changed meanwhile: used, or already expired)."""
        expired = CouponState.EXPIRED.value
        done = self.db.update(
            keys.coupon_key(coupon.code), "SET #s = :e, version = :nv, gsi1sk = :g REMOVE gsi2pk, gsi2sk",
            condition="version = :v AND #s = :a", names={"#s": "state"},
            values={":e": expired, ":nv": coupon.version + 1, ":v": coupon.version,
                    ":a": CouponState.AVAILABLE.value,
                    ":g": keys.member_coupons_sk(expired, clock.iso(coupon.valid_to), coupon.code)})
        return done is not None

    # ---- per-member counts -------------------------------------------------------------------------
    def counts(self, member_ids: list[str], template_id: str) -> dict[str, tuple[int, bool]]:
        """Per member: coupons of the template ever issued to them, and whether the count was folded into a
        survivor (the member was merged away meanwhile)."""
        out: dict[str, tuple[int, bool]] = {m: (0, False) for m in member_ids}
        attr = _count_attr(template_id)
        for start in range(0, len(member_ids), 100):
            for item in self.db.batch_get([keys.coupon_counts_key(m) for m in member_ids[start:start + 100]],
                                          lambda i: i, consistent=True):
                out[item["pk"].removeprefix(keys.MEMBER_PREFIX)] = (item.get(attr, 0), "merged_into" in item)
        return out

    # ---- bulk issues -------------------------------------------------------------------------------
    def get_issue(self, issue_id: str) -> dict[str, Any] | None:
        item = self.db.get(keys.issue_key(issue_id))
        return json.loads(item["body"]) | {"status": item["status"]} if item else None

    def start_issue(self, issue_id: str, body: dict[str, Any], template_id: str, limited: bool, n: int,
                    level: str = keys.HQ_LEVEL) -> None:
        """The plan (members and their codes) and the budget it takes, together: a crash after this leaves
        a plan the retry completes, never budget taken without a record of what it was taken for."""
        tx = self.db.tx()
        plan = tx.put({**keys.issue_key(issue_id), "type": "coupon_issue", "status": "pending", "body": _json(body)},
                      condition="attribute_not_exists(pk)")
        budget = take_budget(tx, template_id, limited, n, level)
        try:
            self.db.commit(tx)
        except TxCancelled as cancelled:
            if cancelled.failed_at(plan):
                raise StaleRead() from None  # a twin wrote its plan (and took the budget) first: the caller reads it
            if cancelled.failed_at(budget):
                left = self.budget(template_id, level).left
                if level == keys.HQ_LEVEL:
                    raise Conflict("the template's budget cannot cover this issue", code="budget_exhausted",
                                   details={"left": left, "requested": n}) from None
                raise Conflict("the quota cannot cover this issue", code="quota_exhausted",
                               details={"level": level, "left": left or 0, "requested": n}) from None
            raise StaleRead() from None  # a twin wrote the plan first: the caller reads it

    def issue_coupon(self, coupon: Coupon, limit: int | None) -> str:
        """One coupon of a bulk issue: 'issued', 'exists' (this code is already a coupon) or 'limit' (the
        member reached the limit, or was merged away, since the plan was made)."""
        tx = self.db.tx()
        put = write_coupon(tx, coupon, limit)
        try:
            self.db.commit(tx)
        except TxCancelled as cancelled:
            return "exists" if cancelled.failed_at(put) else "limit"
        return "issued"

    def finish_issue(self, issue_id: str, answer: dict[str, Any], template_id: str, limited: bool,
                     returned: int, level: str = keys.HQ_LEVEL, day: date | None = None) -> bool:
        """Record the answer and give back the budget of coupons the plan could not issue; False if a twin
        finished first."""
        tx = self.db.tx()
        tx.update(keys.issue_key(issue_id), "SET #s = :done, answer = :a", condition="#s = :pending",
                  names={"#s": "status"}, values={":done": "done", ":a": _json(answer), ":pending": "pending"})
        if returned:
            give_back_budget(tx, template_id, limited, returned, level)
        if answer["issued_count"] and day is not None:  # the day's numbers, once, with the answer
            count_issued(tx, template_id, level, day, answer["issued_count"], shard(issue_id))
            if level.startswith("STORE#"):  # and the issuing store's day (its report's coupon funnel)
                add_to_day(tx, DayRollup(level.removeprefix("STORE#"), day, {"coupons_issued": answer["issued_count"]}))
        try:
            self.db.commit(tx)
        except TxCancelled:
            return False
        return True

    def issue_answer(self, issue_id: str) -> dict[str, Any] | None:
        item = self.db.get(keys.issue_key(issue_id))
        return json.loads(item["answer"]) if item and item.get("answer") else None

    def issue_record(self, issue_id: str) -> dict[str, Any] | None:
        """An issue item as GET /coupon-issues/{issue_id} shows it: kind, status, body, answer, counters."""
        item = self.db.get(keys.issue_key(issue_id))
        if not item:
            return None
        return {"kind": item.get("kind", "members"), "status": item["status"], "body": json.loads(item["body"]),
                "answer": json.loads(item["answer"]) if item.get("answer") else None,
                "segments": int(item.get("segments", 0)), "matched": int(item.get("matched", 0)),
                "issued": int(item.get("issued", 0)), "stop_reason": item.get("stop_reason"),
                "created_at": item.get("created_at"), "updated_at": item.get("updated_at"),
                "skipped": {k.removeprefix(_SKIP): int(v) for k, v in item.items() if k.startswith(_SKIP) and v}}

    # ---- segment-audience jobs (key layout: keys.py, 'segment audiences') ------------------------------------
    def start_audience(self, issue_id: str, body: dict[str, Any], segments: int = 0) -> bool:
        """The job's record, written once (status 'selecting'; 0 segments: its first worker decides); False if the
        issue_id is taken already."""
        now = clock.iso(clock.now())
        tx = self.db.tx()
        tx.put({**keys.issue_key(issue_id), "type": "coupon_issue", "kind": "audience", "status": "selecting",
                "body": _json(body), "segments": segments, "matched": 0, "issued": 0, "created_at": now,
                "updated_at": now}, condition="attribute_not_exists(pk)")
        try:
            self.db.commit(tx)
        except TxCancelled:
            return False
        return True

    def fix_audience_segments(self, issue_id: str, segments: int) -> int:
        """The job's segment count, set once by its first worker (the request does not read the table's size):
        the count stored, whoever set it."""
        self.db.update(keys.issue_key(issue_id), "SET #n = :n", condition="#n = :zero", names={"#n": "segments"},
                       values={":n": segments, ":zero": 0})
        item = self.db.get(keys.issue_key(issue_id))
        return int(item["segments"]) if item else segments

    def audience_cursor(self, issue_id: str, segment: int) -> tuple[int, dict[str, Any] | None, bool]:
        """(the next page's number, the scan's start key, done) of one segment of the job."""
        item = self.db.get(keys.audience_cursor_key(issue_id, segment))
        if not item:
            return 0, None, False
        return int(item["page"]), json.loads(item["start"]) if item.get("start") else None, bool(item.get("done"))

    def commit_audience_chunk(self, issue_id: str, segment: int, page: int, start: dict[str, Any] | None, done: bool,
                              matched: int, issued: int, skipped: dict[str, int]) -> bool:
        """The segment's cursor past this page and the chunk's numbers, in one transaction, only if the cursor is
        still at this page: a second worker on the same job counts nothing twice. False if it was not."""
        tx = self.db.tx()
        cursor = {**keys.audience_cursor_key(issue_id, segment), "type": "audience_cursor", "page": page + 1,
                  "start": _json(start) if start else None, "done": done}
        if page == 0:
            tx.put(cursor, condition="attribute_not_exists(pk)")
        else:
            tx.put(cursor, condition="page = :p", values={":p": page})
        adds = {"matched": matched, "issued": issued, **{f"{_SKIP}{r}": n for r, n in skipped.items() if n}}
        names = {f"#a{i}": a for i, a in enumerate(adds)}
        values: dict[str, Any] = {f":a{i}": n for i, n in enumerate(adds.values())}
        tx.update(keys.issue_key(issue_id), "ADD " + ", ".join(f"#a{i} :a{i}" for i in range(len(adds)))
                  + " SET updated_at = :now", condition="attribute_exists(pk)", names=names,
                  values={**values, ":now": clock.iso(clock.now())})
        try:
            self.db.commit(tx)
        except TxCancelled:
            return False
        return True

    def set_audience_status(self, issue_id: str, status: str, from_statuses: tuple[str, ...],
                            reason: str | None = None) -> bool:
        """Move the job to `status` if it is in one of `from_statuses`; False if it was not."""
        values: dict[str, Any] = {":s": status, ":now": clock.iso(clock.now())}
        values |= {f":f{i}": f for i, f in enumerate(from_statuses)}
        expr = "SET #s = :s, updated_at = :now" + (", stop_reason = :r" if reason else "")
        if reason:
            values[":r"] = reason
        allowed = ", ".join(f":f{i}" for i in range(len(from_statuses)))
        return self.db.update(keys.issue_key(issue_id), expr, condition=f"#s IN ({allowed})",
                              names={"#s": "status"}, values=values) is not None

    # ---- the benefit pool --------------------------------------------------------------------------
    def get_allocation(self, allocation_id: str) -> dict[str, Any] | None:
        item = self.db.get(keys.allocation_key(allocation_id))
        return json.loads(item["body"]) if item else None

    def allocate(self, allocation_id: str, body: dict[str, Any], template_id: str, source: str,
                 source_limited: bool, target: str, quantity: int) -> None:
        """Move quota from `source` (HQ's budget or a region's allocation) to `target` (a region or store), or
        back when `quantity` < 0, with the allocation's document: one transaction, each side conditioned so
        that no level ever gives more than it has left (nor takes back more than the target has unissued)."""
        tx = self.db.tx()
        doc = tx.put({**keys.allocation_key(allocation_id), "type": "allocation", "template_id": template_id,
                      "source": source, "target": target, "quantity": quantity, "body": _json(body)},
                     condition="attribute_not_exists(pk)")
        out = "allocated" if source == keys.HQ_LEVEL else "sub_allocated"
        received = {"REGION": "allocated", "STORE": "from_hq" if source == keys.HQ_LEVEL else "from_region"}[
            target.split("#", 1)[0]]
        n = abs(quantity)
        sign = 1 if quantity > 0 else -1
        names = {"#left": "left", "#in": received, "#level": "level"}
        if quantity > 0:
            if source_limited:
                src = tx.update(keys.budget_key(template_id, source), "ADD #out :n, #left :neg",
                                condition="#left >= :n", names={"#out": out, "#left": "left"},
                                values={":n": n, ":neg": -n})
            else:
                src = tx.update(keys.budget_key(template_id, source), "ADD #out :n",
                                condition="attribute_exists(pk) AND attribute_not_exists(#left)",
                                names={"#out": out, "#left": "left"}, values={":n": n})
            tgt = tx.update(keys.budget_key(template_id, target),
                            "SET template_id = :t, gsi1pk = :g, gsi1sk = :t, #level = :lv ADD #in :n, #left :n",
                            names=names, values={":t": template_id, ":g": keys.pool_lookup_pk(target),
                                                 ":lv": target, ":n": n})
        else:
            tgt = tx.update(keys.budget_key(template_id, target), "ADD #in :neg, #left :neg",
                            condition="#left >= :n AND #in >= :n", names={"#in": received, "#left": "left"},
                            values={":n": n, ":neg": -n})
            if source_limited:
                src = tx.update(keys.budget_key(template_id, source), "ADD #out :neg, #left :n",
                                condition="attribute_exists(#left)", names={"#out": out, "#left": "left"},
                                values={":n": n, ":neg": -n})
            else:
                src = tx.update(keys.budget_key(template_id, source), "ADD #out :neg",
                                condition="attribute_not_exists(#left)", names={"#out": out, "#left": "left"},
                                values={":neg": -n})
        try:
            self.db.commit(tx)
        except TxCancelled as cancelled:
            if cancelled.failed_at(doc):
                raise DocumentExists("allocation") from None
            if sign > 0 and cancelled.failed_at(src):
                left = self.budget(template_id, source).left
                raise Conflict("not enough unallocated quota left at the source", code="quota_exhausted",
                               details={"level": source, "left": left or 0, "requested": n}) from None
            if sign < 0 and cancelled.failed_at(tgt):
                raise Conflict("the target has less unissued quota from this source than returned",
                               code="return_exceeds_quota", details={"level": target, "requested": n}) from None
            raise StaleRead() from None  # the template's budget was made limited/unlimited meanwhile

    def pool(self, level: str) -> list[tuple[str, Budget]]:
        """Every template's counters at one level: one query of the lookup index."""
        return [(i["template_id"], _budget(i)) for i in self.db.query_all(
            IndexName=keys.GSI_LOOKUP, KeyConditionExpression="gsi1pk = :p",
            values={":p": keys.pool_lookup_pk(level)})]

    def stats(self, template_id: str, levels: list[str], first: date, last: date) -> list[dict[str, Any]]:
        """The day rows of a template for the given levels, first..last: one query per level."""
        return [i for level in levels for i in self.db.query_all(
            KeyConditionExpression="pk = :p AND sk BETWEEN :a AND :b",
            values={":p": keys.coupon_stats_key(template_id, level, first)["pk"], ":a": first.isoformat(),
                    ":b": last.isoformat()})]

    def settlement(self, month: str) -> list[dict[str, Any]]:
        """Every settlement row of a month, shard by shard (the caller adds the shards' rows up)."""
        return [i for n in range(STAT_SHARDS) for i in self.db.query_all(
            KeyConditionExpression="pk = :p", values={":p": keys.settlement_pk(month, n)})]


# ---- transaction pieces (also used by the ledger's one write) ----------------------------------------------
def take_budget(tx: Tx, template_id: str, limited: bool, n: int, level: str = keys.HQ_LEVEL) -> int:
    """Take n from a budget level: counted always, refused when `left` would go below 0. `limited` is what the
    template said when read; a template edited meanwhile fails the condition (a re-read)."""
    if not limited:
        return tx.update(keys.budget_key(template_id, level), "ADD issued :n",
                         condition="attribute_not_exists(#left)", names={"#left": "left"}, values={":n": n})
    return tx.update(keys.budget_key(template_id, level), "ADD issued :n, #left :neg",
                     condition="#left >= :n", names={"#left": "left"}, values={":n": n, ":neg": -n})


def give_back_budget(tx: Tx, template_id: str, limited: bool, n: int, level: str = keys.HQ_LEVEL) -> int:
    if not limited:
        return tx.update(keys.budget_key(template_id, level), "ADD issued :neg", values={":neg": -n})
    return tx.update(keys.budget_key(template_id, level), "ADD issued :neg, #left :n",
                     condition="attribute_exists(#left)", names={"#left": "left"}, values={":n": n, ":neg": -n})


def _stat(tx: Tx, template_id: str, level: str, day: date, deltas: dict[str, int]) -> None:
    names = {f"#f{i}": f for i, f in enumerate(deltas)}
    values: dict[str, Any] = {f":d{i}": v for i, v in enumerate(deltas.values())}
    tx.update(keys.coupon_stats_key(template_id, level, day),
              "SET template_id = :t, #level = :l, #day = :day ADD " +
              ", ".join(f"#f{i} :d{i}" for i in range(len(deltas))),
              names={**names, "#level": "level", "#day": "day"},
              values={**values, ":t": template_id, ":l": level, ":day": day.isoformat()})


def count_issued(tx: Tx, template_id: str, level: str, day: date, n: int, shard_no: int) -> None:
    """Coupons issued on `day` from `level`: that level's row and one brand-wide shard."""
    for lv in (level, f"ALL#{shard_no}"):
        _stat(tx, template_id, lv, day, {"issued": n})


def count_redemption(tx: Tx, used: CouponUse, sign: int) -> None:
    """A coupon used on a posted order (sign 1), or given back by the order's whole refund (sign -1): its
    template's day (the order's paid day), brand-wide shard, and the month's settlement row."""
    deltas = {"redeemed": sign, "discount": sign * used.discount, "gift_cost": sign * used.gift_cost,
              "sales": sign * used.sales}
    for lv in (used.issuer, f"ALL#{shard(used.code)}"):
        _stat(tx, used.template_id, lv, used.day, deltas)
    month = month_of(used.day)
    tx.update(keys.settlement_key(month, shard(used.code), used.template_id, used.issuer, used.store_id),
              "SET template_id = :t, issuer = :i, redeemer = :r, #month = :m "
              "ADD #count :n, discount :d, gift_cost :g",
              names={"#month": "month", "#count": "count"},
              values={":t": used.template_id, ":i": used.issuer, ":r": used.store_id, ":m": month, ":n": sign,
                      ":d": sign * used.discount, ":g": sign * used.gift_cost})


def write_coupon(tx: Tx, coupon: Coupon, limit: int | None) -> int:
    """A new coupon and its member's count: the code must be free; the count below the limit; the member's
    count not folded into a survivor. Returns the coupon put's index."""
    put = tx.put(coupon_item(coupon), condition="attribute_not_exists(pk)")
    attr = {"#c": _count_attr(coupon.template_id)}
    condition = "attribute_not_exists(merged_into)"
    values: dict[str, Any] = {":one": 1, ":zero": 0}
    if limit is not None:
        condition += " AND (attribute_not_exists(#c) OR #c < :limit)"
        values[":limit"] = limit
    tx.update(keys.coupon_counts_key(coupon.member_id),
              "SET #c = if_not_exists(#c, :zero) + :one, #type = :type ADD v :one", condition=condition,
              names={**attr, "#type": "type"}, values={**values, ":type": "coupon_counts"})
    return put


def post_coupons(tx: Tx, order_id: str, order_amount: int, coupons: list[OrderCoupon]) -> list[int]:
    """An order posted with coupons: each was redeemed for this order with this discount, they are all the
    basket holds, and the basket was redeemed for this order amount; then the basket is closed."""
    indexes = [tx.update(keys.basket_key(order_id), "SET posted = :t ADD version :one",
                         condition="posted = :f AND order_amount = :a AND size(coupons) = :n",
                         values={":t": True, ":f": False, ":a": order_amount, ":n": len(coupons), ":one": 1})]
    for c in coupons:
        indexes.append(tx.check(keys.coupon_key(c.code), "#s = :used AND redeemed_order = :o AND discount = :d",
                                names={"#s": "state"}, values={":used": "used", ":o": order_id, ":d": c.discount}))
    return indexes


def restore_coupon(tx: Tx, coupon: Coupon, expected_version: int) -> int:
    return tx.put(coupon_item(coupon), condition="version = :v", values={":v": expected_version})


def fold_counts(db: Db, tx: Tx, source_id: str, target_id: str) -> None:
    """A merge's step 1: the source's per-template counts join the survivor's, and the source's item is marked
    merged so no issue counts on it after (it is created marked if the source never had one)."""
    source = db.get(keys.coupon_counts_key(source_id)) or {}
    target = db.get(keys.coupon_counts_key(target_id)) or {}
    tx.update(keys.coupon_counts_key(source_id), "SET merged_into = :t, #type = :type",
              condition="attribute_not_exists(merged_into) AND " +
                        ("v = :v" if "v" in source else "attribute_not_exists(v)"), names={"#type": "type"},
              values={":t": target_id, ":type": "coupon_counts", **({":v": source["v"]} if "v" in source else {})})
    counts = {k: v for k, v in source.items() if k.startswith("c_")}
    if not counts:
        return
    names = {f"#c{i}": k for i, k in enumerate(counts)}
    values: dict[str, Any] = {f":n{i}": n for i, n in enumerate(counts.values())}
    values[":one"] = 1
    tx.update(keys.coupon_counts_key(target_id),
              "SET #type = :type ADD " + ", ".join(f"#c{i} :n{i}" for i in range(len(counts))) + ", v :one",
              condition="attribute_not_exists(merged_into) AND " +
                        ("v = :tv" if "v" in target else "attribute_not_exists(v)"),
              names={**names, "#type": "type"},
              values={**values, ":type": "coupon_counts", **({":tv": target["v"]} if "v" in target else {})})


# ---- mapping ----------------------------------------------------------------------------------------------
def coupon_item(c: Coupon) -> dict[str, Any]:
    valid_to = clock.iso(c.valid_to)
    item: dict[str, Any] = {
        **keys.coupon_key(c.code), "type": "coupon", "code": c.code, "template_id": c.template_id,
        "member_id": c.member_id, "terms": _json(c.terms.model_dump(mode="json", exclude_defaults=True)),
        "valid_from": clock.iso(c.valid_from), "valid_to": valid_to, "state": c.state.value, "source": c.source,
        "issuer": c.issuer, "issued_at": clock.iso(c.issued_at), "version": c.version,
        "released_orders": _json(c.released_orders) if c.released_orders else None,
        "restored_at": clock.iso(c.restored_at) if c.restored_at else None,
        "released_stores": _json(c.released_stores) if c.released_stores else None,
        "gsi1pk": keys.member_coupons_pk(c.member_id),
        "gsi1sk": keys.member_coupons_sk(c.state.value, valid_to, c.code),
    }
    if c.redemption is not None:
        item.update(redemption=_json(c.redemption.model_dump(mode="json")), redeemed_order=c.redemption.order_id,
                    discount=c.redemption.discount, redemption_print=c.redemption_print)
    if c.state is CouponState.AVAILABLE:  # sparse: only available coupons wait for the daily sweep
        item.update(gsi2pk=keys.coupon_expiry_bucket(clock.business_day(c.valid_to)), gsi2sk=c.code)
    return item


def _coupon(i: dict[str, Any]) -> Coupon:
    return Coupon(code=i["code"], template_id=i["template_id"], member_id=i["member_id"],
                  terms=json.loads(i["terms"]), valid_from=datetime.fromisoformat(i["valid_from"]),
                  valid_to=datetime.fromisoformat(i["valid_to"]), state=i["state"], source=i["source"],
                  issuer=i.get("issuer", "HQ"),
                  issued_at=datetime.fromisoformat(i["issued_at"]),
                  redemption=json.loads(i["redemption"]) if i.get("redemption") else None,
                  redemption_print=i.get("redemption_print"),
                  released_orders=json.loads(i.get("released_orders") or "[]"),
                  restored_at=datetime.fromisoformat(i["restored_at"]) if i.get("restored_at") else None,
                  released_stores=json.loads(i.get("released_stores") or "{}"),
                  version=i["version"])


def basket_item(b: Basket) -> dict[str, Any]:
    return {**keys.basket_key(b.order_id), "type": "coupon_basket", "order_id": b.order_id,
            "order_amount": b.order_amount, "coupons": b.coupons, "posted": b.posted, "version": b.version}


def basket_from_item(i: dict[str, Any]) -> Basket:
    return Basket(order_id=i["order_id"], order_amount=i["order_amount"], coupons=i.get("coupons", []),
                  posted=i.get("posted", False), version=i["version"])


def _template(i: dict[str, Any]) -> Template:
    return Template.model_validate(json.loads(i["body"]))


def refusal_details(coupons: list[OrderCoupon], cancelled: TxCancelled, indexes: list[int]) -> Invalid:
    """Why an order's coupons did not match what was redeemed for it (the basket first, then each code)."""
    failed = [c.code for c, i in zip(coupons, indexes[1:], strict=True) if cancelled.failed_at(i)]
    return Invalid("the order's coupons do not match what was redeemed for this order", code="coupons_not_redeemed",
                   details={"codes": failed, "basket": cancelled.failed_at(indexes[0])})
