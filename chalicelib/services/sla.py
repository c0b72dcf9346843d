"""SLA policies and the clocks on tickets: the policy a ticket opens under, its calendars, and the clocks moved
by each event."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..domain.access import Principal
from ..domain.errors import Conflict
from ..domain.policy import authorize
from ..domain.sla import (
    ALWAYS,
    WALL,
    Calendar,
    Calendars,
    SlaPolicy,
    SlaPolicyInput,
    on_event,
    open_sla,
    sla_body,
    sla_from,
)
from ..domain.tickets import Event, QueueRecord, Ticket
from .calendars import CalendarRepository, calendar_for_queue
from .ledger_common import optimistic
from .ports import StoreRepository, TicketRepository
from .ticket_queues import resolve_queue

POLICY_CONFIG = "sla_policy"

QueueCalendar = Callable[[QueueRecord], Calendar]  # a queue -> the calendar its business time counts in


def policy(tickets: TicketRepository) -> SlaPolicy:
    body = tickets.sla_policy()
    return SlaPolicy.model_validate(body) if body else SlaPolicy()


def put_policy(cmd: SlaPolicyInput, actor: Principal, tickets: TicketRepository) -> SlaPolicy:
    """Replace the policy; tickets already open keep the targets they opened with."""
    authorize("sla.put", actor)

    def attempt() -> SlaPolicy:
        current = policy(tickets)
        if cmd.version is not None and cmd.version != current.version:
            raise Conflict("the policy changed since you read it", code="version_conflict",
                           details={"version": current.version})
        saved = SlaPolicy(rules=cmd.rules, at_risk_pct=cmd.at_risk_pct, hq_after_minutes=cmd.hq_after_minutes,
                          version=current.version + 1)
        tickets.put_sla_policy(saved.model_dump(mode="json"), current.version, actor.sub)
        return saved

    return optimistic(attempt)


def get_policy(actor: Principal, tickets: TicketRepository) -> SlaPolicy:
    authorize("sla.read", actor)
    return policy(tickets)


def calendars(tickets: TicketRepository, stores: StoreRepository, queue_calendar: QueueCalendar) -> Calendars:
    """Calendars by queue id for one request or one sweep (each queue resolved once)."""
    cache: dict[str, Calendar] = {WALL: ALWAYS}

    def get(key: str) -> Calendar:
        if key not in cache:
            cache[key] = queue_calendar(resolve_queue(key, tickets, stores))
        return cache[key]

    return get


def queue_calendars(tickets: TicketRepository, stores: StoreRepository, calendar_repo: CalendarRepository) -> Calendars:
    """The calendars tickets count business time in: a store queue its store's hours, holidays and closures;
    region and HQ queues their office calendar (see services/calendars.calendar_for_queue)."""
    return calendars(tickets, stores, lambda queue: calendar_for_queue(queue, stores, calendar_repo))


def opened(ticket: Ticket, tickets: TicketRepository, cals: Calendars) -> Ticket:
    """A new ticket with its clocks started under the current policy."""
    return ticket.evolve(sla=sla_body(open_sla(policy(tickets), ticket, cals)))


def after_event(before: Ticket, after: Ticket, event: Event, cals: Calendars) -> Ticket:
    if before.sla is None:
        return after
    return after.evolve(sla=sla_body(on_event(sla_from(before.sla), before, after, event, cals)))


def view(ticket: Ticket, now: Any) -> dict[str, Any] | None:
    """The ticket's SLA as staff see it: per target its state now, deadline and outcome."""
    if ticket.sla is None:
        return None
    sla = sla_from(ticket.sla)
    out: dict[str, Any] = {"policy_version": sla.policy_version, "escalated": list(sla.escalated)}
    for name, c in (("first_response", sla.first_response), ("resolution", sla.resolution)):
        out[name] = {"state": c.state(now), "target_minutes": c.target // 60, "clock": c.mode,
                     "used_seconds": c.used, "due_at": c.due_at, "at_risk_at": c.at_risk_at, "done_at": c.done_at,
                     "running": c.running}
    return out
