"""Service tickets: what a ticket is, the actions that change it, and routing. Pure rules.

A ticket is an append-only list of events; its state is derived by `apply` (the reducer), one event at a
time, and every action is checked against the state first (`check`): an action the state does not allow is
refused with the state named. Routing is data: HQ's ordered rules, first match wins; with none, the ticket
goes to its store's queue, else to `hq-service`. The SLA issue adds its deadlines beside `first_response_at`
and `resolved_at` (the facts its clocks start and stop on)."""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictInt, model_validator

from .members import MemberId, StoreId
from .orders import DocId

REOPEN_DAYS = 7
HQ_QUEUE = "hq-service"
QueueId = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,47}$")]


class Channel(StrEnum):
    HOTLINE = "hotline"
    SOCIAL = "social"
    STORE = "store"
    MINIPROGRAM = "miniprogram"
    PHONE = "phone"
    EMAIL = "email"


class TicketType(StrEnum):
    COMPLAINT = "complaint"
    PRODUCT = "product"
    SERVICE = "service"
    REFUND = "refund"
    INQUIRY = "inquiry"
    CROSS_STORE = "cross_store"


class Priority(StrEnum):
    LOW = "low"
    NORMAL = "normal"
    HIGH = "high"
    URGENT = "urgent"


PRIORITY_ORDER = (Priority.LOW, Priority.NORMAL, Priority.HIGH, Priority.URGENT)


class Status(StrEnum):
    NEW = "new"  # nobody has answered yet
    OPEN = "open"  # being worked
    PENDING = "pending"  # on hold: waiting on the customer
    RESOLVED = "resolved"
    CLOSED = "closed"


class ActionType(StrEnum):
    REPLY = "reply"  # public: the member sees it
    COMMENT = "comment"  # internal: never shown to the member
    ASSIGN = "assign"
    TRANSFER = "transfer"
    HOLD = "hold"
    RESUME = "resume"
    RESOLVE = "resolve"
    REOPEN = "reopen"
    CLOSE = "close"
    RATE = "rate"
    # Not sent by clients: recorded when a task of the ticket is added or done (the ticket cannot resolve
    # while one is open), so the events alone give the ticket's state.
    TASK_ADDED = "task_added"
    TASK_DONE = "task_done"


CLIENT_ACTIONS = frozenset(ActionType) - {ActionType.TASK_ADDED, ActionType.TASK_DONE}
WORKING = frozenset({"new", "open", "pending"})  # statuses an assignee is counted busy with


def _not_reserved(ticket_id: str) -> str:
    if ticket_id.lower() in RESERVED_TICKET_IDS:
        raise ValueError(f"{ticket_id!r} is reserved (a route of its own)")
    return ticket_id


def task_event_id(task_id: str, what: str) -> str:
    """The event id of a task's addition or completion: '*' never appears in a client's action id."""
    return f"*task-{what}:{task_id}"


def store_queue(store_id: str) -> str:
    """Every store has its queue, implicitly."""
    return f"store-{store_id}"


RESERVED_TICKET_IDS = frozenset({"stats"})  # GET /tickets/stats is a route: a ticket so named could not be read


class TicketInput(BaseModel):
    model_config = ConfigDict(extra="forbid")
    ticket_id: Annotated[DocId, AfterValidator(lambda v: _not_reserved(v))]
    channel: Channel
    type: TicketType
    subject: str = Field(min_length=1, max_length=200)
    description: str = Field(min_length=1, max_length=5_000)
    store_id: StoreId | None = None
    member_id: MemberId | None = None
    order_id: DocId | None = None
    priority: Priority | None = Field(default=None, description="default: the routing rule's, else normal")


class RoutingRule(BaseModel):
    """Conditions (each optional; a list matches any of its values) -> where the ticket goes."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=100)
    types: list[TicketType] = Field(default=[], max_length=10)
    channels: list[Channel] = Field(default=[], max_length=10)
    store_ids: list[StoreId] = Field(default=[], max_length=500)
    region_ids: list[StoreId] = Field(default=[], max_length=100)
    priorities: list[Priority] = Field(default=[], max_length=4)
    member_tiers: list[Annotated[str, Field(min_length=1, max_length=40)]] = Field(default=[], max_length=20)
    queue_id: QueueId | Literal["{store}"] = Field(description="a queue, or {store}: the ticket's store's queue")
    priority: Priority | None = Field(default=None, description="set when the ticket asked for none")
    raise_to: Priority | None = Field(default=None, description="at least this priority (a VIP tier's)")
    assignment: Literal["round_robin", "least_open", "none"] = "round_robin"


class RoutingRulesInput(BaseModel):
    """PUT /routing-rules: the whole ordered list (first match wins)."""

    model_config = ConfigDict(extra="forbid")
    rules: list[RoutingRule] = Field(max_length=200)
    version: StrictInt | None = Field(default=None, ge=0, description="the version read; a newer one is a 409")


class QueueInput(BaseModel):
    """PUT /queues/{queue_id}. Store queues are implicit (store-<store_id>), so a body of kind store is refused."""

    model_config = ConfigDict(extra="forbid")
    kind: Literal["store", "region", "hq"]
    name: str = Field(min_length=1, max_length=100)
    region_id: StoreId | None = Field(default=None, description="kind region: the region it serves")

    @model_validator(mode="after")
    def _region_queue_names_its_region(self) -> QueueInput:
        if (self.kind == "region") != (self.region_id is not None):
            raise ValueError("region_id is required for a region queue and only for one")
        return self


@dataclass(frozen=True)
class Facts:
    """What routing matches on: the ticket and what is known of its store and member."""

    type: TicketType
    channel: Channel
    store_id: str | None
    region_id: str | None
    priority: Priority | None
    member_tier: str | None


def matches(rule: RoutingRule, facts: Facts) -> bool:
    return ((not rule.types or facts.type in rule.types)
            and (not rule.channels or facts.channel in rule.channels)
            and (not rule.store_ids or facts.store_id in rule.store_ids)
            and (not rule.region_ids or facts.region_id in rule.region_ids)
            and (not rule.priorities or (facts.priority or Priority.NORMAL) in rule.priorities)
            and (not rule.member_tiers or facts.member_tier in rule.member_tiers))


@dataclass(frozen=True)
class Route:
    queue_id: str
    priority: Priority
    assignment: str
    rule: str | None  # the rule's name; None: the default route


def route(rules: list[RoutingRule], facts: Facts) -> Route:
    """First matching rule wins; none: the store's queue, else hq-service. The ticket's own priority wins
    over a rule's default; `raise_to` lifts it (never lowers)."""
    for rule in rules:
        if not matches(rule, facts):
            continue
        if rule.queue_id == "{store}":
            queue = store_queue(facts.store_id) if facts.store_id else HQ_QUEUE
        else:
            queue = rule.queue_id
        priority = facts.priority or rule.priority or Priority.NORMAL
        if rule.raise_to is not None and PRIORITY_ORDER.index(rule.raise_to) > PRIORITY_ORDER.index(priority):
            priority = rule.raise_to
        return Route(queue, priority, rule.assignment, rule.name)
    queue = store_queue(facts.store_id) if facts.store_id else HQ_QUEUE
    return Route(queue, facts.priority or Priority.NORMAL, "round_robin", None)


@dataclass(frozen=True)
class Agent:
    sub: str
    open_tickets: int
    last_assigned_at: datetime | None


def choose_agent(agents: list[Agent], assignment: str) -> str | None:
    """Among the queue's available agents: round robin = whoever was assigned longest ago (never first);
    least open = fewest open tickets, then round robin. Nobody available: None (the ticket waits, unassigned,
    visible in the queue). Ties by `sub`, so the choice is the same for the same facts."""
    if not agents or assignment == "none":
        return None
    never = datetime.min.replace(tzinfo=None)

    def waited(a: Agent) -> tuple[Any, ...]:
        return (a.last_assigned_at.replace(tzinfo=None) if a.last_assigned_at else never, a.sub)

    if assignment == "least_open":
        return min(agents, key=lambda a: (a.open_tickets, *waited(a))).sub
    return min(agents, key=waited).sub


@dataclass(frozen=True)
class AgentRecord:
    queue_id: str
    sub: str
    available: bool
    open: int
    last_assigned_at: str | None  # as stored: the round-robin claim conditions on it


@dataclass(frozen=True)
class AgentClaim:
    """Routing chose this agent on what it read: the write holds only if the agent is still available and
    nobody was given a ticket by it since (so round robin never hands two tickets to one turn)."""

    queue_id: str
    sub: str
    last_assigned_at: str | None
    at: str


@dataclass(frozen=True)
class QueueRecord:
    queue_id: str
    kind: str  # store | region | hq
    name: str
    store_id: str | None = None
    region_id: str | None = None
    defined: bool = True  # False: implicit (a store's queue, hq-service)


# ---- the ticket and its events ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Event:
    """One action as recorded (append-only). `by` is the caller's sub; `data` the action's own fields."""

    action_id: str
    type: ActionType
    by: str
    by_role: str
    at: datetime
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Ticket:
    ticket_id: str
    channel: Channel
    type: TicketType
    subject: str
    description: str
    store_id: str | None
    member_id: str | None
    order_id: str | None
    queue_id: str
    priority: Priority
    created_at: datetime
    created_by: str
    status: Status = Status.NEW
    assignee: str | None = None
    routed_by: str | None = None  # the rule's name (routing details: never shown to members)
    first_response_at: datetime | None = None
    resolved_at: datetime | None = None
    closed_at: datetime | None = None
    rating: int | None = None
    reopened: int = 0
    open_tasks: int = 0
    task_ids: tuple[str, ...] = ()
    sla: dict[str, Any] | None = None  # the clocks (domain/sla.sla_body): deadlines, escalation steps taken
    events: int = 0  # how many events the state was derived from (the next event's sequence number)
    writes: int = 0  # how many times the head was written (actions and the SLA sweep): the optimistic lock

    def evolve(self, **changes: Any) -> Ticket:
        return replace(self, **changes)


class ActionRefused(Exception):  # noqa: N818 - a reason, not a failure of ours
    def __init__(self, code: str, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.code, self.message, self.details = code, message, details or {}


ALLOWED: dict[ActionType, frozenset[Status]] = {
    ActionType.REPLY: frozenset({Status.NEW, Status.OPEN, Status.PENDING}),
    ActionType.COMMENT: frozenset(Status),
    ActionType.ASSIGN: frozenset({Status.NEW, Status.OPEN, Status.PENDING}),
    ActionType.TRANSFER: frozenset({Status.NEW, Status.OPEN, Status.PENDING}),
    ActionType.HOLD: frozenset({Status.NEW, Status.OPEN}),
    ActionType.RESUME: frozenset({Status.PENDING}),
    ActionType.RESOLVE: frozenset({Status.NEW, Status.OPEN, Status.PENDING}),
    ActionType.REOPEN: frozenset({Status.RESOLVED}),
    ActionType.CLOSE: frozenset({Status.NEW, Status.OPEN, Status.PENDING, Status.RESOLVED}),
    ActionType.RATE: frozenset({Status.RESOLVED, Status.CLOSED}),
    ActionType.TASK_ADDED: frozenset({Status.NEW, Status.OPEN, Status.PENDING}),
    ActionType.TASK_DONE: frozenset(Status),  # a task finished after its ticket closed is still done
}


def check(ticket: Ticket, event: Event, *, by_member: bool) -> None:
    """Refuse an action the ticket's state does not allow (409, naming the state), or one only some may do
    at this point: a member reopens within REOPEN_DAYS of the resolve, rates once."""
    if ticket.status not in ALLOWED[event.type]:
        raise ActionRefused("action_not_allowed", f"a {ticket.status.value} ticket cannot take {event.type.value}",
                            {"status": ticket.status.value, "action": event.type.value})
    if event.type is ActionType.RESOLVE and ticket.open_tasks:
        raise ActionRefused("tasks_open", "the ticket's tasks must be done first",
                            {"status": ticket.status.value, "open_tasks": ticket.open_tasks})
    if event.type is ActionType.REOPEN and by_member and ticket.resolved_at is not None \
            and event.at > ticket.resolved_at + timedelta(days=REOPEN_DAYS):
        raise ActionRefused("reopen_window_passed", f"a member may reopen within {REOPEN_DAYS} days of the resolve",
                            {"status": ticket.status.value, "resolved_at": ticket.resolved_at.isoformat()})
    if event.type is ActionType.RATE and ticket.rating is not None:
        raise ActionRefused("already_rated", "this ticket has been rated", {"status": ticket.status.value})


def apply(ticket: Ticket, event: Event) -> Ticket:
    """The state after one event (already checked). The first public reply by anyone but the member is the
    first response; a transfer leaves the ticket unassigned in its new queue (routing assigns again)."""
    t = ticket.evolve(events=ticket.events + 1)
    kind = event.type
    if kind is ActionType.REPLY:
        if event.by_role != "member" and t.first_response_at is None:
            t = t.evolve(first_response_at=event.at)
        if t.status is Status.NEW and event.by_role != "member":
            t = t.evolve(status=Status.OPEN)
    elif kind is ActionType.ASSIGN:
        t = t.evolve(assignee=event.data.get("assignee"),
                     status=Status.OPEN if t.status is Status.NEW else t.status)
    elif kind is ActionType.TRANSFER:
        t = t.evolve(queue_id=event.data["queue_id"], assignee=event.data.get("assignee"),
                     routed_by=event.data.get("routed_by"))
    elif kind is ActionType.HOLD:
        t = t.evolve(status=Status.PENDING)
    elif kind is ActionType.RESUME:
        t = t.evolve(status=Status.OPEN)
    elif kind is ActionType.RESOLVE:
        t = t.evolve(status=Status.RESOLVED, resolved_at=event.at)
    elif kind is ActionType.REOPEN:
        t = t.evolve(status=Status.OPEN, reopened=t.reopened + 1)
    elif kind is ActionType.CLOSE:
        t = t.evolve(status=Status.CLOSED, closed_at=event.at)
    elif kind is ActionType.RATE:
        t = t.evolve(rating=event.data["score"])
    elif kind is ActionType.TASK_ADDED:
        t = t.evolve(open_tasks=t.open_tasks + 1, task_ids=(*t.task_ids, event.data["task_id"]))
    elif kind is ActionType.TASK_DONE:
        t = t.evolve(open_tasks=t.open_tasks - 1)
    return t


def load_changes(before: Ticket | None, after: Ticket) -> dict[tuple[str, str], int]:
    """How an event changes agents' open-ticket counts, per (queue, agent): least-open assignment reads them.
    A ticket counts for its assignee in its queue while it is new, open or pending."""
    changes: dict[tuple[str, str], int] = {}
    for ticket, sign in ((before, -1), (after, 1)):
        if ticket is not None and ticket.assignee and ticket.status.value in WORKING:
            key = (ticket.queue_id, ticket.assignee)
            changes[key] = changes.get(key, 0) + sign
    return {k: v for k, v in changes.items() if v}


class ActionInput(BaseModel):
    """POST /tickets/{ticket_id}/actions: what each type carries."""

    model_config = ConfigDict(extra="forbid")
    action_id: DocId
    type: Literal["reply", "comment", "assign", "transfer", "hold", "resume", "resolve", "reopen", "close", "rate"]
    body: str | None = Field(default=None, min_length=1, max_length=5_000, description="reply and comment")
    article_ids: list[Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")]] = Field(
        default=[], max_length=10, description="knowledge-base articles a reply cites")
    assignee: str | None = Field(default=None, min_length=1, max_length=200, description="assign: the agent's sub")
    queue_id: QueueId | None = Field(default=None, description="transfer: the queue")
    score: StrictInt | None = Field(default=None, ge=1, le=5, description="rate")

    @property
    def kind(self) -> ActionType:
        return ActionType(self.type)

    @model_validator(mode="after")
    def _fields_of_type(self) -> ActionInput:
        kind = ActionType(self.type)
        need = {ActionType.REPLY: {"body"}, ActionType.COMMENT: {"body"}, ActionType.ASSIGN: {"assignee"},
                ActionType.TRANSFER: {"queue_id"}, ActionType.RATE: {"score"}}.get(kind, set())
        given = {name for name in ("body", "assignee", "queue_id", "score") if getattr(self, name) is not None}
        if self.article_ids:
            given.add("article_ids")
        allowed = need | ({"article_ids"} if kind is ActionType.REPLY else set())
        if need - given:
            raise ValueError(f"{kind.value} needs {', '.join(sorted(need - given))}")
        if given - allowed:
            raise ValueError(f"{', '.join(sorted(given - allowed))} does not apply to {kind.value}")
        return self

    def data(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude={"action_id", "type"}, exclude_none=True, exclude_defaults=True)
