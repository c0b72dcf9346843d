"""SLA clocks in business time: policies, the two clocks a ticket runs (first response, resolution), their
deadlines, and the escalation steps a sweep takes once each. Pure rules: calendars come in as open windows.

A clock consumes time only while it runs and only inside its calendar's open windows (a wall-clock target
counts in ALWAYS, open all the time). `used` holds what finished segments consumed; a running clock also has
`since`, and its deadlines are computed from there: `due_at` when used reaches the target, `at_risk_at` when
it reaches the policy's share (75 % by default). Hold pauses the resolution clock; a transfer closes the
segment in the old queue's calendar and opens one in the new queue's; reopen runs the resolution clock again
with the time already used; first response never re-arms."""
from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, StrictInt, model_validator

from .tickets import ActionType, Event, Priority, QueueRecord, Ticket, TicketType

WALL = "ALWAYS"  # the calendar key of wall-clock targets
SEARCH_DAYS = 400  # a calendar with no open time in this long gives no deadline (rather than a loop)
SLA_SHARDS = 4  # the due index's partitions per stage: a sweep reads each, none is hot


def sla_shard(ticket_id: str) -> int:
    return int.from_bytes(hashlib.blake2b(ticket_id.encode(), digest_size=2).digest(), "big") % SLA_SHARDS


class Calendar(Protocol):
    def open_windows(self, start: datetime, until: datetime) -> Iterator[tuple[datetime, datetime]]: ...


class Always:
    """Open all the time: wall-clock targets, and queues without a calendar."""

    def open_windows(self, start: datetime, until: datetime) -> Iterator[tuple[datetime, datetime]]:
        yield start, until


ALWAYS = Always()


def business_seconds(cal: Calendar, start: datetime, end: datetime) -> int:
    """Open seconds in [start, end)."""
    if end <= start:
        return 0
    total = 0.0
    for a, b in cal.open_windows(start, end):
        a, b = max(a, start), min(b, end)
        if b > a:
            total += (b - a).total_seconds()
    return int(total)


def add_seconds(cal: Calendar, start: datetime, seconds: int) -> datetime | None:
    """The instant `seconds` of open time after `start` are used up (inside an open window, its end included);
    None when the calendar has no such time within SEARCH_DAYS (the clock then has no deadline)."""
    left = float(seconds)
    for a, b in cal.open_windows(start, start + timedelta(days=SEARCH_DAYS)):
        a = max(a, start)
        if b <= a:
            continue
        if left <= 0:
            return a if seconds > 0 else start
        span = (b - a).total_seconds()
        if span >= left:
            return a + timedelta(seconds=left)
        left -= span
    return start if seconds <= 0 else None


# ---- policies ---------------------------------------------------------------------------------------------
class Target(BaseModel):
    model_config = ConfigDict(extra="forbid")
    minutes: StrictInt = Field(ge=1, le=525_600)
    clock: Literal["business", "wall"] = "business"


class SlaRule(BaseModel):
    model_config = ConfigDict(extra="forbid")
    priority: Priority
    type: TicketType | None = Field(default=None, description="only tickets of this type (else any type)")
    first_response: Target
    resolution: Target


DEFAULT_FIRST_RESPONSE = Target(minutes=30, clock="business")
DEFAULT_RESOLUTION = Target(minutes=24 * 60, clock="wall")


class SlaPolicyInput(BaseModel):
    """PUT /sla-policies: the whole policy; a ticket keeps the version it was opened under."""

    model_config = ConfigDict(extra="forbid")
    rules: list[SlaRule] = Field(default=[], max_length=40)
    at_risk_pct: StrictInt = Field(default=75, ge=1, le=99, description="at risk once this share is used")
    hq_after_minutes: StrictInt = Field(default=240, ge=1, le=525_600,
                                        description="resolution breached this long (wall time): HQ is told too")
    version: StrictInt | None = Field(default=None, ge=0, description="the version read; a newer one is a 409")

    @model_validator(mode="after")
    def _one_rule_per_case(self) -> SlaPolicyInput:
        cases = [(r.priority, r.type) for r in self.rules]
        if len(cases) != len(set(cases)):
            raise ValueError("one rule per priority and type")
        return self


class SlaPolicy(BaseModel):
    rules: list[SlaRule] = []
    at_risk_pct: int = 75
    hq_after_minutes: int = 240
    version: int = 0

    def targets(self, priority: Priority, kind: TicketType) -> tuple[Target, Target]:
        for rule in self.rules:
            if rule.priority is priority and rule.type is kind:
                return rule.first_response, rule.resolution
        for rule in self.rules:
            if rule.priority is priority and rule.type is None:
                return rule.first_response, rule.resolution
        return DEFAULT_FIRST_RESPONSE, DEFAULT_RESOLUTION


# ---- clocks -----------------------------------------------------------------------------------------------
Outcome = Literal["met", "breached"]


@dataclass(frozen=True)
class Clock:
    target: int  # seconds
    mode: str  # business | wall
    calendar: str  # the queue whose calendar counts it (WALL for wall time)
    used: int = 0  # seconds consumed by finished segments
    since: datetime | None = None  # running since; None: paused or stopped
    due_at: datetime | None = None
    at_risk_at: datetime | None = None
    outcome: Outcome | None = None  # stopped: met or breached
    done_at: datetime | None = None

    @property
    def running(self) -> bool:
        return self.since is not None

    def state(self, now: datetime) -> str:
        """within | at_risk | breached | met, as of now (reads are exact; the lists lag one sweep)."""
        if self.outcome is not None:
            return self.outcome
        if self.running:
            if self.due_at is not None and now >= self.due_at:
                return "breached"
            if self.at_risk_at is not None and now >= self.at_risk_at:
                return "at_risk"
            return "within"
        return "breached" if self.used >= self.target else "within"


Calendars = Callable[[str], Calendar]  # queue id (or WALL) -> its calendar


def _key(clock_mode: str, queue_id: str) -> str:
    return WALL if clock_mode == "wall" else queue_id


def _deadlines(c: Clock, cals: Calendars, pct: int) -> Clock:
    if c.since is None:
        return replace(c, due_at=None, at_risk_at=None)
    cal = cals(c.calendar)
    due = add_seconds(cal, c.since, max(c.target - c.used, 0))
    risk = add_seconds(cal, c.since, max(c.target * pct // 100 - c.used, 0))
    return replace(c, due_at=due, at_risk_at=risk)


def start(target: Target, queue_id: str, at: datetime, cals: Calendars, pct: int) -> Clock:
    c = Clock(target=target.minutes * 60, mode=target.clock, calendar=_key(target.clock, queue_id), since=at)
    return _deadlines(c, cals, pct)


def pause(c: Clock, at: datetime, cals: Calendars) -> Clock:
    if c.since is None:
        return c
    used = c.used + business_seconds(cals(c.calendar), c.since, at)
    return replace(c, used=used, since=None, due_at=None, at_risk_at=None)


def resume(c: Clock, at: datetime, cals: Calendars, pct: int) -> Clock:
    if c.since is not None:
        return c
    return _deadlines(replace(c, since=at, outcome=None, done_at=None), cals, pct)


def stop(c: Clock, at: datetime, cals: Calendars) -> Clock:
    if c.outcome is not None:
        return c
    paused = pause(c, at, cals)
    return replace(paused, outcome="met" if paused.used <= c.target else "breached", done_at=at)


def move(c: Clock, queue_id: str, at: datetime, cals: Calendars, pct: int) -> Clock:
    """A transfer: time used so far is kept; the new queue's calendar counts from now on."""
    if c.mode == "wall":
        return c
    if c.since is None:
        return replace(c, calendar=queue_id)
    return resume(replace(pause(c, at, cals), calendar=queue_id), at, cals, pct)


# ---- a ticket's SLA --------------------------------------------------------------------------------------
STEPS = ("first_response_at_risk", "first_response_breached", "resolution_at_risk", "resolution_breached",
         "resolution_breached_hq")


@dataclass(frozen=True)
class TicketSla:
    policy_version: int
    at_risk_pct: int
    hq_after: int  # seconds
    first_response: Clock
    resolution: Clock
    escalated: tuple[str, ...] = ()  # the steps taken (each once)
    stage: str = "within"  # what the due index lists it under: within | at_risk | breached (one sweep behind)

    def thresholds(self) -> dict[str, datetime]:
        """When each escalation step falls due, for the clocks still running."""
        out: dict[str, datetime] = {}
        for name, c in (("first_response", self.first_response), ("resolution", self.resolution)):
            if c.running and c.at_risk_at is not None:
                out[f"{name}_at_risk"] = c.at_risk_at
            if c.running and c.due_at is not None:
                out[f"{name}_breached"] = c.due_at
        due = self.resolution.due_at
        if self.resolution.running and due is not None:
            out["resolution_breached_hq"] = due + timedelta(seconds=self.hq_after)
        return out

    def next_check(self) -> datetime | None:
        """The earliest step not yet taken: where the ticket sits in the due index (None: out of it)."""
        pending = [at for step, at in self.thresholds().items() if step not in self.escalated]
        return min(pending) if pending else None

    def due_steps(self, now: datetime) -> list[str]:
        """The steps whose time has come and that were not taken yet, in escalation order."""
        due = self.thresholds()
        return [s for s in STEPS if s in due and s not in self.escalated and due[s] <= now]

    def escalate(self, steps: list[str]) -> TicketSla:
        taken = (*self.escalated, *steps)
        stage = "breached" if any(s.endswith(("breached", "breached_hq")) for s in taken) else \
            "at_risk" if taken else "within"
        return replace(self, escalated=taken, stage=stage)


def open_sla(policy: SlaPolicy, ticket: Ticket, cals: Calendars) -> TicketSla:
    first, resolution = policy.targets(ticket.priority, ticket.type)
    at, pct = ticket.created_at, policy.at_risk_pct
    return TicketSla(policy_version=policy.version, at_risk_pct=pct, hq_after=policy.hq_after_minutes * 60,
                     first_response=start(first, ticket.queue_id, at, cals, pct),
                     resolution=start(resolution, ticket.queue_id, at, cals, pct))


def on_event(sla: TicketSla, before: Ticket, after: Ticket, event: Event, cals: Calendars) -> TicketSla:
    """The clocks after one event (the ticket's state before and after it tells what changed)."""
    at, pct = event.at, sla.at_risk_pct
    fr, res = sla.first_response, sla.resolution
    kind = event.type
    if kind is ActionType.REPLY and event.by_role != "member":
        fr = stop(fr, at, cals)
    elif kind is ActionType.HOLD:
        res = pause(res, at, cals)
    elif kind is ActionType.RESUME:
        res = resume(res, at, cals, pct)
    elif kind in (ActionType.RESOLVE, ActionType.CLOSE):
        fr, res = stop(fr, at, cals), stop(res, at, cals)
    elif kind is ActionType.REOPEN:
        res = resume(replace(res, outcome=None, done_at=None), at, cals, pct)
    elif kind is ActionType.TRANSFER:
        fr, res = move(fr, after.queue_id, at, cals, pct), move(res, after.queue_id, at, cals, pct)
    changed = replace(sla, first_response=fr, resolution=res)
    if kind is ActionType.REOPEN:
        # A reopened ticket is worked again: its resolution steps may fire again against the new deadline.
        changed = replace(changed, escalated=tuple(s for s in sla.escalated if not s.startswith("resolution")),
                          stage="within" if not any(s.startswith("first") for s in sla.escalated) else sla.stage)
    return changed


# ---- (de)serialising ----------------------------------------------------------------------------------------
def _iso(at: datetime | None) -> str | None:
    return at.isoformat() if at else None


def _at(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


def clock_body(c: Clock) -> dict[str, Any]:
    return {"target": c.target, "mode": c.mode, "calendar": c.calendar, "used": c.used, "since": _iso(c.since),
            "due_at": _iso(c.due_at), "at_risk_at": _iso(c.at_risk_at), "outcome": c.outcome,
            "done_at": _iso(c.done_at)}


def clock_from(d: dict[str, Any]) -> Clock:
    return Clock(target=d["target"], mode=d["mode"], calendar=d["calendar"], used=d["used"], since=_at(d["since"]),
                 due_at=_at(d["due_at"]), at_risk_at=_at(d["at_risk_at"]), outcome=d["outcome"],
                 done_at=_at(d["done_at"]))


def sla_body(s: TicketSla) -> dict[str, Any]:
    return {"policy_version": s.policy_version, "at_risk_pct": s.at_risk_pct, "hq_after": s.hq_after,
            "first_response": clock_body(s.first_response), "resolution": clock_body(s.resolution),
            "escalated": list(s.escalated), "stage": s.stage}


def sla_from(d: dict[str, Any]) -> TicketSla:
    return TicketSla(policy_version=d["policy_version"], at_risk_pct=d["at_risk_pct"], hq_after=d["hq_after"],
                     first_response=clock_from(d["first_response"]), resolution=clock_from(d["resolution"]),
                     escalated=tuple(d["escalated"]), stage=d["stage"])


@dataclass(frozen=True)
class Notification:
    """One escalation step told to one addressee. Its id is the step's due time, ticket and step: the same
    step is never told twice."""

    recipient: str  # Recipient.key
    ticket_id: str
    step: str
    due_at: str
    created_at: str
    subject: str
    store_id: str | None
    queue_id: str
    priority: str

    @property
    def notification_id(self) -> str:
        return f"{self.due_at}#{self.ticket_id}#{self.step}"


@dataclass(frozen=True)
class Recipient:
    """Who a notification is for: a person (`sub`) or a role in a scope."""

    kind: str  # sub | store_managers | region_manager | hq | queue
    scope: str = ""

    @property
    def key(self) -> str:
        return f"{self.kind}:{self.scope}" if self.scope else self.kind


def recipients(step: str, ticket: Ticket, store_region: str | None, queue: QueueRecord) -> list[Recipient]:
    """At risk: the assignee, or with nobody assigned the queue's people (a store queue's agents, a region
    queue's manager, HQ for an HQ queue); first response breached: the store's managers; resolution
    breached: the region's manager, then HQ. Without a store or region, HQ."""
    if step.endswith("at_risk"):
        if ticket.assignee:
            return [Recipient("sub", ticket.assignee)]
        if queue.kind == "store":
            return [Recipient("queue", ticket.queue_id)]
        if queue.kind == "region" and queue.region_id:
            return [Recipient("region_manager", queue.region_id)]
        return [Recipient("hq")]
    if step == "first_response_breached":
        return [Recipient("store_managers", ticket.store_id)] if ticket.store_id else [Recipient("hq")]
    if step == "resolution_breached":
        return [Recipient("region_manager", store_region)] if store_region else [Recipient("hq")]
    return [Recipient("hq")]

