"""Refunds, cancelled redemptions and expiry in either order: the documented rule is that points that expired
are forgiven, spent points become owed, and the order of events does not change the result
(docs/architecture.md "Refunds", docs/decisions.md "Refund order of reversal").

Each defect of issue 10 #2 (all three fixed) has a control, the order of events that always worked, and a
test of the other order, which must end the same. The ledger state machine (test_ledger_state_machine.py)
reaches these sequences at random; these pin them.

Every scenario: an order of ¥100 (100 points) paid 25 days ago at sh-001, points valid one month, 40 of
them redeemed; then time moves on 10 days, so the lot is past its last day.
"""
from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import pytest

from chalicelib.domain import clock
from functions.points_expiry import handler as expiry_job
from testkit.ledger import LambdaContext, ShiftedClock, order, plain_one_month_rules
from testkit.support import registration


class Desk:
    """One member at the counter of sh-001, through the API, on a clock the test moves."""

    def __init__(self, api: Any, tokens: Any, shifted: ShiftedClock) -> None:
        self.api, self.shifted = api, shifted
        self.staff = tokens.staff(stores=["sh-001"])
        status, body = api.post("/members", registration(), self.staff)
        assert status == 201, body
        self.member_id = body["member_id"]

    def buy(self, days_ago: int = 25) -> str:
        body = order(self.member_id, amount=10_000, paid_at=(self.shifted.now() - timedelta(days=days_ago)).isoformat())
        status, receipt = self.api.post("/orders", body, self.staff)
        assert (status, receipt["points_earned"]) == (201, 100), receipt
        return body["order_id"]

    def redeem(self, points: int = 40) -> str:
        rid = f"r-{uuid.uuid4().hex[:8]}"
        status, answer = self.api.post(f"/members/{self.member_id}/points/redemptions",
                                       {"redemption_id": rid, "points": points, "reason": "tea", "store_id": "sh-001"},
                                       self.staff)
        assert status == 201, answer
        return rid

    def cancel(self, rid: str) -> dict[str, Any]:
        status, answer = self.api.post(f"/members/{self.member_id}/points/redemptions/{rid}/cancel", None, self.staff)
        assert status == 200, answer
        return answer

    def refund_all(self, order_id: str) -> dict[str, Any]:
        status, answer = self.api.post(f"/orders/{order_id}/refunds",
                                       {"refund_id": f"f-{uuid.uuid4().hex[:8]}", "amount": 10_000}, self.staff)
        assert status == 201, answer
        return answer

    def later(self, days: int = 10, nightly_job: bool = True) -> None:
        self.shifted.advance(days)
        if nightly_job:
            expiry_job({"date": self.shifted.today().isoformat()}, LambdaContext("points-expiry"))

    def points(self) -> tuple[int, int, int]:
        """(available, owed, balance)"""
        status, view = self.api.get(f"/members/{self.member_id}/points", self.staff)
        assert status == 200, view
        return view["available"], view["owed"], view["balance"]


@pytest.fixture
def desk(stack, fresh_table, api, tokens, monkeypatch):  # noqa: ANN001
    plain_one_month_rules(api, tokens.hq())
    shifted = ShiftedClock()
    monkeypatch.setattr(clock, "now", shifted.now)
    return Desk(api, tokens, shifted)


# ---- 2a: refund of an expired lot before the nightly job has swept it ---------------------------------
def test_refund_after_the_sweep_forgives_the_expired_points_and_owes_the_spent_ones(desk):
    bought = desk.buy()
    desk.redeem(40)
    desk.later(10)  # the nightly job expires the 60 left
    answer = desk.refund_all(bought)
    assert (answer["points_reversed"], answer["points_forgiven"], answer["points_owed"]) == (100, 60, 40), answer
    assert desk.points() == (0, 40, -40)


def test_refund_before_the_sweep_ends_as_after_it(desk):
    """Issue 10 #2a (fixed): the expired, unswept 60 were owed."""
    bought = desk.buy()
    desk.redeem(40)
    desk.later(10, nightly_job=False)  # past its last day; the job has not run yet
    answer = desk.refund_all(bought)
    assert (answer["points_reversed"], answer["points_owed"]) == (100, 40), answer  # only the spent 40 are owed
    assert answer["points_removed"] + answer["points_forgiven"] == 60, answer
    desk.later(0)  # the nightly job
    assert desk.points() == (0, 40, -40)


# ---- 2b: a redemption cancelled after its lot expired, then the order refunded ----------------------------
def test_cancel_before_expiry_then_refund_forgives_everything(desk):
    bought = desk.buy()
    rid = desk.redeem(40)
    assert desk.cancel(rid)["recredited"] == 40
    desk.later(10)  # all 100 expire
    answer = desk.refund_all(bought)
    assert (answer["points_forgiven"], answer["points_owed"]) == (100, 0), answer
    assert desk.points() == (0, 0, 0)


def test_cancel_after_expiry_then_refund_ends_as_before_it(desk):
    """Issue 10 #2b (fixed): the refund owed the 40 that the cancel found expired."""
    bought = desk.buy()
    rid = desk.redeem(40)
    desk.later(10)  # the 60 left expire
    cancelled = desk.cancel(rid)
    assert (cancelled["recredited"], cancelled["expired"]) == (0, 40), cancelled  # these 40 expired too
    answer = desk.refund_all(bought)
    assert (answer["points_forgiven"], answer["points_owed"]) == (100, 0), answer
    assert desk.points() == (0, 0, 0)


# ---- 2c: a refund made the spent points owed, then the redemption is cancelled ---------------------------
def test_cancel_then_refund_leaves_nothing(desk):
    bought = desk.buy(days_ago=1)
    rid = desk.redeem(40)
    desk.cancel(rid)
    answer = desk.refund_all(bought)
    assert (answer["points_removed"], answer["points_owed"]) == (100, 0), answer
    assert desk.points() == (0, 0, 0)
    desk.later(40)  # nothing left to expire
    assert desk.points() == (0, 0, 0)


def test_refund_then_cancel_ends_as_cancel_then_refund(desk):
    """Issue 10 #2c (fixed): the 40 went back into the refunded order's lot and the debt stayed."""
    bought = desk.buy(days_ago=1)
    rid = desk.redeem(40)
    answer = desk.refund_all(bought)
    assert (answer["points_removed"], answer["points_owed"]) == (60, 40), answer
    desk.cancel(rid)  # the 40 come back: they pay the debt the refund made of them
    assert desk.points() == (0, 0, 0)
    desk.later(40)  # ... so nothing is left in the refunded lot to expire into a debt
    assert desk.points() == (0, 0, 0)


def test_cancel_then_refund_then_an_order_keeps_the_new_points(desk):
    bought = desk.buy(days_ago=1)
    rid = desk.redeem(40)
    desk.cancel(rid)
    desk.refund_all(bought)
    desk.buy(days_ago=0)  # 100 new points, no debt to pay
    assert desk.points() == (100, 0, 100)


def test_refund_then_an_order_pays_the_debt_then_cancel_ends_the_same(desk):
    """The debt the refund made was paid by the next order before the redemption was cancelled: the cancel
    gives back what paid it, and never leaves a negative debt."""
    bought = desk.buy(days_ago=1)
    rid = desk.redeem(40)
    desk.refund_all(bought)  # owed 40
    desk.buy(days_ago=0)  # 100 points: 40 pay the debt, 60 credited
    assert desk.points() == (60, 0, 60)
    desk.cancel(rid)
    assert desk.points() == (100, 0, 100)
