"""/analytics/rfm and /rfm-settings through the API: the night's distribution per store, region and brand with
its change since the night before, the churn list of a store, and the settings' versions."""
from __future__ import annotations

from datetime import datetime, time, timedelta

import pytest

from chalicelib.domain import clock
from functions.rfm import run_locally
from testkit.support import create_stores, registration

SH = clock.BUSINESS_TZ


class Clock:
    def __init__(self, at: datetime) -> None:
        self.at = at

    def now(self) -> datetime:
        return self.at


@pytest.fixture
def brand(stack, fresh_table, monkeypatch):  # noqa: ANN001
    create_stores()
    shifted = Clock(datetime.combine(datetime.now(SH).date(), time(10, 0), SH))
    monkeypatch.setattr(clock, "now", shifted.now)
    return shifted


def _buyer(api, staff, home: str, days_ago: list[int], amount: int = 5_000) -> str:  # noqa: ANN001
    status, body = api.post("/members", registration(store_id=home), staff)
    assert status == 201
    for n, d in enumerate(days_ago):
        paid = clock.now() - timedelta(days=d)
        status, answer = api.post("/orders", {
            "order_id": f"o-{body['member_id']}-{n}", "member_id": body["member_id"], "store_id": home,
            "channel": "store", "paid_at": paid.isoformat(), "amount": amount,
            "items": [{"sku": "s", "name": "茶", "category": "tea", "qty": 1, "amount": amount}]}, staff)
        assert status == 201, answer
    return body["member_id"]


def test_distribution_change_and_churn_list(brand, api, tokens):
    staff = tokens.staff(stores=["sh-001", "sh-002", "gz-001"])
    hq = tokens.hq()
    assert api.get("/analytics/rfm", hq)[1]["code"] == "no_segmentation"
    # A regular who came every 5 days and has now been away 40: the churn list's first name.
    regular = _buyer(api, staff, "sh-001", [80, 75, 70, 65, 60, 55, 50, 45, 40], 30_000)
    fresh = _buyer(api, staff, "sh-001", [2])
    south = _buyer(api, staff, "gz-001", [3, 10])
    first = run_locally({"segments": 2}, workers=2)
    status, store = api.get("/analytics/rfm?store_id=sh-001", hq)
    assert status == 200, store
    assert store["as_of"] == first["as_of"] and store["level"] == "store" and store["id"] == "sh-001"
    assert store["members"] == 2 and sum(store["segments"].values()) == 2
    assert store["change"] is None  # no night before
    assert [c["member_id"] for c in store["churn"]] == [regular]
    assert store["churn"][0]["usual_gap_days"] == "5" and store["churn"][0]["days_since_purchase"] == 39
    status, view = api.get(f"/members/{regular}", hq)
    assert view["rfm"]["churn_warning"] == {"usual_gap_days": "5", "days_since_purchase": 39}
    assert view["rfm_segment"] == view["rfm"]["segment"]
    region = api.get("/analytics/rfm?region_id=east", hq)[1]
    assert region["members"] == 2 and region["churn"] is None
    whole = api.get("/analytics/rfm", hq)[1]
    assert whole["level"] == "brand" and whole["members"] == 3
    # The next night one more member in sh-001: the change shows it.
    _buyer(api, staff, "sh-001", [1])
    brand.at += timedelta(days=1)
    run_locally({"segments": 2}, workers=2)
    store2 = api.get("/analytics/rfm?store_id=sh-001", hq)[1]
    assert store2["members"] == 3 and sum(store2["change"].values()) == 1
    older = api.get(f"/analytics/rfm?store_id=sh-001&as_of={first['as_of']}", hq)[1]
    assert older["members"] == 2
    del fresh, south


def test_repurchase_rate_counts_home_members_with_two_orders_this_month(brand, api, tokens):
    staff = tokens.staff(stores=["sh-001"])
    brand.at = brand.at.replace(day=20)  # orders 1 and 2 days back stay in this month
    _buyer(api, staff, "sh-001", [1, 2])
    _buyer(api, staff, "sh-001", [1])
    _buyer(api, staff, "sh-001", [1, 2, 3])
    run_locally({"segments": 1}, workers=1)
    got = api.get("/analytics/rfm?store_id=sh-001", tokens.hq())[1]["repurchase"]
    assert got == {"buyers": 3, "repeat_buyers": 2, "rate_permille": 666}


def test_settings_round_trip_with_versions(brand, api, tokens):
    hq = tokens.hq()
    status, got = api.get("/rfm-settings", hq)
    assert status == 200 and got["version"] == 0 and got["mode"] == "mean"
    status, saved = api.put("/rfm-settings", {"mode": "quintile", "churn_factor_permille": 2500, "version": 0}, hq)
    assert status == 200 and saved["version"] == 1 and saved["mode"] == "quintile"
    status, stale = api.put("/rfm-settings", {"mode": "mean", "version": 0}, hq)
    assert status == 409 and stale["code"] == "version_conflict"
    status, bad = api.put("/rfm-settings", {"mode": "fixed"}, hq)
    assert status == 422
    assert api.get("/rfm-settings", hq)[1]["mode"] == "quintile"


def test_rule_tags_are_recomputed_nightly_and_shown_with_staff_tags(brand, api, tokens):
    hq, staff = tokens.hq(), tokens.staff(stores=["sh-001"])
    regular = _buyer(api, staff, "sh-001", [3, 9, 15])  # all tea, three orders in the window
    once = _buyer(api, staff, "sh-001", [20])
    rules = [{"tag": "健康饮食", "all": [{"field": "category_share", "category": "tea", "op": "gte", "value": 600}]},
             {"tag": "常客", "all": [{"field": "frequency", "op": "gte", "value": 3}]}]
    status, saved = api.put("/tag-rules", {"rules": rules}, hq)
    assert status == 200, saved
    assert api.post(f"/members/{regular}/tags", {"tag": "爱喝热饮"}, staff)[0] == 200
    run_locally({"segments": 1}, workers=1)
    view = api.get(f"/members/{regular}", hq)[1]
    assert view["rfm"]["auto_tags"] == sorted(["健康饮食", "常客"]) and view["rfm"]["manual_tags"] == ["爱喝热饮"]
    assert view["tags"] == sorted(["健康饮食", "常客", "爱喝热饮"])
    assert api.get(f"/members/{once}", hq)[1]["rfm"]["auto_tags"] == ["健康饮食"]
    # New rules apply from the next night on; a tag no rule gives any more is gone.
    assert api.put("/tag-rules", {"rules": rules[1:]}, hq)[0] == 200
    brand.at += timedelta(days=1)
    run_locally({"segments": 1}, workers=1)
    assert api.get(f"/members/{regular}", hq)[1]["rfm"]["auto_tags"] == ["常客"]
    assert api.get(f"/members/{once}", hq)[1]["rfm"]["auto_tags"] == []


def test_region_and_brand_distributions_are_refused_outside_scope(brand, api, tokens):
    staff = tokens.staff(stores=["sh-001"])
    _buyer(api, staff, "sh-001", [2])
    run_locally({"segments": 1}, workers=1)
    east, south = tokens.staff("region_manager", region="east"), tokens.staff("region_manager", region="south")
    manager = tokens.staff("store_manager", stores=["sh-001"])
    assert api.get("/analytics/rfm?region_id=east", east)[0] == 200
    assert api.get("/analytics/rfm?store_id=sh-002", east)[0] == 200  # a store of their region
    for token, query in ((south, "region_id=east"), (south, "store_id=sh-001"), (east, ""), (manager, ""),
                         (manager, "region_id=east"), (staff, "region_id=east"), (staff, "store_id=gz-001")):
        status, body = api.get(f"/analytics/rfm?{query}", token)
        assert (status, body["code"]) == (403, "store_out_of_scope"), (query, body)
    member = tokens.member(None)
    assert api.get("/analytics/rfm?store_id=sh-001", member)[0] == 403
