"""Reading orders: one order with its refunds so far, and a member's purchase history."""
from __future__ import annotations

from ..domain.access import Principal
from ..domain.errors import NotFound
from ..domain.orders import Order
from ..domain.policy import Scope, StoreRef, authorize, scope_of
from .ledger_common import live_member
from .ports import LedgerRepository, StoreRepository


def get_order(order_id: str, actor: Principal, ledger: LedgerRepository, stores: StoreRepository) -> Order:
    order = ledger.get_order(order_id, with_breakdown=True)
    if order is None:
        raise NotFound("order not found", code="order_not_found", details={"order_id": order_id})
    scope = scope_of("orders.get", actor)
    if scope is Scope.SELF:
        if order.member_id is None:  # a guest order is nobody's yet: to a member it does not exist
            raise NotFound("order not found", code="order_not_found", details={"order_id": order_id})
        owner = order.member_id
        if owner != actor.member_id:  # an order of a duplicate that was merged into this member is theirs
            owner = live_member(ledger, owner)[1].member_id
        authorize("orders.get", actor, member_id=owner)
    else:
        authorize("orders.get", actor, store=lambda: stores.get(order.store_id) or StoreRef(order.store_id))
    return order


def member_orders(member_id: str, actor: Principal, ledger: LedgerRepository, cursor: str | None,
                  limit: int) -> tuple[list[Order], str | None]:
    """The purchase history of the live member behind `member_id` (an old, merged id reads the survivor's)."""
    authorize("orders.history", actor, member_id=member_id)
    _, state = live_member(ledger, member_id)
    return ledger.member_orders(state.member_id, cursor, limit)
