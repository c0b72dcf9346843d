"""Spending points at the counter or in the mini-program, and cancelling a spend."""
from __future__ import annotations

from datetime import datetime
from typing import Any

from ..domain import clock
from ..domain.access import Principal
from ..domain.errors import Invalid, NotFound, StaleRead
from ..domain.ids import new_id
from ..domain.ledger import Change, Document, LedgerEntry, Lot
from ..domain.points import earliest
from ..domain.policy import Scope, authorize, scope_of
from ..domain.receipts import Redemption
from ..observability import metrics
from .ledger_common import fingerprint, idempotent, live_member, replay_at_live_member, spend
from .ports import LedgerRepository, StoreRepository

MAX_LOTS = 90  # beside the state, the entry and the document: one transaction holds 100 items


def redeem(member_id: str, redemption_id: str, points: int, reason: str, store_id: str | None, actor: Principal,
           ledger: LedgerRepository, stores: StoreRepository) -> tuple[Redemption, bool]:
    """Spend points, soonest-expiring lots first; insufficient points is a 409 and changes nothing."""
    at_counter = scope_of("points.redeem", actor) is Scope.STORE
    if not at_counter:
        authorize("points.redeem", actor, member_id=member_id)
    elif store_id is None:
        raise Invalid("store_id is required at the counter", code="validation_error",
                      details=[{"loc": ["body", "store_id"], "msg": "required for staff"}])
    if store_id is not None:
        store = stores.get(store_id)
        if store is None:
            raise Invalid("unknown store", code="unknown_store",
                          details=[{"loc": ["body", "store_id"], "msg": "no such store"}])
        if at_counter:
            authorize("points.redeem", actor, store=store)
    print_ = fingerprint({"points": points, "reason": reason, "store_id": store_id})

    def attempt() -> dict[str, Any]:
        _, state = live_member(ledger, member_id)
        mid = state.member_id
        replay_at_live_member(ledger, "redemption", member_id, mid, redemption_id, print_)
        now = clock.now()
        taken = spend(ledger, state, points, now, MAX_LOTS, "redemption")
        spent, updated, takes = taken.state, taken.updated, taken.takes
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

    answer, created = idempotent(ledger, "redemption", member_id, redemption_id, print_, attempt)
    if created:
        metrics.add_metric(name="PointsRedeemed", unit="Count", value=points)
    return Redemption.model_validate(answer), created


def cancel_redemption(member_id: str, redemption_id: str, actor: Principal,
                      ledger: LedgerRepository) -> tuple[Redemption, bool]:
    """Re-credit the original lots with their original expiry; points of lots that expired meanwhile
    stay expired. A second cancel answers the first one's result."""
    authorize("points.cancel_redemption", actor, member_id=member_id)
    _, state0 = live_member(ledger, member_id)
    mid = state0.member_id
    found = ledger.find_document("redemption", member_id, redemption_id)  # through the id the client named
    if found is None:
        raise NotFound("redemption not found", code="redemption_not_found", details={"redemption_id": redemption_id})
    owner, original = found  # the member the redemption was made for: its cancel is kept beside it
    print_ = fingerprint({"cancel": redemption_id})

    def attempt() -> dict[str, Any]:
        _, state = live_member(ledger, mid)
        now = clock.now()
        today = clock.business_day(now)
        credited = lapsed = debt_cancelled = 0
        updated: list[tuple[Lot, int]] = []
        for take in original["answer"]["lots"]:
            # the lots were the redeeming member's; a merge since may have moved them (or be moving them)
            found = ledger.entry(original["answer"]["member_id"], datetime.fromisoformat(take["earned_at"]),
                                 take["lot_id"])
            if found is None or found.lot is None:
                raise StaleRead()  # lots are never deleted: mid-move, look again
            lot, points = found.lot, take["points"]
            # A refund of the lot's order since the redemption made these points a debt (they were spent).
            # They were not spent after all: the debt goes, and the refund counts them as taken back.
            # Never more than is still owed: a later credit may have paid that debt already, and then the
            # points simply come back.
            unowed = min(points, lot.owed, state.owed - debt_cancelled)
            back = points - unowed
            if lot.status == "active" and lot.expires_on >= today:
                new = lot.evolve(remaining=lot.remaining + back, owed=lot.owed - unowed, clawed=lot.clawed + unowed)
                credited += back
            else:  # expired meanwhile: they expire with the lot (so a refund later forgives them)
                new = lot.evolve(expired=lot.expired + back, owed=lot.owed - unowed, clawed=lot.clawed + unowed)
                lapsed += back
            debt_cancelled += unowed
            if new != lot:
                updated.append((new, lot.remaining))
        restored = state.evolve(version=state.version + 1, available=state.available + credited,
                                owed=state.owed - debt_cancelled,
                                open_lots_from=earliest(state.open_lots_from,
                                                        *(lot.at for lot, _ in updated if lot.remaining)))
        answer = {**original["answer"], "status": "cancelled", "recredited": credited + debt_cancelled,
                  "expired": lapsed,
                  "balance": restored.balance, "cancelled_at": clock.iso(now)}
        ledger.apply(Change(
            member_id=mid, state=restored, expected_version=state.version, updated_lots=updated,
            entries=[LedgerEntry(entry_id=new_id(), member_id=mid, at=now, kind="redemption_cancel",
                                 points=credited + debt_cancelled, balance_after=restored.balance, ref=redemption_id,
                                 detail={"recredited": credited, "stayed_expired": lapsed,
                                         "debt_cancelled": debt_cancelled, "redemption_member_id": owner})],
            documents=[Document(kind="redemption_cancel", owner=owner, doc_id=redemption_id,
                                body={"fingerprint": print_, "answer": answer})]))
        return answer

    answer, created = idempotent(ledger, "redemption_cancel", owner, redemption_id, print_, attempt)
    return Redemption.model_validate(answer), created
