"""/tickets, /queues, /routing-rules, /tasks: service tickets, their queues and the store task list."""
from __future__ import annotations

from .. import bootstrap
from ..domain.access import Principal, Role
from ..domain.tickets import Event, Ticket
from ..services import tasks, ticket_actions, ticket_queues, tickets
from ..services import ticket_stats as ticket_stats_service
from .routing import Call, Reply, route
from .ticket_models import (
    ActionInput,
    ActionView,
    AgentView,
    AssignInput,
    AvailabilityInput,
    CompleteInput,
    EventView,
    MemberTicketPage,
    MemberTicketView,
    PageQuery,
    QueueInput,
    QueueView,
    RoutingRulesInput,
    RoutingRulesView,
    TaskInput,
    TaskListQuery,
    TaskPage,
    TaskView,
    TicketAnswer,
    TicketDetailAnswer,
    TicketGroupStats,
    TicketInput,
    TicketListQuery,
    TicketPage,
    TicketStatsQuery,
    TicketStatsView,
    TicketSummary,
    TicketView,
)

TAG = "tickets"


def _cite(article_ids: list[str]) -> list[dict]:
    from ..services import kb

    return kb.cite(article_ids, bootstrap.kb())


def _for(actor: Principal, ticket: Ticket) -> TicketSummary | MemberTicketView:
    """The one place a ticket is shaped for its audience: a member never sees routing or agents."""
    return MemberTicketView.of(ticket) if actor.role is Role.MEMBER else TicketSummary.of(ticket)


def _event(e: Event) -> EventView:
    return EventView(action_id=e.action_id, type=e.type.value, by=e.by, by_role=e.by_role, at=e.at, data=e.data)


@route("/tickets", "POST", op="tickets.create", tag=TAG, body=TicketInput, response=TicketAnswer, status=201,
       also=(200,), errors=(404, 409, 422),
       summary="Open a ticket from any channel; routed by HQ's rules and assigned if an agent is available; "
               "idempotent by ticket_id")
def open_ticket(call: Call) -> Reply:
    ticket, created = tickets.open_ticket(call.body, call.principal, bootstrap.tickets(), bootstrap.ledger(),
                                          bootstrap.stores(), bootstrap.calendars())
    return Reply(TicketAnswer(_for(call.principal, ticket)), 201 if created else 200)


@route("/tickets", "GET", op="tickets.list", tag=TAG, query=TicketListQuery, response=TicketPage,
       errors=(404, 422),
       summary="A queue's, a store's or my tickets by status (one filter at a time; oldest first)")
def list_tickets(call: Call) -> TicketPage:
    q: TicketListQuery = call.query
    items, cursor = tickets.list_tickets(call.principal, bootstrap.tickets(), bootstrap.stores(), queue_id=q.queue,
                                         store_id=q.store_id, assignee=q.assignee,
                                         status=q.status, cursor=q.cursor, limit=q.limit, sla=q.sla)
    return TicketPage(items=[TicketSummary.of(t) for t in items], next_cursor=cursor)


@route("/tickets/stats", "GET", op="tickets.stats", tag=TAG, query=TicketStatsQuery, response=TicketStatsView,
       errors=(422,),
       summary="Ticket numbers for HQ per store, region, type or channel over up to 92 business days: volume, "
               "first-response median and p90, SLA met rates, satisfaction (from day rollups, not the tickets)")
def ticket_stats(call: Call) -> TicketStatsView:
    # The literal path wins over /tickets/{ticket_id} (API Gateway and Chalice's local matcher both try concrete
    # segments first), so GET of a ticket whose id is "stats" would land here: ticket ids are chosen by clients.
    q: TicketStatsQuery = call.query
    groups = ticket_stats_service.stats(q.from_, q.to, q.group_by, call.principal, bootstrap.tickets())
    return TicketStatsView(first_day=q.from_, last_day=q.to, group_by=q.group_by,
                           groups=[TicketGroupStats.of(g) for g in groups])


@route("/tickets/{ticket_id}", "GET", op="tickets.read", tag=TAG, response=TicketDetailAnswer, errors=(404,),
       summary="One ticket: staff see its events and tasks; its member the public replies")
def get_ticket(call: Call, ticket_id: str) -> TicketDetailAnswer:
    d = tickets.details(ticket_id, call.principal, bootstrap.tickets(), bootstrap.ledger(), bootstrap.stores())
    if d.for_member:
        return TicketDetailAnswer(MemberTicketView.of(d.ticket, d.description, d.events))
    return TicketDetailAnswer(TicketView(**TicketSummary.of(d.ticket).model_dump(), description=d.description,
                                         events=[_event(e) for e in d.events], tasks=[TaskView.of(t) for t in d.tasks]))


@route("/members/{member_id}/tickets", "GET", op="tickets.member_list", tag=TAG, query=PageQuery,
       response=MemberTicketPage, errors=(404, 422), summary="A member's tickets, newest first")
def member_tickets(call: Call, member_id: str) -> MemberTicketPage:
    q: PageQuery = call.query
    live, items, cursor = tickets.member_tickets(member_id, call.principal, bootstrap.tickets(), bootstrap.ledger(),
                                                 bootstrap.members(), bootstrap.stores(), q.cursor, q.limit)
    if call.principal.role is Role.MEMBER:
        return MemberTicketPage(member_id=live, items=[MemberTicketView.of(t) for t in items], next_cursor=cursor)
    return MemberTicketPage(member_id=live, items=[TicketSummary.of(t) for t in items], next_cursor=cursor)


@route("/tickets/{ticket_id}/actions", "POST", op="tickets.act", tag=TAG, body=ActionInput, response=ActionView,
       status=201, also=(200,), errors=(404, 409, 422),
       summary="Reply, comment, assign, transfer, hold, resume, resolve, reopen, close or rate; idempotent by "
               "action_id")
def ticket_action(call: Call, ticket_id: str) -> Reply:
    ticket, event, created = ticket_actions.act(ticket_id, call.body, call.principal, bootstrap.tickets(),
                                                bootstrap.ledger(), bootstrap.stores(), _cite, bootstrap.calendars())
    return Reply(ActionView(action_id=event.action_id, type=event.type.value, at=event.at,
                            ticket=_for(call.principal, ticket)), 201 if created else 200)


@route("/tickets/{ticket_id}/tasks", "POST", op="tickets.work", tag=TAG, body=TaskInput, response=TaskView,
       status=201, also=(200,), errors=(404, 409, 422),
       summary="Give a store a task on this ticket (the ticket resolves only when its tasks are done); "
               "idempotent by task_id")
def add_ticket_task(call: Call, ticket_id: str) -> Reply:
    task, created = ticket_actions.add_task(ticket_id, call.body, call.principal, bootstrap.tickets(),
                                            bootstrap.ledger(), bootstrap.stores())
    return Reply(TaskView.of(task), 201 if created else 200)


@route("/queues/{queue_id}", "PUT", op="queues.put", tag=TAG, body=QueueInput, response=QueueView, status=200,
       also=(201,), errors=(422,), summary="Define a region or HQ queue (store queues are implicit: store-<id>)")
def put_queue(call: Call, queue_id: str) -> Reply:
    queue, created = ticket_queues.put_queue(queue_id, call.body, call.principal, bootstrap.tickets(),
                                             bootstrap.stores())
    return Reply(QueueView(queue_id=queue.queue_id, kind=queue.kind, name=queue.name, region_id=queue.region_id),
                 201 if created else 200)


@route("/queues/{queue_id}/agents/me", "PUT", op="queues.agent", tag=TAG, body=AvailabilityInput,
       response=AgentView, errors=(404, 422), summary="Say whether I take tickets from this queue now")
def set_availability(call: Call, queue_id: str) -> AgentView:
    body: AvailabilityInput = call.body
    agent = ticket_queues.set_availability(queue_id, body.available, call.principal, bootstrap.tickets(),
                                           bootstrap.stores())
    return AgentView(queue_id=agent.queue_id, sub=agent.sub, available=agent.available, open=agent.open)


@route("/routing-rules", "PUT", op="routing.put", tag=TAG, body=RoutingRulesInput, response=RoutingRulesView,
       errors=(409, 422), summary="Replace the ordered routing rules (first match wins)")
def put_routing_rules(call: Call) -> RoutingRulesView:
    body: RoutingRulesInput = call.body
    rules, version = ticket_queues.put_rules(body.rules, body.version, call.principal, bootstrap.tickets(),
                                             bootstrap.stores())
    return RoutingRulesView(rules=rules, version=version)


@route("/routing-rules", "GET", op="routing.read", tag=TAG, response=RoutingRulesView,
       summary="The routing rules, in order, with their version")
def get_routing_rules(call: Call) -> RoutingRulesView:
    rules, version = ticket_queues.get_rules(call.principal, bootstrap.tickets())
    return RoutingRulesView(rules=rules, version=version)


@route("/stores/{store_id}/tasks", "GET", op="tasks.list", tag=TAG, query=TaskListQuery, response=TaskPage,
       errors=(404, 422), summary="A store's tasks: open, done or overdue, soonest due first")
def store_tasks(call: Call, store_id: str) -> TaskPage:
    q: TaskListQuery = call.query
    items, cursor = tasks.store_tasks(store_id, q.state, call.principal, bootstrap.tickets(), bootstrap.stores(),
                                      q.cursor, q.limit)
    return TaskPage(items=[TaskView.of(t) for t in items], next_cursor=cursor)


@route("/tasks/{task_id}/complete", "POST", op="tasks.complete", tag=TAG, body=CompleteInput, response=TaskView,
       errors=(404, 409, 422), summary="Mark a task done with its outcome (idempotent)")
def complete_task(call: Call, task_id: str) -> TaskView:
    task, _ = tasks.complete(task_id, call.body, call.principal, bootstrap.tickets(), bootstrap.stores())
    return TaskView.of(task)


@route("/tasks/{task_id}/assign", "POST", op="tasks.assign", tag=TAG, body=AssignInput, response=TaskView,
       errors=(404, 409, 422), summary="Give an open task to a person of its store")
def assign_task(call: Call, task_id: str) -> TaskView:
    return TaskView.of(tasks.assign(task_id, call.body, call.principal, bootstrap.tickets(), bootstrap.stores()))
