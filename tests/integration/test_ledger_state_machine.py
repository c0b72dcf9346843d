"""Any sequence of earn / redeem / cancel / refund / expire / duplicate retry, run against DynamoDB Local,
keeps balance == sum of lot remainders - owed == sum of the ledger, never lets a redemption take the
balance below zero, and never credits twice."""
from __future__ import annotations

import uuid
from datetime import timedelta

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, initialize, invariant, rule, run_state_machine_as_test

from chalicelib import bootstrap
from chalicelib.domain import clock
from chalicelib.domain.access import Principal, Role
from chalicelib.domain.errors import Conflict, Invalid
from chalicelib.domain.members import Registration
from chalicelib.domain.orders import OrderInput, RefundInput
from chalicelib.domain.program import ExpiryRule, PointsRules, Promotions
from chalicelib.domain.stores import StoreInput
from chalicelib.services import members, orders, points, program, stores
from testkit.audit import audit_member
from testkit.support import unique_phone

STAFF = Principal(sub="pos-1", role=Role.STAFF, store_ids=frozenset({"sh-001"}))
HQ = Principal(sub="hq", role=Role.HQ)


class Ledger(RuleBasedStateMachine):
    posted = Bundle("posted")
    redeemed = Bundle("redeemed")

    @initialize()
    def new_member(self):
        self.member, _ = members.register(
            Registration(phone=unique_phone(), channel="store", store_id="sh-001", consent={"marketing": False}),
            STAFF, bootstrap.members(), bootstrap.stores())
        self.mid = self.member.member_id
        self.days_ahead = 0
        self.receipts: dict[str, int] = {}

    def _order(self, order_id: str, amount: int, days_ago: int) -> OrderInput:
        paid = clock.now() - timedelta(days=days_ago, minutes=1)
        return OrderInput(order_id=order_id, member_id=self.mid, store_id="sh-001", channel="store",
                          paid_at=paid, amount=amount,
                          items=[{"sku": "a", "name": "tea", "category": "tea", "qty": 1, "amount": amount}])

    @rule(target=posted, amount=st.integers(1, 60_000), days_ago=st.integers(0, 60))
    def earn(self, amount, days_ago):
        cmd = self._order(f"o-{uuid.uuid4().hex[:10]}", amount, days_ago)
        result = orders.post_order(cmd, STAFF, bootstrap.members(), bootstrap.ledger(), bootstrap.stores())
        assert result.created
        self.receipts[cmd.order_id] = result.order.points_earned
        return cmd

    @rule(cmd=posted)
    def retry_order(self, cmd):
        result = orders.post_order(cmd, STAFF, bootstrap.members(), bootstrap.ledger(), bootstrap.stores())
        assert not result.created and result.order.points_earned == self.receipts[cmd.order_id]

    @rule(target=redeemed, pts=st.integers(1, 400))
    def redeem(self, pts):
        before = audit_member(self.mid)
        rid = f"r-{uuid.uuid4().hex[:10]}"
        try:
            answer, created = points.redeem(self.mid, rid, pts, "test", "sh-001", STAFF, bootstrap.ledger(),
                                            bootstrap.stores())
        except Conflict as refused:
            assert refused.code == "insufficient_points"
            assert audit_member(self.mid) == before  # a refusal changes nothing
            return None
        assert created and answer["balance"] >= 0
        return rid

    @rule(rid=redeemed)
    def cancel(self, rid):
        if rid is not None:
            points.cancel_redemption(self.mid, rid, STAFF, bootstrap.ledger())

    @rule(cmd=posted, share=st.integers(1, 100))
    def refund(self, cmd, share):
        order = bootstrap.ledger().get_order(cmd.order_id)
        left = order.amount - order.refunded_amount
        amount = min(left, max(1, order.amount * share // 100))
        if left == 0:
            return
        try:
            orders.refund(cmd.order_id, RefundInput(refund_id=f"f-{uuid.uuid4().hex[:8]}", amount=amount), STAFF,
                          bootstrap.ledger())
        except Invalid as err:
            raise AssertionError(f"refund of {amount} of {left} refused: {err.code}") from None

    @rule(days=st.integers(1, 45))
    def expire(self, days):
        self.days_ahead += days
        points.expire_due(bootstrap.ledger(), clock.business_day(clock.now()) + timedelta(days=self.days_ahead))

    @invariant()
    def books_balance(self):
        if hasattr(self, "mid"):
            audit_member(self.mid)


def test_ledger_invariants_hold_for_any_sequence(stack, fresh_table):
    stores.put_store("sh-001", StoreInput(name="s", region_id="east", city="上海", store_type="standard"), HQ,
                     bootstrap.stores())
    # short-lived points so that expiry takes part; no promotions so amounts stay simple
    program.put_rules(PointsRules(expiry=ExpiryRule(mode="months_after", months=1),
                                  promotions=Promotions(member_day=None, birthday_month_multiplier=1000)), HQ,
                      bootstrap.ledger())
    run_state_machine_as_test(Ledger, settings=settings(
        max_examples=15, stateful_step_count=25, deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much]))
