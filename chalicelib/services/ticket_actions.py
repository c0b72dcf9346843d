"""Working a ticket: each action an append-only event, checked against the ticket's state, recorded once
(by its action id) on the state it was derived from; tasks for other stores ride on the same events."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..domain import clock
from ..domain.access import Principal, Role
from ..domain.errors import Conflict, DocumentExists, Invalid, NotFound
from ..domain.tasks import Task, TaskExists, TaskInput, TaskSource
from ..domain.tickets import (
    ActionInput,
    ActionRefused,
    ActionType,
    AgentClaim,
    Event,
    Ticket,
    apply,
    check,
    task_event_id,
)
from . import sla, ticket_stats
from .calendars import CalendarRepository
from .ledger_common import fingerprint, optimistic
from .ports import LedgerRepository, StoreRepository, TicketRepository
from .ticket_queues import pick_agent, resolve_queue
from .tickets import authorize_ticket

OPERATION = {
    ActionType.REPLY: "tickets.reply", ActionType.COMMENT: "tickets.work", ActionType.HOLD: "tickets.work",
    ActionType.RESUME: "tickets.work", ActionType.RESOLVE: "tickets.work", ActionType.CLOSE: "tickets.work",
    ActionType.ASSIGN: "tickets.manage", ActionType.TRANSFER: "tickets.manage", ActionType.REOPEN: "tickets.reopen",
    ActionType.RATE: "tickets.rate",
}

Cite = Callable[[list[str]], list[dict[str, Any]]]


def _load(ticket_id: str, tickets: TicketRepository) -> tuple[Ticket, str]:
    found = tickets.get(ticket_id)
    if found is None:
        raise NotFound("ticket not found", code="ticket_not_found", details={"ticket_id": ticket_id})
    return found


def _refusal(refused: ActionRefused) -> Conflict:
    return Conflict(refused.message, code=refused.code, details=refused.details)


def act(ticket_id: str, cmd: ActionInput, actor: Principal, tickets: TicketRepository, ledger: LedgerRepository,
        stores: StoreRepository, cite: Cite, calendar_repo: CalendarRepository) -> tuple[Ticket, Event, bool]:
    """Apply one action; the same action id again replays what was recorded (another body under it: 409)."""
    kind = cmd.kind
    print_ = fingerprint({**cmd.model_dump(mode="json"), "by": actor.sub})
    cals = sla.queue_calendars(tickets, stores, calendar_repo)

    def attempt() -> tuple[Ticket, Event]:
        ticket, created_print = _load(ticket_id, tickets)
        authorize_ticket(OPERATION[kind], ticket, actor, tickets, ledger, stores)
        now = clock.to_ms(clock.now())
        data, claim = _data(kind, cmd, ticket, tickets, stores, cite, now)
        event = Event(action_id=cmd.action_id, type=kind, by=actor.sub, by_role=actor.role.value, at=now, data=data)
        check(ticket, event, by_member=actor.role is Role.MEMBER)
        after = sla.after_event(ticket, apply(ticket, event), event, cals)
        tickets.record(ticket, after, event, print_, created_print=created_print, claim=claim,
                       stats=ticket_stats.changed(ticket, after, event, stores))
        return after, event

    try:
        after, event = optimistic(attempt)
        return after, event, True
    except (DocumentExists, ActionRefused, Invalid) as stopped:
        # Invalid too: a retried transfer finds the ticket in the queue it moved it to (same_queue), a retried
        # assign a queue its assignee is not an agent of; what was recorded answers, as for any replay.
        recorded = tickets.get_event(ticket_id, cmd.action_id)
        if recorded is None:
            if isinstance(stopped, ActionRefused):
                raise _refusal(stopped) from None
            raise  # the 422 (a DocumentExists always finds its event: an event is never deleted)
        event, stored_print = recorded
        if stored_print != print_:
            raise Conflict("this action_id was used for another action", code="action_id_taken",
                           details={"action_id": cmd.action_id}) from None
        return _load(ticket_id, tickets)[0], event, False


def _data(kind: ActionType, cmd: ActionInput, ticket: Ticket, tickets: TicketRepository, stores: StoreRepository,
          cite: Cite, now: Any) -> tuple[dict[str, Any], AgentClaim | None]:
    """What the event records beyond the request: citations, the transfer's new queue and assignee."""
    data = cmd.data()
    if kind is ActionType.REPLY and cmd.article_ids:
        data.pop("article_ids", None)
        data["citations"] = cite(cmd.article_ids)
    if kind is ActionType.ASSIGN:
        agent = tickets.get_agent(ticket.queue_id, cmd.assignee or "")
        if agent is None:
            raise Invalid("the assignee is not an agent of the ticket's queue", code="not_an_agent",
                          details=[{"loc": ["body", "assignee"], "msg": f"not an agent of {ticket.queue_id}"}])
    if kind is ActionType.TRANSFER:
        target = resolve_queue(cmd.queue_id or "", tickets, stores, where="queue_id")
        if target.queue_id == ticket.queue_id:
            raise Invalid("the ticket is already in that queue", code="same_queue",
                          details=[{"loc": ["body", "queue_id"], "msg": "the ticket's own queue"}])
        claim = pick_agent(target.queue_id, "round_robin", tickets, now)
        return {"queue_id": target.queue_id, "from_queue": ticket.queue_id,
                "assignee": claim.sub if claim else None, "routed_by": "transfer"}, claim
    return data, None


def add_task(ticket_id: str, cmd: TaskInput, actor: Principal, tickets: TicketRepository, ledger: LedgerRepository,
             stores: StoreRepository) -> tuple[Task, bool]:
    """A task for a store (often another store: A ships, B hands over). The ticket cannot resolve until it is
    done. Idempotent by task_id."""
    if stores.get(cmd.store_id) is None:
        raise Invalid("unknown store", code="unknown_store",
                      details=[{"loc": ["body", "store_id"], "msg": "no such store"}])

    def attempt() -> Task:
        ticket, created_print = _load(ticket_id, tickets)
        authorize_ticket("tickets.work", ticket, actor, tickets, ledger, stores)
        done = _same_task(cmd, ticket_id, tickets)
        if done is not None:
            raise _Replayed(done)
        now = clock.to_ms(clock.now())
        task = Task(task_id=cmd.task_id, store_id=cmd.store_id, title=cmd.title, due_at=clock.to_ms(cmd.due_at),
                    assignee=cmd.assignee, source=TaskSource(kind="ticket", id=ticket_id), created_at=now,
                    created_by=actor.sub)
        event = Event(action_id=task_event_id(cmd.task_id, "added"), type=ActionType.TASK_ADDED, by=actor.sub,
                      by_role=actor.role.value, at=now, data={"task_id": cmd.task_id, "store_id": cmd.store_id})
        try:
            check(ticket, event, by_member=False)
        except ActionRefused as refused:
            raise _refusal(refused) from None
        tickets.record(ticket, apply(ticket, event), event, None, created_print=created_print, task=task)
        return task

    try:
        return optimistic(attempt), True
    except _Replayed as replayed:
        return replayed.task, False
    except (TaskExists, DocumentExists):
        done = _same_task(cmd, ticket_id, tickets)
        if done is None:  # pragma: no cover - a task is never deleted
            raise
        return done, False


class _Replayed(Exception):  # noqa: N818 - control flow out of the optimistic loop
    def __init__(self, task: Task) -> None:
        self.task = task


def _same_task(cmd: TaskInput, ticket_id: str, tickets: TicketRepository) -> Task | None:
    task = tickets.get_task(cmd.task_id)
    if task is None:
        return None
    if not task.same_request(cmd, ticket_id):
        raise Conflict("this task_id was used for another task", code="task_id_taken",
                       details={"task_id": cmd.task_id})
    return task


def finish_ticket_task(task: Task, done: Task, actor: Principal, tickets: TicketRepository) -> None:
    """Record the task done on its ticket, in the same write as the task."""
    ticket, created_print = _load(task.source.id, tickets)
    event = Event(action_id=task_event_id(task.task_id, "done"), type=ActionType.TASK_DONE, by=actor.sub,
                  by_role=actor.role.value, at=done.completed_at or clock.now(), data={"task_id": task.task_id})
    tickets.record(ticket, apply(ticket, event), event, None, created_print=created_print, task_done=done)

