"""What the SLA sweep (and, later, automation) told people: addressed to a person or to a role in a scope."""
from __future__ import annotations

from ..domain.access import COUNTER_ROLES, Principal, Role
from ..domain.policy import authorize
from ..domain.sla import Notification
from .ports import TicketRepository


def addressed_to(actor: Principal) -> list[str]:
    """The addressee keys that reach this caller: themself, and each role-in-scope they hold."""
    out = [f"sub:{actor.sub}"]
    if actor.role in COUNTER_ROLES:
        out += [f"queue:store-{s}" for s in sorted(actor.store_ids)]  # at risk, nobody assigned: the queue's agents
    if actor.role is Role.STORE_MANAGER:
        out += [f"store_managers:{s}" for s in sorted(actor.store_ids)]
    if actor.role is Role.REGION_MANAGER and actor.region_id:
        out.append(f"region_manager:{actor.region_id}")
    if actor.role is Role.HQ:
        out.append("hq")
    return out


def mine(actor: Principal, tickets: TicketRepository, limit: int) -> list[tuple[Notification, bool]]:
    """Newest first, each with whether this caller marked it read (read state is per person, also for a
    notification addressed to their role)."""
    authorize("notifications.read", actor)
    notes = tickets.notifications(addressed_to(actor), limit)
    read = tickets.read_marks(actor.sub, [n.notification_id for n in notes]) if notes else set()
    return [(n, n.notification_id in read) for n in notes]


def mark_read(actor: Principal, notification_ids: list[str], tickets: TicketRepository) -> None:
    authorize("notifications.mark", actor)
    tickets.mark_read(actor.sub, notification_ids)
