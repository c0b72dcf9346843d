"""Queues, their agents and the routing rules: where a ticket goes and who gets it."""
from __future__ import annotations

from datetime import datetime, timedelta

from ..domain import clock
from ..domain.access import Principal
from ..domain.errors import Conflict, Invalid, NotFound
from ..domain.policy import authorize
from ..domain.tickets import (
    HQ_QUEUE,
    Agent,
    AgentClaim,
    AgentRecord,
    QueueInput,
    QueueRecord,
    RoutingRule,
    choose_agent,
)
from .ledger_common import optimistic
from .ports import StoreRepository, TicketRepository

STORE_QUEUE_PREFIX = "store-"


def resolve_queue(queue_id: str, tickets: TicketRepository, stores: StoreRepository,
                  where: str | None = None) -> QueueRecord:
    """A queue by id: a store's (implicit, `store-<store_id>`), a defined one, or `hq-service` (implicit
    until HQ defines it). Unknown: 404, or a 422 naming the body field `where` when the id came in a body."""
    if queue_id.startswith(STORE_QUEUE_PREFIX):
        store = stores.get(queue_id.removeprefix(STORE_QUEUE_PREFIX))
        if store is not None:
            return QueueRecord(queue_id=queue_id, kind="store", name=store.name, store_id=store.store_id,
                               region_id=store.region_id, defined=False)
    else:
        found = tickets.get_queue(queue_id)
        if found is not None:
            return found
        if queue_id == HQ_QUEUE:
            return QueueRecord(queue_id=HQ_QUEUE, kind="hq", name="HQ service", defined=False)
    if where:
        raise Invalid("unknown queue", code="unknown_queue", details=[{"loc": ["body", where], "msg": "no such queue"}])
    raise NotFound("queue not found", code="queue_not_found", details={"queue_id": queue_id})


def put_queue(queue_id: str, cmd: QueueInput, actor: Principal, tickets: TicketRepository,
              stores: StoreRepository) -> tuple[QueueRecord, bool]:
    authorize("queues.put", actor)
    if queue_id.startswith(STORE_QUEUE_PREFIX) or cmd.kind == "store":
        # A store's queue exists with the store: one source for it, never a second definition to drift.
        raise Invalid("store queues are implicit (store-<store_id>); define region and hq queues",
                      code="implicit_queue",
                      details=[{"loc": ["path", "queue_id"], "msg": "store queues are implicit"}])
    queue = QueueRecord(queue_id=queue_id, kind=cmd.kind, name=cmd.name,
                        region_id=cmd.region_id if cmd.kind == "region" else None)
    return queue, tickets.put_queue(queue, actor.sub)


def set_availability(queue_id: str, available: bool, actor: Principal, tickets: TicketRepository,
                     stores: StoreRepository) -> AgentRecord:
    """The caller says they are (not) taking tickets from this queue; they are its agent from then on."""
    queue = resolve_queue(queue_id, tickets, stores)
    authorize("queues.agent", actor, queue=queue)
    return tickets.set_available(queue.queue_id, actor.sub, available)


def put_rules(rules: list[RoutingRule], expected_version: int | None, actor: Principal, tickets: TicketRepository,
              stores: StoreRepository) -> tuple[list[RoutingRule], int]:
    """Replace the ordered rule list. Every queue a rule names must exist (a typo would strand tickets)."""
    authorize("routing.put", actor)
    for n, rule in enumerate(rules):
        if rule.queue_id != "{store}":
            resolve_queue(rule.queue_id, tickets, stores, where=f"rules[{n}].queue_id")

    def attempt() -> tuple[list[RoutingRule], int]:
        _, version = tickets.routing_rules()
        if expected_version is not None and expected_version != version:
            raise Conflict("the rules changed since you read them", code="version_conflict",
                           details={"version": version})
        tickets.put_routing_rules(rules, version, actor.sub)
        return rules, version + 1

    return optimistic(attempt)


def get_rules(actor: Principal, tickets: TicketRepository) -> tuple[list[RoutingRule], int]:
    authorize("routing.read", actor)
    return tickets.routing_rules()


def pick_agent(queue_id: str, assignment: str, tickets: TicketRepository, at: datetime) -> AgentClaim | None:
    """Among the queue's available agents (read now): the round-robin or least-open choice, as a claim the
    write conditions on. Nobody available: None (the ticket waits in its queue, unassigned)."""
    available = [a for a in tickets.agents(queue_id) if a.available]
    chosen = choose_agent([Agent(a.sub, a.open, datetime.fromisoformat(a.last_assigned_at)
                                 if a.last_assigned_at else None) for a in available], assignment)
    if chosen is None:
        return None
    record = next(a for a in available if a.sub == chosen)
    # The turn is stamped after every turn read (not just `at`, taken before the read): the claim then never
    # rewrites the value it is conditioned on (two tickets in one millisecond passed that check) and a turn
    # never sorts before one handed out earlier, so round robin gives nobody a second turn in a round.
    latest = max((datetime.fromisoformat(a.last_assigned_at) for a in available if a.last_assigned_at), default=None)
    if latest is not None and at <= latest:
        at = latest + timedelta(milliseconds=1)
    return AgentClaim(queue_id=queue_id, sub=chosen, last_assigned_at=record.last_assigned_at, at=clock.iso(at))
