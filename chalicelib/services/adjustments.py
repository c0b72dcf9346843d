"""HQ's manual points adjustments (audited)."""
from __future__ import annotations

from typing import Any

from ..domain import clock
from ..domain.access import Principal
from ..domain.ids import new_id
from ..domain.ledger import Change, Document, LedgerEntry, Lot
from ..domain.points import LotView, earliest, expires_on, oldest_open, pay_debt, plan_consumption
from ..domain.policy import authorize
from ..domain.receipts import Adjustment
from ..observability import audit as audit_line
from . import program
from .ledger_common import fingerprint, idempotent, live_member, replay_at_live_member
from .ports import LedgerRepository


def adjust(member_id: str, adjustment_id: str, points: int, reason: str, actor: Principal,
           ledger: LedgerRepository) -> tuple[Adjustment, bool]:
    """HQ correction. A credit is a new lot (paying any debt first); a debit spends lots and whatever is
    missing becomes owed points. Audited."""
    authorize("points.adjust", actor)
    print_ = fingerprint({"points": points, "reason": reason})
    rules = program.rules(ledger)

    def attempt() -> dict[str, Any]:
        _, state = live_member(ledger, member_id)
        mid = state.member_id
        replay_at_live_member(ledger, "adjustment", member_id, mid, adjustment_id, print_)
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

    answer, created = idempotent(ledger, "adjustment", member_id, adjustment_id, print_, attempt)
    if created:
        audit_line("points.adjusted", actor=actor.sub, role=actor.role.value, member_id=answer["member_id"],
                   adjustment_id=adjustment_id, points=points)
    return Adjustment.model_validate(answer), created
