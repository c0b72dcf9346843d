"""The store task list: what a store must do, by when; done once, with an outcome."""
from __future__ import annotations

from typing import Literal

from ..domain import clock
from ..domain.access import Principal
from ..domain.errors import Conflict, DocumentExists, NotFound
from ..domain.policy import StoreRef, authorize
from ..domain.stores import Store
from ..domain.tasks import AssignInput, CompleteInput, Task, TaskNotOpen, TaskState
from .ledger_common import optimistic
from .ports import StoreRepository, TicketRepository
from .ticket_actions import finish_ticket_task


def _task(task_id: str, tickets: TicketRepository) -> Task:
    task = tickets.get_task(task_id)
    if task is None:
        raise NotFound("task not found", code="task_not_found", details={"task_id": task_id})
    return task


def _store_of(task: Task, stores: StoreRepository) -> Store | StoreRef:
    return stores.get(task.store_id) or StoreRef(task.store_id)


def store_tasks(store_id: str, state: Literal["open", "done", "overdue"], actor: Principal,
                tickets: TicketRepository, stores: StoreRepository, cursor: str | None,
                limit: int) -> tuple[list[Task], str | None]:
    """Soonest due first. Overdue: the open ones due before now (a range of the same index query)."""
    store = stores.get(store_id)
    if store is None:
        raise NotFound("store not found", code="store_not_found", details={"store_id": store_id})
    authorize("tasks.list", actor, store=store)
    if state == "overdue":
        return tickets.store_tasks(store_id, TaskState.OPEN.value, clock.iso(clock.now()), cursor, limit)
    return tickets.store_tasks(store_id, state, None, cursor, limit)


def complete(task_id: str, cmd: CompleteInput, actor: Principal, tickets: TicketRepository,
             stores: StoreRepository) -> tuple[Task, bool]:
    """Done once: the same outcome and note again replays; a different one after it was done is a 409."""
    task = _task(task_id, tickets)
    authorize("tasks.complete", actor, store=_store_of(task, stores))

    def attempt() -> tuple[Task, bool]:
        current = _task(task_id, tickets)
        if current.state is TaskState.DONE:
            return _replay(current, cmd), False
        done = current.model_copy(update={"state": TaskState.DONE, "outcome": cmd.outcome, "note": cmd.note,
                                          "completed_at": clock.to_ms(clock.now()), "completed_by": actor.sub})
        finish_ticket_task(current, done, actor, tickets)
        return done, True

    try:
        return optimistic(attempt)
    except (TaskNotOpen, DocumentExists):
        return _replay(_task(task_id, tickets), cmd), False


def _replay(task: Task, cmd: CompleteInput) -> Task:
    if (task.outcome, task.note) != (cmd.outcome, cmd.note):
        raise Conflict("the task was done already", code="task_done",
                       details={"outcome": task.outcome, "completed_at": clock.iso(task.completed_at)
                                if task.completed_at else None})
    return task


def assign(task_id: str, cmd: AssignInput, actor: Principal, tickets: TicketRepository,
           stores: StoreRepository) -> Task:
    task = _task(task_id, tickets)
    authorize("tasks.assign", actor, store=_store_of(task, stores))
    if task.state is TaskState.DONE:
        raise Conflict("the task was done already", code="task_done", details={"state": task.state.value})
    changed = tickets.assign_task(task, cmd.assignee)
    if changed is None:
        raise Conflict("the task was done already", code="task_done", details={"state": TaskState.DONE.value})
    return changed
