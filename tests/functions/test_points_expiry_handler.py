"""The daily expiry job: lots past their last valid day expire through the index, exactly once."""
from __future__ import annotations

from datetime import timedelta

from chalicelib import bootstrap
from chalicelib.cli import _LocalContext
from chalicelib.domain import clock
from chalicelib.services import expiry as points_service
from functions.points_expiry import handler
from testkit.audit import audit_member
from testkit.ledger import one_month_expiry, order, plain_day
from testkit.support import registration


def test_expired_lots_leave_the_balance_once_and_facts_are_written(stack, fresh_table, api, tokens):
    hq = tokens.hq()
    rules = one_month_expiry(api, hq)
    staff = tokens.staff(stores=["sh-001"])
    member = api.post("/members", registration(), staff)[1]["member_id"]
    api.post("/orders", order(member, amount=10_000, paid_at=plain_day(45)), staff)  # expired ~2 weeks ago
    fresh = order(member, amount=5_000, paid_at=plain_day(1))  # expires in ~a month
    api.post("/orders", fresh, staff)
    # before the job: the view shows what can be spent; the stored state still holds the lapsed 100
    assert api.get(f"/members/{member}/points", hq)[1]["balance"] == 50
    assert bootstrap.ledger().load_member(member)[1].available == 150

    today = clock.business_day(clock.now())
    result = handler({"date": today.isoformat()}, _LocalContext("points-expiry"))
    assert result["points_expired"] == 100 and result["lots_expired"] == 1
    view = api.get(f"/members/{member}/points", hq)[1]
    assert view["balance"] == 50 and view["ledger"]["items"][0]["kind"] == "expiry"
    assert bootstrap.ledger().load_member(member)[1].available == 50
    assert handler({"date": today.isoformat()}, _LocalContext("points-expiry"))["points_expired"] == 0  # once

    # the remaining lot is reported as expiring soon, and a fact is written for the day it will lapse
    lot_day = view["expiring_soon"][0]["date"]
    assert view["expiring_soon"] == [{"date": lot_day, "points": 50}]
    days_before = (clock.business_day(clock.now()).fromisoformat(lot_day) - today).days
    rules["expiring_soon_days"] = days_before
    api.put("/points/rules", rules, hq)
    assert handler({"date": today.isoformat()}, _LocalContext("points-expiry"))["expiring_soon_facts"] == 1
    fact = bootstrap.ledger().get_document("fact", member, f"points_expiring#{lot_day}")
    assert fact["points"] == 50 and fact["type"] == "points_expiring"


def test_refund_after_expiry_does_not_claw_back_expired_points(stack, fresh_table, api, tokens):
    hq = tokens.hq()
    one_month_expiry(api, hq)
    staff = tokens.staff(stores=["sh-001"])
    member = api.post("/members", registration(), staff)[1]["member_id"]
    old = order(member, amount=10_000, paid_at=plain_day(45))
    api.post("/orders", old, staff)
    handler({"date": (clock.business_day(clock.now()) + timedelta(days=0)).isoformat()}, _LocalContext("x"))
    _, refund = api.post(f"/orders/{old['order_id']}/refunds", {"refund_id": "r", "amount": 10_000}, staff)
    assert (refund["points_forgiven"], refund["points_owed"], refund["balance"]) == (100, 0, 0)


def test_an_erased_members_points_still_expire_and_do_not_stop_the_job(stack, fresh_table, api, tokens):
    hq, staff = tokens.hq(), tokens.staff(stores=["sh-001"])
    one_month_expiry(api, hq)
    erased = api.post("/members", registration(), staff)[1]["member_id"]
    kept = api.post("/members", registration(), staff)[1]["member_id"]
    for member in (erased, kept):
        api.post("/orders", order(member, amount=10_000, paid_at=plain_day(45)), staff)
    assert api.delete(f"/members/{erased}", hq)[0] == 200

    today = clock.business_day(clock.now()).isoformat()
    result = handler({"date": today}, _LocalContext("points-expiry"))
    assert (result["lots_expired"], result["points_expired"]) == (2, 200)
    _, state = bootstrap.ledger().load_member(erased)
    assert (state.available, state.balance) == (0, 0)
    audit_member(erased)
    audit_member(kept)


def test_a_member_with_more_due_lots_than_one_transaction_holds(stack, fresh_table, api, tokens, monkeypatch):
    hq, staff = tokens.hq(), tokens.staff(stores=["sh-001"])
    one_month_expiry(api, hq)
    member = api.post("/members", registration(), staff)[1]["member_id"]
    for days_ago in (50, 48, 46, 44, 42):  # five lots, due on five different days
        api.post("/orders", order(member, amount=1_000, paid_at=plain_day(days_ago)), staff)
    api.post("/orders", order(member, amount=7_000, paid_at=plain_day(1)), staff)
    monkeypatch.setattr(points_service, "EXPIRE_BATCH", 2)

    today = clock.business_day(clock.now()).isoformat()
    result = handler({"date": today}, _LocalContext("points-expiry"))
    assert (result["lots_expired"], result["points_expired"]) == (5, 50)
    view = api.get(f"/members/{member}/points", hq)[1]
    assert view["balance"] == 70
    expiries = [e for e in view["ledger"]["items"] if e["kind"] == "expiry"]
    assert len(expiries) == 5 and sorted(e["balance_after"] for e in expiries) == [70, 80, 90, 100, 110]
    report = audit_member(member)
    assert report["lots"] == 6
    _, state = bootstrap.ledger().load_member(member)  # the bound moved up to the one lot still open
    still_open = [e.lot for e in bootstrap.ledger().all_entries(member) if e.lot and e.lot.remaining]
    assert [lot.at for lot in still_open] == [state.open_lots_from]
