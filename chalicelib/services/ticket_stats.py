"""Ticket numbers for HQ: the rollup rows each ticket change writes (computed here, written by the repository in
the change's own transaction) and the read of a range of days grouped by one dimension: one Query of the
dimension's day items, never a read of the tickets."""
from __future__ import annotations

from datetime import date

from ..domain import ticket_stats as rules
from ..domain.access import Principal, Role
from ..domain.errors import Forbidden, Invalid
from ..domain.policy import StoreRef, allow_role, authorize
from ..domain.stores import Store
from ..domain.ticket_stats import GroupNumbers, StatRow
from ..domain.tickets import Event, Ticket
from .ports import StoreRepository, TicketRepository

BRAND_WIDE = ("type", "channel")  # HQ's breakdowns: no region-level items of these are kept


def opened(ticket: Ticket, store: Store | None) -> list[StatRow]:
    """What opening the ticket adds (its store, if any, was read to route it)."""
    return rules.rows(ticket, rules.on_open(ticket), store.region_id if store else None)


def changed(before: Ticket, after: Ticket, event: Event, stores: StoreRepository) -> list[StatRow]:
    """What an event adds; the store's region is read (a cached read) only when the event adds anything."""
    rollup = rules.on_event(before, after, event)
    if not rollup:
        return []
    store = stores.get(after.store_id) if after.store_id else None
    return rules.rows(after, rollup, store.region_id if store else None)


def stats(first: date, last: date, group_by: str, actor: Principal,
          tickets: TicketRepository) -> list[GroupNumbers]:
    """Per group value with any activity in first..last (business days, both included): volume, first response
    (median and p90 from the merged histograms), SLA met rates, satisfaction. HQ: every group. A region
    manager: their region's stores (group_by=store) or their region's row (group_by=region); the type and
    channel breakdowns are brand-wide, HQ's only."""
    allow_role("tickets.stats", actor)
    if last < first or (last - first).days >= rules.MAX_DAYS:
        raise Invalid(f"from must not be after to, and the range at most {rules.MAX_DAYS} days",
                      code="validation_error", details=[{"loc": ["query", "to"], "msg": "range"}])
    region = None
    if actor.role is not Role.HQ:
        if group_by in BRAND_WIDE:
            raise Forbidden(f"the {group_by} breakdown is brand-wide: HQ's", code="group_by_not_allowed",
                            details={"group_by": group_by})
        authorize("tickets.stats", actor, store=StoreRef("", actor.region_id))
        region = actor.region_id
    groups: dict[str, list[dict]] = {}
    for item in tickets.stat_rows(group_by, first, last):
        value = item["value"]
        if region is not None and (item.get("region") if group_by == "store" else value) != region:
            continue
        groups.setdefault(value, []).append(item)
    return [rules.numbers(value, rules.add_up(items)) for value, items in sorted(groups.items())]

