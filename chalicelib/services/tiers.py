"""The scheduled tier re-evaluation: downgrade one level at a time after a retention check, and warn the
members who will drop at the next review unless they spend more."""
from __future__ import annotations

from datetime import date

from ..domain import clock
from ..domain.errors import DocumentExists, NotFound
from ..domain.ledger import Change, Document, TierMarker
from ..domain.points import add_months, month_key, rolling_months, tier_progress
from ..observability import metrics
from . import program
from .ledger_common import live_member, optimistic
from .ports import LedgerRepository


def next_review(today: date) -> date:
    """Reviews run on the 1st of each month (Asia/Shanghai)."""
    return add_months(today.replace(day=1), 1)


def review_tiers(ledger: LedgerRepository, today: date) -> dict[str, int]:
    """For every member above the lowest tier (found through the sparse TIERED# index, no scan): if the
    rolling-12-month progress no longer holds the tier, drop ONE level; otherwise confirm it (it becomes
    the floor a refund cannot go below). Then warn if next month's window will not hold it."""
    counts = {"reviewed": 0, "downgraded": 0, "confirmed": 0, "warned": 0}
    for member_id in ledger.tiered_members():
        try:
            outcome = optimistic(lambda m=member_id: _review_one(ledger, m, today))
        except NotFound:
            continue  # erased, or merged away: its marker goes with the next change
        counts["reviewed"] += 1
        for key in outcome:
            counts[key] += 1
    metrics.add_metric(name="TierDowngraded", unit="Count", value=counts["downgraded"])
    return counts


def _review_one(ledger: LedgerRepository, member_id: str, today: date) -> list[str]:
    tiers = program.tiers(ledger)
    _, state = live_member(ledger, member_id)
    if state.member_id != member_id or state.reviewed_on == today:
        return []  # merged away, or this day's review is already applied (a re-run drops nobody twice)
    now = clock.now()
    current = tiers.index(state.tier)
    have = tier_progress(state, tiers, today)
    outcome: list[str] = []
    change = Change(member_id=member_id, expected_version=state.version)
    if current > 0 and have < tiers.tiers[current].threshold:
        lower = tiers.tiers[current - 1].tier_id
        change.state = state.evolve(version=state.version + 1, tier=lower, tier_base=lower, tier_since=now,
                                    tier_upgrade_order=None, reviewed_on=today)
        change.tier_marker = TierMarker(lower if current - 1 > 0 else None)
        change.events.append(("tier_downgraded", {"from": state.tier, "to": lower, "progress": have,
                                                  "threshold": tiers.tiers[current].threshold}))
        outcome.append("downgraded")
        current -= 1
    else:
        change.state = state.evolve(version=state.version + 1, tier_base=state.tier, reviewed_on=today)
        outcome.append("confirmed")
    # Warn: at the next review the oldest month of today's window falls out of it.
    if current > 0:
        months = rolling_months(today)
        buckets = state.spend_months if tiers.basis == "spend" else state.orders_months
        projected = have - buckets.get(months[0], 0)
        need = tiers.tiers[current].threshold
        if projected < need:
            on = next_review(today)
            change.documents.append(Document(kind="fact", owner=member_id, doc_id=f"tier_will_downgrade#{on}", body={
                "type": "tier_will_downgrade", "on": on.isoformat(), "tier": tiers.tiers[current].tier_id,
                "to": tiers.tiers[current - 1].tier_id, "missing": need - projected, "basis": tiers.basis,
                "window_from": month_key(add_months(today.replace(day=1), -10))}))
            outcome.append("warned")
    try:
        ledger.apply(change)
    except DocumentExists:
        if change.state is not None:  # warned already for that date: apply the tier change alone
            change.documents = []
            ledger.apply(change)
        outcome = [o for o in outcome if o != "warned"]
    return outcome

