"""What a member can spend, shown before the nightly sweep has caught up (issue 10, "Also"): the points view
and an insufficient_points refusal leave out lots past their last day. Failed before the fix (both showed 100)."""
from __future__ import annotations

import uuid
from datetime import timedelta

from chalicelib.domain import clock
from testkit.ledger import ShiftedClock, order, plain_one_month_rules
from testkit.support import registration


def test_unswept_expired_points_are_not_shown_as_spendable(stack, fresh_table, api, tokens, monkeypatch):
    plain_one_month_rules(api, tokens.hq())
    shifted = ShiftedClock()
    monkeypatch.setattr(clock, "now", shifted.now)
    staff = tokens.staff(stores=["sh-001"])
    member = api.post("/members", registration(), staff)[1]["member_id"]
    # Given 100 points from an order paid 25 days ago, valid one month, and 30 from one paid today
    paid = (shifted.now() - timedelta(days=25)).isoformat()
    assert api.post("/orders", order(member, amount=10_000, paid_at=paid), staff)[0] == 201
    assert api.post("/orders", order(member, amount=3_000, paid_at=shifted.now().isoformat()), staff)[0] == 201
    # When ten days pass and the nightly sweep has not run
    shifted.advance(10)
    view = api.get(f"/members/{member}/points", staff)[1]
    # Then only the 30 can be spent, and that is what the view and a refusal say
    assert (view["available"], view["owed"], view["balance"]) == (30, 0, 30)
    status, err = api.post(f"/members/{member}/points/redemptions",
                           {"redemption_id": f"r-{uuid.uuid4().hex[:6]}", "points": 50, "reason": "tea",
                            "store_id": "sh-001"}, staff)
    assert (status, err["code"], err["details"]["balance"]) == (409, "insufficient_points", 30)
