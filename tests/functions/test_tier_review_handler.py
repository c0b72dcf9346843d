"""The monthly tier review: one level down when the rolling year no longer holds the tier, never twice
for the same day, confirmed otherwise, and a warning before a drop."""
from __future__ import annotations

from chalicelib import bootstrap
from chalicelib.cli import _LocalContext
from chalicelib.domain import clock
from chalicelib.domain.points import add_months
from functions.tier_review import handler
from testkit.ledger import order
from testkit.support import registration


def _setup(api, tokens, amount):
    staff = tokens.staff(stores=["sh-001"])
    api.put("/stores/sh-001", {"name": "s", "region_id": "east", "city": "上海", "store_type": "standard"},
            tokens.hq())
    member = api.post("/members", registration(), staff)[1]["member_id"]
    api.post("/orders", order(member, amount=amount, paid_at=clock.now().replace(day=1, hour=12).isoformat()
                              if clock.now().day != 1 else clock.now().isoformat()), staff)
    return member


def _tier(api, tokens, member):
    return api.get(f"/members/{member}/tier", tokens.hq())[1]["tier"]["tier_id"]


def _run(day):
    return handler({"date": day.isoformat()}, _LocalContext("tier-review"))


def test_review_confirms_then_drops_one_level_once(stack, fresh_table, api, tokens):
    gold = _setup(api, tokens, 350_000)
    assert _tier(api, tokens, gold) == "gold"
    today = clock.business_day(clock.now())
    assert _run(today)["confirmed"] == 1 and _tier(api, tokens, gold) == "gold"

    a_year_on = add_months(today.replace(day=1), 12)  # the order's month has left the window
    assert _run(a_year_on)["downgraded"] == 1
    assert _tier(api, tokens, gold) == "silver"  # one level at a time, not straight to the bottom
    assert _run(a_year_on)["downgraded"] == 0  # re-running the same day drops nobody twice
    assert _tier(api, tokens, gold) == "silver"
    _run(add_months(a_year_on, 1))
    assert _tier(api, tokens, gold) == "regular"
    assert _run(add_months(a_year_on, 2))["reviewed"] == 0  # back at the lowest tier: out of the index


def test_member_about_to_drop_is_warned_with_the_amount_missing(stack, fresh_table, api, tokens):
    silver = _setup(api, tokens, 120_000)
    eleven_on = add_months(clock.business_day(clock.now()).replace(day=1), 11)  # last month the order counts
    result = _run(eleven_on)
    assert result["confirmed"] == 1 and result["warned"] == 1
    on = add_months(eleven_on, 1)
    fact = bootstrap.ledger().get_document("fact", silver, f"tier_will_downgrade#{on}")
    assert fact["type"] == "tier_will_downgrade" and fact["missing"] == 100_000 and fact["to"] == "regular"
