"""The request and response models of the ticket, task, SLA and notification routes (api/tickets.py,
api/sla.py), kept apart from inputs.py and responses.py, which every view imports: a cold container serving
/members must not build the ticket models (see docs/decisions.md, "Cold start with tickets")."""
from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, RootModel

from ..domain import clock
from ..domain.members import StoreId
from ..domain.sla import Clock, SlaPolicy, SlaPolicyInput, sla_from
from ..domain.tasks import AssignInput, CompleteInput, Task, TaskInput
from ..domain.ticket_stats import GroupNumbers
from ..domain.tickets import (
    ActionInput,
    ActionType,
    Event,
    QueueId,
    QueueInput,
    RoutingRule,
    RoutingRulesInput,
    Ticket,
    TicketInput,
)
from .inputs import PAGE_MAX, PageQuery
from .responses import _Out

__all__ = ["ActionInput", "AssignInput", "CompleteInput", "QueueInput", "RoutingRulesInput", "SlaPolicyInput",
           "TaskInput", "TicketInput"]


# ---- tickets and tasks
class TicketListQuery(PageQuery):
    """One supported filter at a time (each an index query): queue, store_id, or assignee=me."""

    queue: QueueId | None = None
    store_id: StoreId | None = None
    assignee: Literal["me"] | None = None
    status: Literal["new", "open", "pending", "resolved", "closed"] | None = Field(
        default=None, description="default: new (queue and store lists); any (assignee)")
    sla: Literal["at_risk", "breached"] | None = Field(
        default=None, description="alone: tickets past their at-risk or breach time, from the SLA due index (it "
                                  "lags the clock by up to one sweep, 5 minutes); staff see those they may read")


class TaskListQuery(PageQuery):
    state: Literal["open", "done", "overdue"] = "open"


class TicketStatsQuery(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)
    from_: date = Field(alias="from", description="first business day (Asia/Shanghai), YYYY-MM-DD")
    to: date = Field(description="last business day, inclusive; at most 92 days from from")
    group_by: Literal["store", "region", "type", "channel"]


class AvailabilityInput(BaseModel):
    model_config = ConfigDict(extra="forbid")
    available: bool = Field(strict=True)


# ---- SLA and notifications
class NotificationsQuery(BaseModel):
    model_config = ConfigDict(extra="ignore")
    limit: int = Field(default=50, ge=1, le=PAGE_MAX)


class ReadInput(BaseModel):
    model_config = ConfigDict(extra="forbid")
    notification_ids: list[Annotated[str, Field(min_length=1, max_length=200)]] = Field(min_length=1, max_length=100)


# ---- tickets, queues, tasks ----------------------------------------------------------------------------------
class TaskView(_Out):
    task_id: str
    store_id: str
    title: str
    due_at: datetime
    state: str
    overdue: bool
    assignee: str | None
    source: dict[str, str] = Field(description="{kind: ticket|automation, id}")
    created_at: datetime
    completed_at: datetime | None = None
    completed_by: str | None = None
    outcome: str | None = None
    note: str | None = None

    @classmethod
    def of(cls, task: Task) -> TaskView:
        return cls(**task.model_dump(exclude={"created_by"}), overdue=task.overdue(clock.now()))


class TaskPage(_Out):
    items: list[TaskView]
    next_cursor: str | None = None


class EventView(_Out):
    """One recorded action (staff): who did what, when, with the action's own fields."""

    action_id: str
    type: str
    by: str
    by_role: str
    at: datetime
    data: dict[str, Any]


class SlaClockView(_Out):
    state: str = Field(description="within | at_risk | breached | met, as of this answer")
    target_minutes: int
    clock: str = Field(description="business (the queue's calendar) or wall")
    used_seconds: int = Field(description="consumed by finished segments (a running clock adds from since)")
    running: bool
    due_at: datetime | None
    at_risk_at: datetime | None
    done_at: datetime | None

    @classmethod
    def of(cls, c: Clock, at: datetime) -> SlaClockView:
        return cls(state=c.state(at), target_minutes=c.target // 60, clock=c.mode, used_seconds=c.used,
                   running=c.running, due_at=c.due_at, at_risk_at=c.at_risk_at, done_at=c.done_at)


class SlaView(_Out):
    policy_version: int
    first_response: SlaClockView
    resolution: SlaClockView
    escalated: list[str] = Field(description="escalation steps taken (each once)")

    @classmethod
    def of(cls, body: dict[str, Any] | None) -> SlaView | None:
        if body is None:
            return None
        s, at = sla_from(body), clock.now()
        return cls(policy_version=s.policy_version, first_response=SlaClockView.of(s.first_response, at),
                   resolution=SlaClockView.of(s.resolution, at), escalated=list(s.escalated))


class TicketSummary(_Out):
    """A ticket in a staff list: its state, routing and SLA clocks, not its conversation."""

    ticket_id: str
    channel: str
    type: str
    subject: str
    store_id: str | None
    member_id: str | None
    order_id: str | None
    queue_id: str
    priority: str
    status: str
    assignee: str | None
    routed_by: str | None
    created_at: datetime
    created_by: str
    first_response_at: datetime | None
    resolved_at: datetime | None
    closed_at: datetime | None
    rating: int | None
    reopened: int
    open_tasks: int
    sla: SlaView | None = Field(description="null for tickets opened before SLA clocks existed")

    @classmethod
    def of(cls, t: Ticket) -> TicketSummary:
        return cls.model_validate({**{name: getattr(t, name) for name in cls.model_fields if name != "sla"},
                                   "sla": SlaView.of(t.sla)})


class TicketView(TicketSummary):
    description: str
    events: list[EventView]
    tasks: list[TaskView]


class MemberReply(_Out):
    by: str = Field(description="you, or staff (never a person's identity)")
    at: datetime
    body: str


class MemberTicketView(_Out):
    """What a member sees of their ticket: never internal comments, agents' identities or routing."""

    ticket_id: str
    channel: str
    type: str
    subject: str
    description: str | None = Field(default=None, description="in the single-ticket answer only")
    store_id: str | None
    order_id: str | None
    status: str
    created_at: datetime
    resolved_at: datetime | None
    rating: int | None
    replies: list[MemberReply] | None = Field(default=None, description="public replies, oldest first (single "
                                                                         "ticket only)")

    @classmethod
    def of(cls, t: Ticket, description: str | None = None, events: list[Event] | None = None) -> MemberTicketView:
        replies = None
        if events is not None:
            replies = [MemberReply(by="you" if e.by_role == "member" else "staff", at=e.at, body=e.data["body"])
                       for e in events if e.type is ActionType.REPLY]
        return cls(ticket_id=t.ticket_id, channel=t.channel.value, type=t.type.value, subject=t.subject,
                   description=description, store_id=t.store_id, order_id=t.order_id, status=t.status.value,
                   created_at=t.created_at, resolved_at=t.resolved_at, rating=t.rating, replies=replies)


class TicketPage(_Out):
    items: list[TicketSummary]
    next_cursor: str | None = None


class MemberTicketPage(_Out):
    member_id: str
    items: list[MemberTicketView] | list[TicketSummary]
    next_cursor: str | None = None


class ActionView(_Out):
    """The answer to an action: what was recorded (a replay answers the same event) and the ticket now."""

    action_id: str
    type: str
    at: datetime
    ticket: TicketSummary | MemberTicketView


class QueueView(_Out):
    queue_id: str
    kind: str
    name: str
    store_id: str | None = None
    region_id: str | None = None


class AgentView(_Out):
    queue_id: str
    sub: str
    available: bool
    open: int = Field(description="open tickets assigned to this agent in this queue")


class RoutingRulesView(_Out):
    rules: list[RoutingRule]
    version: int


class TicketAnswer(RootModel[TicketSummary | MemberTicketView]):
    """Staff get the summary; the ticket's member gets the member's view."""


class TicketDetailAnswer(RootModel[TicketView | MemberTicketView]):
    """Staff get the whole ticket (events, internal comments, tasks); its member the public replies."""


class FirstResponseStats(_Out):
    count: int = Field(description="first public staff replies in the range (tickets answered)")
    median_seconds: int | None = Field(description="wall seconds from opening to the first reply; from a log-bucket "
                                                   "histogram: within 10 % (+0.5 s) of the exact median")
    p90_seconds: int | None = Field(description="the 90th percentile, same bound")


class SatisfactionStats(_Out):
    count: int
    average_x100: int | None = Field(description="the average score (1-5) x 100, rounded down")


class TicketGroupStats(_Out):
    value: str | None = Field(description="the store, region, type or channel (null: tickets of no store/region)")
    opened: int
    first_response: FirstResponseStats
    first_response_met: int
    first_response_breached: int
    first_response_met_rate_bp: int | None = Field(description="met / decided in basis points; null: none decided")
    resolution_met: int
    resolution_breached: int
    resolution_met_rate_bp: int | None = Field(description="met / decided in basis points (each resolve decides)")
    satisfaction: SatisfactionStats

    @classmethod
    def of(cls, n: GroupNumbers) -> TicketGroupStats:
        return cls(value=n.value, opened=n.opened,
                   first_response=FirstResponseStats(count=n.first_response_count,
                                                     median_seconds=n.first_response_median_seconds,
                                                     p90_seconds=n.first_response_p90_seconds),
                   first_response_met=n.first_response_met, first_response_breached=n.first_response_breached,
                   first_response_met_rate_bp=n.first_response_met_rate_bp, resolution_met=n.resolution_met,
                   resolution_breached=n.resolution_breached, resolution_met_rate_bp=n.resolution_met_rate_bp,
                   satisfaction=SatisfactionStats(count=n.satisfaction_count,
                                                  average_x100=n.satisfaction_average_x100))


class TicketStatsView(_Out):
    first_day: date = Field(description="the query's from")
    last_day: date = Field(description="the query's to")
    group_by: str
    groups: list[TicketGroupStats] = Field(description="groups with any activity in the range, by value")


# ---- SLA and notifications -----------------------------------------------------------------------------------
class SlaPolicyView(SlaPolicy):
    """The policy now; `version` 0 = never set (the defaults: 30 business minutes, 24 wall hours)."""


class NotificationView(_Out):
    notification_id: str
    recipient: str = Field(description="sub:<sub>, store_managers:<store>, region_manager:<region>, hq or "
                                       "queue:<queue>")
    ticket_id: str
    step: str
    due_at: datetime
    created_at: datetime
    subject: str
    store_id: str | None
    queue_id: str
    priority: str
    read: bool


class NotificationPage(_Out):
    items: list[NotificationView]


class MarkedView(_Out):
    marked: int = Field(description="how many ids were marked read (again: no change)")
