"""Spending, cancelling, adjusting and expiring points; the points and tier views."""
from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime, timedelta
from typing import Any

from ..domain import clock
from ..domain.access import Principal, Role, require_self, require_store
from ..domain.errors import Conflict, DocumentExists, Forbidden, Invalid, NotFound, StaleRead
from ..domain.ids import new_id
from ..domain.ledger import Change, Document, LedgerEntry, Lot
from ..domain.points import InsufficientPoints, LotView, earliest, expires_on, oldest_open, pay_debt, plan_consumption
from ..observability import audit as audit_line
from ..observability import metrics
from . import program
from .ledger_common import fingerprint, live_member, optimistic
from .orders import progress
from .ports import LedgerRepository, StoreRepository


def _replay(ledger: LedgerRepository, kind: str, owner: str, doc_id: str, print_: str) -> dict[str, Any] | None:
    done = ledger.get_document(kind, owner, doc_id)
    if done is None:
        return None
    if done["fingerprint"] != print_:
        raise Conflict(f"{kind}_id already used for a different request", code=f"{kind}_id_reused",
                       details={f"{kind}_id": doc_id})
    return done["answer"]


def _idempotent(ledger: LedgerRepository, kind: str, owner: str, doc_id: str, print_: str,
                attempt: Callable[[], dict[str, Any]]) -> tuple[dict[str, Any], bool]:
    """Replay first (a retried redemption must not be judged against the balance it already spent), then
    do it; a concurrent twin that wins the document's key turns into a replay too."""
    previous = _replay(ledger, kind, owner, doc_id, print_)
    if previous is not None:
        return previous, False
    try:
        return optimistic(attempt), True
    except DocumentExists:
        answer = _replay(ledger, kind, owner, doc_id, print_)
        if answer is None:
            raise
        return answer, False


# ---- redemptions ------------------------------------------------------------------------------------------
def redeem(member_id: str, redemption_id: str, points: int, reason: str, store_id: str | None, actor: Principal,
           ledger: LedgerRepository, stores: StoreRepository) -> tuple[dict[str, Any], bool]:
    """Spend points, soonest-expiring lots first; insufficient points is a 409 and changes nothing."""
    require_self(actor, member_id)
    if actor.role is not Role.MEMBER:
        if store_id is None:
            raise Invalid("store_id is required at the counter", code="validation_error",
                          details=[{"loc": ["body", "store_id"], "msg": "required for staff"}])
    if store_id is not None:
        store = stores.get(store_id)
        if store is None:
            raise Invalid("unknown store", code="unknown_store",
                          details=[{"loc": ["body", "store_id"], "msg": "no such store"}])
        if actor.role is not Role.MEMBER:
            require_store(actor, store.store_id, store.region_id)
    print_ = fingerprint({"points": points, "reason": reason, "store_id": store_id})

    def attempt() -> dict[str, Any]:
        _, state = live_member(ledger, member_id)
        mid = state.member_id
        now = clock.now()
        today = clock.business_day(now)
        lots = ledger.open_lots(mid, state.open_lots_from)
        spendable = sum(lot.remaining for lot in lots if lot.expires_on >= today) - state.owed
        if points > spendable:
            raise Conflict("not enough points", code="insufficient_points",
                           details={"balance": max(spendable, state.balance), "requested": points})
        try:
            plan = plan_consumption([LotView(lot.lot_id, lot.expires_on, lot.remaining) for lot in lots], points, today)
        except InsufficientPoints as short:
            raise Conflict("not enough points", code="insufficient_points",
                           details={"balance": short.available, "requested": points}) from None
        if len(plan) > 90:
            raise Conflict("points are spread over too many lots for one redemption; redeem less at once",
                           code="too_many_lots", details={"lots": len(plan)})
        by_id = {lot.lot_id: lot for lot in lots}
        updated = [(by_id[v.lot_id].evolve(remaining=v.remaining - take), v.remaining) for v, take in plan]
        after = {**by_id, **{lot.lot_id: lot for lot, _ in updated}}
        spent = state.evolve(version=state.version + 1, available=state.available - points,
                             open_lots_from=oldest_open(after.values(), now))
        takes = [{"lot_id": view.lot_id, "earned_at": clock.iso(by_id[view.lot_id].at),
                  "expires_on": view.expires_on.isoformat(), "points": take} for view, take in plan]
        answer = {"redemption_id": redemption_id, "member_id": mid, "points": points, "reason": reason,
                  "store_id": store_id, "status": "active", "lots": takes, "balance": spent.balance,
                  "created_at": clock.iso(now)}
        ledger.apply(Change(
            member_id=mid, state=spent, expected_version=state.version, updated_lots=updated,
            entries=[LedgerEntry(entry_id=new_id(), member_id=mid, at=now, kind="redemption", points=-points,
                                 balance_after=spent.balance, ref=redemption_id,
                                 detail={"reason": reason, "store_id": store_id, "lots": takes})],
            documents=[Document(kind="redemption", owner=mid, doc_id=redemption_id,
                                body={"fingerprint": print_, "answer": answer})]))
        return answer

    answer, created = _idempotent(ledger, "redemption", member_id, redemption_id, print_, attempt)
    if created:
        metrics.add_metric(name="PointsRedeemed", unit="Count", value=points)
    return answer, created


def cancel_redemption(member_id: str, redemption_id: str, actor: Principal,
                      ledger: LedgerRepository) -> tuple[dict[str, Any], bool]:
    """Re-credit the original lots with their original expiry; points of lots that expired meanwhile
    stay expired. A second cancel answers the first one's result."""
    require_self(actor, member_id)
    _, state0 = live_member(ledger, member_id)
    mid = state0.member_id
    original = ledger.get_document("redemption", mid, redemption_id)
    if original is None:
        raise NotFound("redemption not found", code="redemption_not_found", details={"redemption_id": redemption_id})
    print_ = fingerprint({"cancel": redemption_id})

    def attempt() -> dict[str, Any]:
        _, state = live_member(ledger, mid)
        now = clock.now()
        today = clock.business_day(now)
        credited = lapsed = 0
        updated: list[tuple[Lot, int]] = []
        for take in original["answer"]["lots"]:
            # the lots were the redeeming member's; a merge since may have moved them (or be moving them)
            found = ledger.entry(original["answer"]["member_id"], datetime.fromisoformat(take["earned_at"]),
                                 take["lot_id"])
            if found is None or found.lot is None:
                raise StaleRead()  # lots are never deleted: mid-move, look again
            lot = found.lot
            if lot.status == "active" and lot.expires_on >= today:
                updated.append((lot.evolve(remaining=lot.remaining + take["points"]), lot.remaining))
                credited += take["points"]
            else:
                lapsed += take["points"]
        restored = state.evolve(version=state.version + 1, available=state.available + credited,
                                open_lots_from=earliest(state.open_lots_from,
                                                        *(lot.at for lot, _ in updated)))
        answer = {**original["answer"], "status": "cancelled", "recredited": credited, "expired": lapsed,
                  "balance": restored.balance, "cancelled_at": clock.iso(now)}
        ledger.apply(Change(
            member_id=mid, state=restored, expected_version=state.version, updated_lots=updated,
            entries=[LedgerEntry(entry_id=new_id(), member_id=mid, at=now, kind="redemption_cancel", points=credited,
                                 balance_after=restored.balance, ref=redemption_id,
                                 detail={"recredited": credited, "stayed_expired": lapsed})],
            documents=[Document(kind="redemption_cancel", owner=mid, doc_id=redemption_id,
                                body={"fingerprint": print_, "answer": answer})]))
        return answer

    return _idempotent(ledger, "redemption_cancel", mid, redemption_id, print_, attempt)


# ---- adjustments ------------------------------------------------------------------------------------------
def adjust(member_id: str, adjustment_id: str, points: int, reason: str, actor: Principal,
           ledger: LedgerRepository) -> tuple[dict[str, Any], bool]:
    """HQ correction. A credit is a new lot (paying any debt first); a debit spends lots and whatever is
    missing becomes owed points. Audited."""
    if actor.role is not Role.HQ:
        raise Forbidden("only HQ adjusts points", code="role_not_allowed")
    print_ = fingerprint({"points": points, "reason": reason})
    rules = program.rules(ledger)

    def attempt() -> dict[str, Any]:
        _, state = live_member(ledger, member_id)
        mid = state.member_id
        now = clock.now()
        today = clock.business_day(now)
        change = Change(member_id=mid)
        entry_id = new_id()
        lot = None
        if points > 0:
            lot_points, debt_paid = pay_debt(points, state.owed)
            if lot_points:
                lot = Lot(lot_id=entry_id, member_id=mid, at=now, source="adjustment", ref=adjustment_id,
                          earned_on=today, expires_on=expires_on(today, rules), original=lot_points,
                          remaining=lot_points)
            new = state.evolve(version=state.version + 1, available=state.available + lot_points,
                               owed=state.owed - debt_paid,
                               open_lots_from=earliest(state.open_lots_from, now) if lot else state.open_lots_from)
        else:
            lots = ledger.open_lots(mid, state.open_lots_from)
            usable = sum(lot.remaining for lot in lots if lot.expires_on >= today)
            take_total = min(-points, usable)
            plan = plan_consumption([LotView(x.lot_id, x.expires_on, x.remaining) for x in lots], take_total, today) \
                if take_total else []
            by_id = {x.lot_id: x for x in lots}
            change.updated_lots = [(by_id[v.lot_id].evolve(remaining=v.remaining - t), v.remaining) for v, t in plan]
            after = {**by_id, **{x.lot_id: x for x, _ in change.updated_lots}}
            new = state.evolve(version=state.version + 1, available=state.available - take_total,
                               owed=state.owed + (-points - take_total),
                               open_lots_from=oldest_open(after.values(), now))
        answer = {"adjustment_id": adjustment_id, "member_id": mid, "points": points, "reason": reason,
                  "balance": new.balance, "owed": new.owed, "by": actor.sub, "created_at": clock.iso(now)}
        change.state, change.expected_version = new, state.version
        change.entries.append(LedgerEntry(entry_id=entry_id, member_id=mid, at=now, kind="adjustment", points=points,
                                          balance_after=new.balance, ref=adjustment_id,
                                          detail={"reason": reason, "by": actor.sub}, lot=lot))
        change.documents.append(Document(kind="adjustment", owner=mid, doc_id=adjustment_id,
                                         body={"fingerprint": print_, "answer": answer}))
        ledger.apply(change)
        return answer

    answer, created = _idempotent(ledger, "adjustment", member_id, adjustment_id, print_, attempt)
    if created:
        audit_line("points.adjusted", actor=actor.sub, role=actor.role.value, member_id=answer["member_id"],
                   adjustment_id=adjustment_id, points=points)
    return answer, created


# ---- expiry (scheduled) -----------------------------------------------------------------------------------
# Orders may be posted up to 90 days late, so a lot can be born already past its last day; the look-back
# covers that and any nights the job missed. An empty day is one cheap query.
EXPIRY_LOOKBACK_DAYS = 100


def expire_due(ledger: LedgerRepository, today: date, lookback_days: int = EXPIRY_LOOKBACK_DAYS) -> dict[str, int]:
    """Expire every lot whose last valid day is before `today`: the sparse expiry index names the members
    holding such lots; each member's due lots then go in one transaction (per EXPIRE_BATCH lots). Then
    write the 'points expiring soon' facts."""
    lots_expired = points_expired = 0
    done: set[str] = set()  # the index lags its table: a member already swept tonight is not read again
    for back in range(lookback_days, 0, -1):
        for due in ledger.due_lots(today - timedelta(days=back)):
            if due.member_id in done:
                continue
            done.add(due.member_id)
            lots, pts = _expire_partition(ledger, due.member_id, today)
            lots_expired += lots
            points_expired += pts
    facts = _expiring_soon_facts(ledger, today)
    metrics.add_metric(name="PointsExpired", unit="Count", value=points_expired)
    return {"lots_expired": lots_expired, "points_expired": points_expired, "expiring_soon_facts": facts}


EXPIRE_BATCH = 45  # lots per transaction: each is its update plus an expiry entry, with the state: ≤ 100 items


def _expire_partition(ledger: LedgerRepository, partition: str, today: date) -> tuple[int, int]:
    """Expire the due lots kept under one member's partition. The points leave the state of whoever owns
    them now: the member, or the survivor of a merge still moving them."""
    def attempt() -> tuple[int, int, bool]:
        _, state = live_member(ledger, partition, erased_ok=True)
        at_home = state.member_id == partition
        # Lots of a partition a merge is still emptying may be older than the survivor's bound: read all.
        lots = ledger.open_lots(partition, state.open_lots_from if at_home else None)
        due = [lot for lot in lots if lot.expires_on < today]
        if not due:
            return 0, 0, False
        batch = due[:EXPIRE_BATCH]
        now = clock.now()
        expired = {lot.lot_id: lot.evolve(remaining=0, expired=lot.expired + lot.remaining, status="expired")
                   for lot in batch}
        points = sum(lot.remaining for lot in batch)
        new = state.evolve(version=state.version + 1, available=state.available - points)
        if at_home:
            new = new.evolve(open_lots_from=oldest_open({**{x.lot_id: x for x in lots}, **expired}.values(), now))
        entries, balance = [], state.balance
        for lot in batch:
            balance -= lot.remaining
            entries.append(LedgerEntry(entry_id=new_id(), member_id=partition, at=now, kind="expiry",
                                       points=-lot.remaining, balance_after=balance, ref=lot.lot_id,
                                       detail={"expires_on": lot.expires_on.isoformat(),
                                               "earned_on": lot.earned_on.isoformat()}))
        ledger.apply(Change(member_id=partition, state=new, expected_version=state.version,
                            updated_lots=[(expired[lot.lot_id], lot.remaining) for lot in batch], entries=entries))
        return len(batch), points, len(due) > len(batch)

    lots = points = 0
    while True:
        n, p, more = optimistic(attempt)
        lots, points = lots + n, points + p
        if not more:
            return lots, points


def _expiring_soon_facts(ledger: LedgerRepository, today: date) -> int:
    """One 'points_expiring' fact per member for the lots that expire in N days (written once per date)."""
    day = today + timedelta(days=program.rules(ledger).expiring_soon_days)
    totals: dict[str, int] = {}
    for lot in ledger.due_lots(day):
        totals[lot.member_id] = totals.get(lot.member_id, 0) + lot.remaining
    for member_id, pts in totals.items():
        try:
            ledger.apply(Change(member_id=member_id, documents=[Document(
                kind="fact", owner=member_id, doc_id=f"points_expiring#{day.isoformat()}",
                body={"type": "points_expiring", "points": pts, "expires_on": day.isoformat()})]))
        except DocumentExists:
            pass  # already told on an earlier run for this date
    return len(totals)


# ---- views ------------------------------------------------------------------------------------------------
def points_view(member_id: str, actor: Principal, ledger: LedgerRepository, cursor: str | None,
                limit: int) -> dict[str, Any]:
    require_self(actor, member_id)
    _, state = live_member(ledger, member_id)
    now = clock.now()
    today = clock.business_day(now)
    horizon = today + timedelta(days=program.rules(ledger).expiring_soon_days)
    soon: dict[str, int] = {}
    for lot in ledger.open_lots(state.member_id, state.open_lots_from):
        if today <= lot.expires_on <= horizon:
            soon[lot.expires_on.isoformat()] = soon.get(lot.expires_on.isoformat(), 0) + lot.remaining
    entries, next_cursor = ledger.ledger(state.member_id, cursor, limit)
    return {"member_id": state.member_id, "balance": state.balance, "available": state.available,
            "owed": state.owed, "expiring_soon": [{"date": d, "points": p} for d, p in sorted(soon.items())],
            "ledger": {"items": entries, "next_cursor": next_cursor}}


def tier_view(member_id: str, actor: Principal, ledger: LedgerRepository) -> dict[str, Any]:
    require_self(actor, member_id)
    _, state = live_member(ledger, member_id)
    tiers = program.tiers(ledger)
    current = tiers.get(state.tier)
    have = progress(state, tiers, clock.now())
    nxt = tiers.tiers[tiers.index(current.tier_id) + 1] if tiers.index(current.tier_id) + 1 < len(tiers.tiers) else None
    missing = max(0, nxt.threshold - have) if nxt else None
    if nxt is None:
        message = f"已是最高等级 {current.name}"
    elif tiers.basis == "spend":
        message = f"再消费 ¥{missing / 100:.2f} 升级{nxt.name}"
    else:
        message = f"再下 {missing} 单升级{nxt.name}"
    return {"member_id": state.member_id, "tier": current, "basis": tiers.basis, "progress": have,
            "since": state.tier_since,
            "next_tier": {"tier_id": nxt.tier_id, "name": nxt.name, "threshold": nxt.threshold, "missing": missing}
            if nxt else None,
            "message": message}
