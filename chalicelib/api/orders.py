"""/orders: purchases posted by stores, POS and the online mall; refunds."""
from __future__ import annotations

from chalice import Blueprint

from .. import bootstrap
from ..domain.access import Role, require_self, require_store
from ..domain.errors import NotFound
from ..domain.orders import Order, OrderInput, RefundInput
from ..services import orders as svc
from ..services.ledger_common import live_member
from .ledger_schemas import OrderList, OrderReceipt, OrderView, RefundView, TierRef
from .routing import Call, Reply, route
from .schemas import PageQuery

bp = Blueprint(__name__)
TAG = "orders"
POSTERS = frozenset({Role.STAFF, Role.STORE_MANAGER, Role.INTEGRATION, Role.HQ})
REFUNDERS = POSTERS
HISTORY_READERS = frozenset({Role.MEMBER, Role.STAFF, Role.STORE_MANAGER, Role.HQ})
ORDER_READERS = frozenset({Role.MEMBER, Role.STAFF, Role.STORE_MANAGER, Role.INTEGRATION, Role.HQ})


def _receipt(posted: svc.Posted) -> OrderReceipt:
    o = posted.order
    return OrderReceipt(
        order_id=o.order_id, member_id=o.member_id, guest=o.guest, points_earned=o.points_earned,
        debt_paid=o.debt_paid, balance=o.balance_after,
        tier_before=TierRef(tier_id=o.tier_before, name=posted.tier_name_before) if o.tier_before else None,
        tier_after=TierRef(tier_id=o.tier_after, name=posted.tier_name_after) if o.tier_after else None,
        tier_changed=o.tier_before != o.tier_after, breakdown=o.breakdown, paid_at=o.paid_at)


def _view(o: Order) -> OrderView:
    return OrderView(**o.model_dump(include=set(OrderView.model_fields)))


@route(bp, "/orders", "POST", tag=TAG, roles=POSTERS, body=OrderInput, response=OrderReceipt, status=201,
       also=(200,), errors=(404, 409, 422),
       summary="Post an order: points, tier and aggregates (idempotent by order_id: a replay answers 200)")
def post_order(call: Call) -> Reply:
    posted = svc.post_order(call.body, call.principal, bootstrap.members(), bootstrap.ledger(), bootstrap.stores())
    return Reply(_receipt(posted), 201 if posted.created else 200)


@route(bp, "/orders/preview", "POST", tag=TAG, roles=POSTERS, body=OrderInput, response=OrderReceipt,
       errors=(404, 422), summary="What posting this order would answer; writes nothing")
def preview_order(call: Call) -> OrderReceipt:
    return _receipt(svc.preview(call.body, call.principal, bootstrap.members(), bootstrap.ledger(), bootstrap.stores()))


@route(bp, "/orders/{order_id}", "GET", tag=TAG, roles=ORDER_READERS, response=OrderView, errors=(404,),
       summary="One order with its refunds so far")
def get_order(call: Call, order_id: str) -> OrderView:
    order = bootstrap.ledger().get_order(order_id, with_breakdown=True)
    if order is None:
        raise NotFound("order not found", code="order_not_found", details={"order_id": order_id})
    actor = call.principal
    if actor.role is Role.MEMBER:
        if order.member_id is None:
            raise NotFound("order not found", code="order_not_found", details={"order_id": order_id})
        owner = order.member_id
        if owner != actor.member_id:  # an order of a duplicate that was merged into this member is theirs
            owner = live_member(bootstrap.ledger(), owner)[1].member_id
        require_self(actor, owner)
    elif actor.role is Role.INTEGRATION:
        require_store(actor, order.store_id, None)
    return _view(order)


@route(bp, "/orders/{order_id}/refunds", "POST", tag=TAG, roles=REFUNDERS, body=RefundInput, response=RefundView,
       status=201, also=(200,), errors=(404, 409, 422),
       summary="Refund all or part of an order (idempotent by refund_id); reverses its points and tier progress")
def refund_order(call: Call, order_id: str) -> Reply:
    answer, created = svc.refund(order_id, call.body, call.principal, bootstrap.ledger())
    return Reply(RefundView.model_validate(answer), 201 if created else 200)


@route(bp, "/members/{member_id}/orders", "GET", tag=TAG, roles=HISTORY_READERS, query=PageQuery,
       response=OrderList, errors=(404, 422), summary="The member's purchase history, newest first")
def member_orders(call: Call, member_id: str) -> OrderList:
    require_self(call.principal, member_id)
    _, state = live_member(bootstrap.ledger(), member_id)
    orders, cursor = bootstrap.ledger().member_orders(state.member_id, call.query.cursor, call.query.limit)
    return OrderList(items=[_view(o) for o in orders], next_cursor=cursor)
