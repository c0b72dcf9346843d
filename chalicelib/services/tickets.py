"""Opening and reading service tickets: one queue from every channel, routed by HQ's rules."""
from __future__ import annotations

from dataclasses import dataclass

from ..domain import clock
from ..domain.access import Principal, Role
from ..domain.errors import Conflict, DocumentExists, Forbidden, Invalid, NotFound
from ..domain.policy import Scope, StoreRef, authorize, scope_of
from ..domain.stores import Store
from ..domain.tasks import Task
from ..domain.tickets import Event, Facts, QueueRecord, Ticket, TicketInput, route
from . import sla, ticket_stats
from .calendars import CalendarRepository
from .ledger_common import fingerprint, live_member, optimistic
from .ports import LedgerRepository, MemberRepository, StoreRepository, TicketRepository
from .ticket_queues import pick_agent, resolve_queue


@dataclass(frozen=True)
class TicketDetails:
    """A ticket as stored, for the view to shape for its audience (members see public replies only)."""

    ticket: Ticket
    description: str
    events: list[Event]
    tasks: list[Task]
    for_member: bool


def _store(stores: StoreRepository, store_id: str) -> Store:
    store = stores.get(store_id)
    if store is None:
        raise Invalid("unknown store", code="unknown_store",
                      details=[{"loc": ["body", "store_id"], "msg": "no such store"}])
    return store


def open_ticket(cmd: TicketInput, actor: Principal, tickets: TicketRepository, ledger: LedgerRepository,
                stores: StoreRepository, calendar_repo: CalendarRepository) -> tuple[Ticket, bool]:
    """Create the ticket, routed and (if an agent of its queue is available) assigned. Idempotent by
    ticket_id: the same body from the same caller replays; anything else under that id is a 409."""
    scope = scope_of("tickets.create", actor)
    member_id = cmd.member_id
    if scope is Scope.SELF:
        member_id = member_id or actor.member_id
        if member_id is None:  # signed in through WeChat, no membership yet: nobody the ticket could be about
            raise Forbidden("members may only open tickets about themselves; sign up first",
                            code="not_your_member")
        authorize("tickets.create", actor, member_id=member_id)
    elif scope is Scope.STORE:
        if cmd.store_id is None:
            raise Invalid("say which of your stores the ticket is for", code="store_required",
                          details=[{"loc": ["body", "store_id"], "msg": "required for this caller"}])
        authorize("tickets.create", actor, store=lambda: stores.get(cmd.store_id) or StoreRef(cmd.store_id))
    else:
        authorize("tickets.create", actor)
    print_ = fingerprint({**cmd.model_dump(mode="json"), "by": actor.sub})
    done = _replay(cmd.ticket_id, print_, tickets)
    if done is not None:
        return done, False

    store = _store(stores, cmd.store_id) if cmd.store_id else None
    tier = None
    if member_id is not None:
        _, state = live_member(ledger, member_id)
        member_id, tier = state.member_id, state.tier
    if cmd.order_id is not None:
        member_id, store = _check_order(cmd.order_id, member_id, store, ledger, stores)
    rules, _ = tickets.routing_rules()
    where = route(rules, Facts(type=cmd.type, channel=cmd.channel, store_id=store.store_id if store else None,
                               region_id=store.region_id if store else None, priority=cmd.priority,
                               member_tier=tier))
    queue = resolve_queue(where.queue_id, tickets, stores)
    cals = sla.queue_calendars(tickets, stores, calendar_repo)

    def attempt() -> Ticket:
        now = clock.to_ms(clock.now())
        claim = pick_agent(queue.queue_id, where.assignment, tickets, now)
        ticket = Ticket(ticket_id=cmd.ticket_id, channel=cmd.channel, type=cmd.type, subject=cmd.subject,
                        description="", store_id=store.store_id if store else None, member_id=member_id,
                        order_id=cmd.order_id, queue_id=queue.queue_id, priority=where.priority, created_at=now,
                        created_by=actor.sub, assignee=claim.sub if claim else None, routed_by=where.rule)
        ticket = sla.opened(ticket, tickets, cals)
        tickets.create(ticket, cmd.description, print_, claim, stats=ticket_stats.opened(ticket, store))
        return ticket

    try:
        return optimistic(attempt), True
    except DocumentExists:
        again = _replay(cmd.ticket_id, print_, tickets)
        if again is None:  # pragma: no cover - a ticket is never deleted
            raise
        return again, False


def _replay(ticket_id: str, print_: str, tickets: TicketRepository) -> Ticket | None:
    found = tickets.get(ticket_id)
    if found is None:
        return None
    ticket, stored = found
    if stored != print_:
        raise Conflict("this ticket_id was used for another ticket", code="ticket_id_taken",
                       details={"ticket_id": ticket_id})
    return ticket


def _check_order(order_id: str, member_id: str | None, store: Store | None, ledger: LedgerRepository,
                 stores: StoreRepository) -> tuple[str | None, Store | None]:
    """The order must be the ticket's member's (an order of a member merged into them counts); with no
    member named, the ticket is about the order's member. With no store named, it is about the order's."""
    order = ledger.get_order(order_id)
    if order is None:
        raise Invalid("unknown order", code="unknown_order",
                      details=[{"loc": ["body", "order_id"], "msg": "no such order"}])
    owner = live_member(ledger, order.member_id)[1].member_id if order.member_id else None
    if member_id is not None and owner != member_id:
        raise Invalid("the order is not this member's", code="order_not_members",
                      details=[{"loc": ["body", "order_id"], "msg": "not the member's order"}])
    return owner, store or stores.get(order.store_id)


def details(ticket_id: str, actor: Principal, tickets: TicketRepository, ledger: LedgerRepository,
            stores: StoreRepository) -> TicketDetails:
    found = tickets.get_with_events(ticket_id)
    if found is None:
        raise NotFound("ticket not found", code="ticket_not_found", details={"ticket_id": ticket_id})
    ticket, _, description, events = found
    authorize_ticket("tickets.read", ticket, actor, tickets, ledger, stores)
    return TicketDetails(ticket=ticket, description=description, events=events,
                         tasks=tickets.tasks(list(ticket.task_ids)), for_member=actor.role is Role.MEMBER)


def authorize_ticket(operation: str, ticket: Ticket, actor: Principal, tickets: TicketRepository,
                     ledger: LedgerRepository, stores: StoreRepository) -> QueueRecord:
    """The operation's rule for this ticket: its member (followed through merges), its queue, or its store
    (for reads). A member asking about a ticket that is not theirs is told it does not exist."""
    scope = scope_of(operation, actor)
    if scope is Scope.SELF:
        owner = ticket.member_id
        if owner is not None and owner != actor.member_id:
            owner = live_member(ledger, owner, erased_ok=True)[1].member_id
        if owner is None or owner != actor.member_id:
            raise NotFound("ticket not found", code="ticket_not_found", details={"ticket_id": ticket.ticket_id})
        authorize(operation, actor, member_id=owner)
        return resolve_queue(ticket.queue_id, tickets, stores)
    if scope is Scope.STORE and ticket.store_id is None:  # an integration: a ticket of no store is not its stores'
        raise Forbidden("store is outside your scope", code="store_out_of_scope", details={"store_id": None})
    queue = resolve_queue(ticket.queue_id, tickets, stores)
    store = None
    if operation == "tickets.read" and ticket.store_id:
        store = stores.get(ticket.store_id) or StoreRef(ticket.store_id)
    authorize(operation, actor, queue=queue, store=store)
    return queue


def list_tickets(actor: Principal, tickets: TicketRepository, stores: StoreRepository, *, queue_id: str | None,
                 store_id: str | None, assignee: str | None, status: str | None, cursor: str | None,
                 limit: int, sla: str | None = None) -> tuple[list[Ticket], str | None]:
    """One index query per supported filter; any other combination is a 422 (never a scan)."""
    if sla is not None:
        if queue_id or store_id or assignee or status:
            raise _unsupported()
        page, next_cursor = tickets.sla_page(sla, cursor, limit)
        return _readable(actor, page, tickets, stores), next_cursor
    if assignee is not None and queue_id is None and store_id is None:
        # The caller's own work: the role (checked by the route) is the whole rule.
        return tickets.by_assignee(actor.sub, status, cursor, limit)
    if queue_id is not None and store_id is None and assignee is None:
        queue = resolve_queue(queue_id, tickets, stores)
        authorize("tickets.list", actor, queue=queue)
        return tickets.by_queue(queue.queue_id, status or "new", cursor, limit)
    if store_id is not None and queue_id is None and assignee is None:
        store = stores.get(store_id)
        if store is None:
            raise NotFound("store not found", code="store_not_found", details={"store_id": store_id})
        authorize("tickets.list", actor, store=store)
        return tickets.by_store(store_id, status or "new", cursor, limit)
    raise _unsupported()


def _unsupported() -> Invalid:
    return Invalid("filter by queue, by store_id, by assignee=me (each with an optional status), or by sla alone",
                   code="unsupported_filter", details=[{"loc": ["query"], "msg": "unsupported combination"}])


def _readable(actor: Principal, page: list[Ticket], tickets: TicketRepository,
              stores: StoreRepository) -> list[Ticket]:
    """The tickets of a brand-wide page this caller may read (HQ: all; others: their queues' and stores')."""
    if scope_of("tickets.read", actor) is Scope.ANY:
        return page
    queues: dict[str, QueueRecord] = {}
    visible = []
    for ticket in page:
        queue = queues.get(ticket.queue_id) or resolve_queue(ticket.queue_id, tickets, stores)
        queues[ticket.queue_id] = queue
        store = (stores.get(ticket.store_id) or StoreRef(ticket.store_id)) if ticket.store_id else None
        try:
            authorize("tickets.read", actor, queue=queue, store=store)
        except Forbidden:
            continue
        visible.append(ticket)
    return visible


def member_tickets(member_id: str, actor: Principal, tickets: TicketRepository, ledger: LedgerRepository,
                   members: MemberRepository, stores: StoreRepository, cursor: str | None,
                   limit: int) -> tuple[str, list[Ticket], str | None]:
    """The live member's tickets (with those of members merged into it), newest first. Staff see only those
    they may read (a ticket of another store's queue about another store is left out of their page)."""
    scope = scope_of("tickets.member_list", actor)
    if scope is Scope.SELF:
        authorize("tickets.member_list", actor, member_id=member_id)
    _, state = live_member(ledger, member_id)
    live = state.member_id
    page, next_cursor = tickets.by_member([live, *(m for m, _ in members.merged_away(live))], cursor, limit)
    if scope is not Scope.QUEUE:
        return live, page, next_cursor
    return live, _readable(actor, page, tickets, stores), next_cursor
