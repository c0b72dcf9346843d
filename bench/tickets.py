"""What service tickets cost: requests and capacity per create, per action, per read and list page, per task."""
from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from chalicelib import bootstrap
from chalicelib.domain import clock
from chalicelib.domain.access import Principal, Role
from chalicelib.domain.tasks import CompleteInput, TaskInput
from chalicelib.domain.tickets import ActionInput, TicketInput
from chalicelib.services import tasks, ticket_actions, ticket_queues, tickets

from .dynamo import CLERK, HQ, MANAGER, STORE, Scenario

AGENTS = [Principal(sub=f"bench-agent-{n}", role=Role.STAFF, store_ids=frozenset({STORE})) for n in range(2)]
LIST_PAGE = 20


def _ids(prefix: str, n: int) -> list[str]:
    return [f"{prefix}-{uuid.uuid4().hex[:12]}" for _ in range(n)]


def _agents_available() -> None:
    for agent in AGENTS:
        ticket_queues.set_availability(f"store-{STORE}", True, agent, bootstrap.tickets(), bootstrap.stores())


def _input(ticket_id: str) -> TicketInput:
    return TicketInput(ticket_id=ticket_id, channel="store", type="complaint", subject="奶茶太甜",
                       description="点了三分糖，喝起来是全糖。" * 20, store_id=STORE)


def _open(ticket_id: str) -> str:
    ticket, created = tickets.open_ticket(_input(ticket_id), CLERK, bootstrap.tickets(), bootstrap.ledger(),
                                          bootstrap.stores(), bootstrap.calendars())
    if not created or ticket.assignee is None:
        raise RuntimeError("expected a new ticket, assigned")
    return ticket.ticket_id


def _tickets(n: int) -> list[str]:
    _agents_available()
    return [_open(t) for t in _ids("bt", n)]


def _act(ticket_id: str, actor: Principal, **body: Any) -> None:
    _, _, created = ticket_actions.act(ticket_id, ActionInput(action_id=uuid.uuid4().hex[:16], **body), actor,
                                       bootstrap.tickets(), bootstrap.ledger(), bootstrap.stores(), lambda ids: [],
                                       bootstrap.calendars())
    if not created:
        raise RuntimeError("the action was not recorded")


def _with_events(n: int) -> list[str]:
    out = _tickets(n)
    for ticket_id in out:
        for k in range(2):
            _act(ticket_id, AGENTS[0], type="comment", body=f"内部备注 {k}")
        _act(ticket_id, AGENTS[0], type="reply", body="您好，我们马上处理")
    return out


def _with_tasks(n: int) -> list[str]:
    out = []
    for ticket_id in _tickets(n):
        task_id = _ids("btask", 1)[0]
        ticket_actions.add_task(ticket_id, TaskInput(task_id=task_id, store_id="sh-002", title="收货并交给顾客",
                                                     due_at=clock.now() + timedelta(days=1)),
                                AGENTS[0], bootstrap.tickets(), bootstrap.ledger(), bootstrap.stores())
        out.append(task_id)
    return out


def _queue_page(n: int) -> list[None]:
    _tickets(LIST_PAGE)
    return [None] * n


def _list_queue(_: None) -> None:
    page, _ = tickets.list_tickets(MANAGER, bootstrap.tickets(), bootstrap.stores(), queue_id=f"store-{STORE}",
                                   store_id=None, assignee=None, status="new", cursor=None, limit=LIST_PAGE)
    if len(page) < LIST_PAGE:
        raise RuntimeError("expected a full page")


def _list_mine(_: None) -> None:
    page, _ = tickets.list_tickets(AGENTS[0], bootstrap.tickets(), bootstrap.stores(), queue_id=None, store_id=None,
                                   assignee="me", status="new", cursor=None, limit=LIST_PAGE)
    if len(page) < LIST_PAGE:
        raise RuntimeError("expected a full page")


def _complete(task_id: str) -> None:
    clerk_b = Principal(sub="bench-clerk-b", role=Role.STAFF, store_ids=frozenset({"sh-002"}))
    _, created = tasks.complete(task_id, CompleteInput(outcome="done"), clerk_b, bootstrap.tickets(),
                                bootstrap.stores())
    if not created:
        raise RuntimeError("the task was not completed")


SCENARIOS = [
    Scenario("ticket: open (store queue, 2 agents, round robin)",
             lambda n: (_agents_available(), _ids("bt", n))[1], _open),
    Scenario("ticket: reply (public)", _tickets, lambda t: _act(t, AGENTS[0], type="reply", body="您好")),
    Scenario("ticket: assign (moves two agents' open counts)", _tickets,
             lambda t: _act(t, MANAGER, type="assign", assignee=AGENTS[1].sub)),
    Scenario("ticket: transfer (re-routed, new agent chosen)", _tickets,
             lambda t: _act(t, MANAGER, type="transfer", queue_id="store-sh-002")),
    Scenario("ticket: read one, staff (3 events)", _with_events,
             lambda t: tickets.details(t, HQ, bootstrap.tickets(), bootstrap.ledger(), bootstrap.stores())),
    Scenario(f"ticket list: a queue's page of {LIST_PAGE} (gsi1)", _queue_page, _list_queue),
    Scenario(f"ticket list: my assigned, page of {LIST_PAGE} (gsi3 + heads)", _queue_page, _list_mine),
    Scenario("task: complete (with its ticket's event)", _with_tasks, _complete),
]
