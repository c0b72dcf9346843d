"""The SLA sweep (every 5 minutes): tickets whose next escalation step has come, found through the due index
(no scan), each step taken once with its notifications in the same write.

Re-runs notify nobody twice (a notification's key is its ticket, step and the step's due time, put only where
free); one ticket that fails is logged and counted and the run goes on; a run that dies half-way leaves the
rest in the index, due, and the next run takes them."""
from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ..domain import clock
from ..domain.errors import DocumentExists, StaleRead
from ..domain.sla import SLA_SHARDS, Notification, Recipient, recipients, sla_body, sla_from
from ..domain.tickets import Ticket
from .ports import StoreRepository, TicketRepository
from .ticket_queues import resolve_queue

STAGES = ("within", "at_risk", "breached")
ATTEMPTS = 5
BUDGET_SECONDS = 240  # the function's timeout is 280 s


@dataclass
class SweepResult:
    checked: int = 0
    escalated: int = 0  # steps taken
    notified: int = 0  # notifications written
    failed: int = 0  # tickets that raised (logged; the next run tries them again)
    left_for_next_run: bool = False  # the time budget ran out

    def as_dict(self) -> dict[str, int]:
        return {k: int(v) for k, v in self.__dict__.items()}


def sweep(now: datetime, tickets: TicketRepository, stores: StoreRepository, log: Any,
          budget_seconds: float = BUDGET_SECONDS) -> SweepResult:
    """Stops taking new tickets once the budget is spent (inside the function's timeout): what is left stays
    due in the index for the next run."""
    result = SweepResult()
    deadline = time.monotonic() + budget_seconds
    for stage in STAGES:
        for shard in range(SLA_SHARDS):
            for ticket_id in tickets.sla_due(stage, shard, now):
                if time.monotonic() > deadline:
                    result.left_for_next_run = True
                    return result
                result.checked += 1
                try:
                    steps, notes = escalate_one(ticket_id, now, tickets, stores)
                except Exception:  # noqa: BLE001 - one bad ticket must not stop the run
                    log.exception("sla escalation failed", extra={"ticket_id": ticket_id})
                    result.failed += 1
                    continue
                result.escalated += steps
                result.notified += notes
    return result


def escalate_one(ticket_id: str, now: datetime, tickets: TicketRepository,
                 stores: StoreRepository) -> tuple[int, int]:
    """Take the ticket's due steps: (steps taken, notifications written)."""
    for _ in range(ATTEMPTS):
        found = tickets.get(ticket_id)
        if found is None or found[0].sla is None:
            return 0, 0
        ticket, created_print = found
        sla = sla_from(ticket.sla)
        steps = sla.due_steps(now)
        if not steps:
            return 0, 0  # an action moved it on since the index was read
        after = ticket.evolve(sla=sla_body(sla.escalate(steps)))
        due = sla.thresholds()
        region, queue = _region(ticket, stores), resolve_queue(ticket.queue_id, tickets, stores)
        notes = [_note(r, ticket, step, due[step], now) for step in steps
                 for r in recipients(step, ticket, region, queue)]
        try:
            tickets.escalate(ticket, after, created_print, notes)
            return len(steps), len(notes)
        except StaleRead:
            continue
        except DocumentExists:
            # Already notified for these very deadlines (a reopened ticket whose new deadline equals the old):
            # record the steps, notify nobody again.
            try:
                tickets.escalate(ticket, after, created_print, [])
                return len(steps), 0
            except StaleRead:
                continue
    raise StaleRead()


def _region(ticket: Ticket, stores: StoreRepository) -> str | None:
    if ticket.store_id is None:
        return None
    store = stores.get(ticket.store_id)
    return store.region_id if store else None


def _note(recipient: Recipient, ticket: Ticket, step: str, due: datetime, now: datetime) -> Notification:
    return Notification(recipient=recipient.key, ticket_id=ticket.ticket_id, step=step, due_at=clock.iso(due),
                        created_at=clock.iso(now), subject=ticket.subject, store_id=ticket.store_id,
                        queue_id=ticket.queue_id, priority=ticket.priority.value)
