"""The nightly points expiry: due lots found through the sparse expiry index, and 'expiring soon' facts."""
from __future__ import annotations

from datetime import date, timedelta

from ..domain import clock
from ..domain.errors import DocumentExists
from ..domain.ids import new_id
from ..domain.ledger import Change, Document, LedgerEntry
from ..domain.points import oldest_open
from ..observability import metrics
from . import program
from .ledger_common import live_member, optimistic
from .ports import LedgerRepository

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
