"""/orders: purchases posted by stores, POS and the online mall; refunds; a member's purchase history."""
from __future__ import annotations

from .. import bootstrap
from ..services import order_reads, posting, refunds
from .inputs import OrderInput, PageQuery, RefundInput
from .responses import OrderList, OrderReceipt, OrderView, RefundView, TierRef
from .routing import Call, Reply, route

TAG = "orders"


def _receipt(posted: posting.Posted) -> OrderReceipt:
    o = posted.order
    return OrderReceipt(
        order_id=o.order_id, member_id=o.member_id, guest=o.guest, points_earned=o.points_earned,
        debt_paid=o.debt_paid, balance=o.balance_after,
        tier_before=TierRef(tier_id=o.tier_before, name=posted.tier_name_before) if o.tier_before else None,
        tier_after=TierRef(tier_id=o.tier_after, name=posted.tier_name_after) if o.tier_after else None,
        tier_changed=o.tier_before != o.tier_after, breakdown=o.breakdown, paid_at=o.paid_at)


@route("/orders", "POST", op="orders.post", tag=TAG, body=OrderInput, response=OrderReceipt, status=201,
       also=(200,), errors=(404, 409, 422),
       summary="Post an order: points, tier and aggregates (idempotent by order_id: a replay answers 200)")
def post_order(call: Call) -> Reply:
    posted = posting.post_order(call.body, call.principal, bootstrap.members(), bootstrap.ledger(),
                                bootstrap.stores())
    return Reply(_receipt(posted), 201 if posted.created else 200)


@route("/orders/preview", "POST", op="orders.preview", tag=TAG, body=OrderInput, response=OrderReceipt,
       errors=(404, 409, 422),
       summary="What posting this order would answer (a posted order_id: its receipt, or 409 for another body); "
               "writes nothing")
def preview_order(call: Call) -> OrderReceipt:
    return _receipt(posting.preview(call.body, call.principal, bootstrap.members(), bootstrap.ledger(),
                                    bootstrap.stores()))


@route("/orders/{order_id}", "GET", op="orders.get", tag=TAG, response=OrderView, errors=(404,),
       summary="One order with its refunds so far")
def get_order(call: Call, order_id: str) -> OrderView:
    return OrderView.of(order_reads.get_order(order_id, call.principal, bootstrap.ledger(), bootstrap.stores()))


@route("/orders/{order_id}/refunds", "POST", op="orders.refund", tag=TAG, body=RefundInput, response=RefundView,
       status=201, also=(200,), errors=(404, 409, 422),
       summary="Refund all or part of an order (idempotent by refund_id); reverses its points and tier progress")
def refund_order(call: Call, order_id: str) -> Reply:
    done, created = refunds.refund(order_id, call.body, call.principal, bootstrap.ledger(), bootstrap.stores(),
                                    bootstrap.coupons())
    return Reply(RefundView.model_validate(done.model_dump()), 201 if created else 200)


@route("/members/{member_id}/orders", "GET", op="orders.history", tag=TAG, query=PageQuery, response=OrderList,
       errors=(404, 422), summary="The member's purchase history, newest first")
def member_orders(call: Call, member_id: str) -> OrderList:
    orders, cursor = order_reads.member_orders(member_id, call.principal, bootstrap.ledger(), call.query.cursor,
                                               call.query.limit)
    return OrderList(items=[OrderView.of(o) for o in orders], next_cursor=cursor)
