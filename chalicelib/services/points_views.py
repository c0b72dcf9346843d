"""What a member (or the counter) reads of their points and tier."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta

from ..domain import clock
from ..domain.access import Principal
from ..domain.ledger import LedgerEntry
from ..domain.points import tier_progress
from ..domain.policy import authorize
from ..domain.program import Tier
from . import program
from .ledger_common import live_member
from .ports import LedgerRepository


@dataclass(frozen=True)
class PointsSnapshot:
    member_id: str
    balance: int
    available: int
    owed: int
    expiring_soon: list[tuple[date, int]]  # (last day, points), soonest first
    entries: list[LedgerEntry]  # one page, newest first
    next_cursor: str | None


@dataclass(frozen=True)
class TierStatus:
    member_id: str
    tier: Tier
    basis: str
    progress: int
    since: datetime | None
    next_tier: Tier | None
    missing: int | None
    message: str


def points_view(member_id: str, actor: Principal, ledger: LedgerRepository, cursor: str | None,
                limit: int) -> PointsSnapshot:
    authorize("points.view", actor, member_id=member_id)
    _, state = live_member(ledger, member_id)
    now = clock.now()
    today = clock.business_day(now)
    horizon = today + timedelta(days=program.rules(ledger).expiring_soon_days)
    soon: dict[date, int] = {}
    lapsed = 0  # past their last day, not yet swept by the nightly job: not spendable, so not shown
    for lot in ledger.open_lots(state.member_id, state.open_lots_from):
        if lot.expires_on < today:
            lapsed += lot.remaining
        elif lot.expires_on <= horizon:
            soon[lot.expires_on] = soon.get(lot.expires_on, 0) + lot.remaining
    entries, next_cursor = ledger.ledger(state.member_id, cursor, limit)
    available = state.available - lapsed
    return PointsSnapshot(member_id=state.member_id, balance=available - state.owed, available=available,
                          owed=state.owed, expiring_soon=sorted(soon.items()), entries=entries,
                          next_cursor=next_cursor)


def tier_view(member_id: str, actor: Principal, ledger: LedgerRepository) -> TierStatus:
    authorize("points.tier", actor, member_id=member_id)
    _, state = live_member(ledger, member_id)
    tiers = program.tiers(ledger)
    current = tiers.get(state.tier)
    have = tier_progress(state, tiers, clock.business_day(clock.now()))
    nxt = tiers.tiers[tiers.index(current.tier_id) + 1] if tiers.index(current.tier_id) + 1 < len(tiers.tiers) else None
    missing = max(0, nxt.threshold - have) if nxt else None
    if nxt is None:
        message = f"已是最高等级 {current.name}"
    elif tiers.basis == "spend":
        message = f"再消费 ¥{missing / 100:.2f} 升级{nxt.name}"
    else:
        message = f"再下 {missing} 单升级{nxt.name}"
    return TierStatus(member_id=state.member_id, tier=current, basis=tiers.basis, progress=have,
                      since=state.tier_since, next_tier=nxt, missing=missing, message=message)
