"""/sla-policies and /notifications: HQ's targets for tickets, and what the SLA sweep told each person."""
from __future__ import annotations

from .. import bootstrap
from ..services import notifications, sla
from .routing import Call, route
from .ticket_models import (
    MarkedView,
    NotificationPage,
    NotificationsQuery,
    NotificationView,
    ReadInput,
    SlaPolicyInput,
    SlaPolicyView,
)

TAG = "tickets"


@route("/sla-policies", "PUT", op="sla.put", tag=TAG, body=SlaPolicyInput, response=SlaPolicyView, errors=(409, 422),
       summary="Replace the SLA policy: per priority (and type) a first-response and a resolution target, in "
               "business or wall time; tickets already open keep theirs")
def put_sla_policy(call: Call) -> SlaPolicyView:
    saved = sla.put_policy(call.body, call.principal, bootstrap.tickets())
    return SlaPolicyView.model_validate(saved.model_dump())


@route("/sla-policies", "GET", op="sla.read", tag=TAG, response=SlaPolicyView,
       summary="The SLA policy now (version 0: never set, the defaults apply)")
def get_sla_policy(call: Call) -> SlaPolicyView:
    return SlaPolicyView.model_validate(sla.get_policy(call.principal, bootstrap.tickets()).model_dump())


@route("/notifications/me", "GET", op="notifications.read", tag=TAG, query=NotificationsQuery,
       response=NotificationPage, errors=(422,),
       summary="What was addressed to me or to a role and scope I hold, newest first, with my read state")
def my_notifications(call: Call) -> NotificationPage:
    q: NotificationsQuery = call.query
    found = notifications.mine(call.principal, bootstrap.tickets(), q.limit)
    return NotificationPage(items=[NotificationView(notification_id=n.notification_id, recipient=n.recipient,
                                                    ticket_id=n.ticket_id, step=n.step, due_at=n.due_at,
                                                    created_at=n.created_at, subject=n.subject, store_id=n.store_id,
                                                    queue_id=n.queue_id, priority=n.priority, read=read)
                                   for n, read in found])


@route("/notifications/me/read", "POST", op="notifications.mark", tag=TAG, body=ReadInput, response=MarkedView,
       errors=(422,), summary="Mark notifications read (for me; idempotent)")
def mark_read(call: Call) -> MarkedView:
    body: ReadInput = call.body
    notifications.mark_read(call.principal, body.notification_ids, bootstrap.tickets())
    return MarkedView(marked=len(set(body.notification_ids)))
