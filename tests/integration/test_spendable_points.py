"""What a member can spend, shown before the nightly sweep has caught up (issue 10, "Also"): the points view
and an insufficient_points refusal leave out lots past their last day. Failed before the fix (both showed 100)."""
from __future__ import annotations

import uuid
from datetime import timedelta

from chalicelib.domain import clock
from testkit.ledger import ShiftedClock, order
from testkit.support import registration


def test_unswept_expired_points_are_not_shown_as_spendable(stack, fresh_table, api, tokens, monkeypatch):
    hq = tokens.hq()
    api.put("/stores/sh-001", {"name": "s", "region_id": "east", "city": "上海", "store_type": "standard"}, hq)
    rules = {"points_per_yuan": 1, "expiry": {"mode": "months_after", "months": 1},
             "promotions": {"member_day": None, "member_day_multiplier": 1000, "birthday_month_multiplier": 1000},
             "expiring_soon_days": 30}
    assert api.put("/points/rules", rules, hq)[0] == 200
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
