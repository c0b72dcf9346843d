"""The benefit pool end to end (chalice test client, DynamoDB Local): HQ allocates to a region and a store,
the region manager passes quota on to a store and takes some back, the store manager issues from the store's
quota, a coupon issued at sh-001 is used at sh-002, and the numbers (stats, settlement) follow, a whole
refund taking the redemption back out of its month."""
from __future__ import annotations

import uuid
from datetime import datetime

import pytest

from chalicelib.domain import clock
from testkit.ledger import order
from testkit.support import registration


def uid(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def people(api, tokens):
    staff = tokens.staff(stores=["sh-001"])
    return [api.post("/members", registration(), staff)[1]["member_id"] for _ in range(4)]


def allocate(api, token, template_id, scope, scope_id, quantity, allocation_id=None):
    body = {"allocation_id": allocation_id or uid("a"), "template_id": template_id, "scope": scope,
            "scope_id": scope_id, "quantity": quantity}
    return api.post("/benefit-pool/allocations", body, token)


def line(pool, template_id):
    return next(x for x in pool["items"] if x["template_id"] == template_id)


def test_quotas_issue_settle_and_refund(api, tokens, people):
    hq = tokens.hq()
    east = tokens.staff("region_manager", region="east")
    sh1 = tokens.staff("store_manager", stores=["sh-001"])
    sh2 = tokens.staff(stores=["sh-002"])
    t = uid("pool")
    body = {"name": "本店无门槛8元", "kind": "cash", "value": 800, "valid_days": 30, "budget": 100, "stackable": True}
    assert api.put(f"/coupon-templates/{t}", body, hq)[0] == 201

    status, done = allocate(api, hq, t, "region", "east", 30, allocation_id=f"{t}-east")
    assert status == 201 and (done["source"], done["target"]) == ("HQ", "REGION#east")
    assert allocate(api, hq, t, "region", "east", 30, allocation_id=f"{t}-east") == (200, done)  # a retry
    assert allocate(api, hq, t, "store", "gz-001", 10)[0] == 201  # straight to a store: from the budget
    assert line(api.get("/benefit-pool", hq)[1], t) == {"template_id": t, "level": "HQ", "received": 100,
                                                        "allocated_out": 40, "issued": 0, "left": 60}
    status, err = allocate(api, east, t, "store", "gz-001", 1)  # not their region
    assert status == 403 and err["code"] == "store_out_of_scope"
    assert allocate(api, east, t, "store", "sh-001", 12)[0] == 201
    status, err = allocate(api, east, t, "store", "sh-002", 19)  # 18 left in the region
    assert status == 409 and err["code"] == "quota_exhausted"

    status, issued = api.post("/coupon-issues", {"issue_id": uid("i"), "template_id": t, "member_ids": people[:3],
                                                 "store_id": "sh-001"}, sh1)
    assert status == 201 and issued["issuer"] == "STORE#sh-001" and issued["issued_count"] == 3
    status, err = api.post("/coupon-issues", {"issue_id": uid("i"), "template_id": t, "member_ids": people[:3]}, sh1)
    assert status == 403 and err["code"] == "quota_required"
    assert allocate(api, east, t, "store", "sh-001", -6)[0] == 201  # 9 unissued: 6 go back to the region
    status, err = allocate(api, east, t, "store", "sh-001", -5)
    assert status == 409 and err["code"] == "return_exceeds_quota"
    status, err = api.post("/coupon-issues", {"issue_id": uid("i"), "template_id": t, "member_ids": people,
                                              "store_id": "sh-001"}, sh1)
    assert status == 409 and err["code"] == "quota_exhausted"  # 4 asked, 12 - 3 - 6 = 3 left
    assert line(api.get("/benefit-pool?store_id=sh-001", sh1)[1], t) == {
        "template_id": t, "level": "STORE#sh-001", "received": 6, "allocated_out": 0, "issued": 3, "left": 3}
    assert line(api.get("/benefit-pool", east)[1], t)["left"] == 18 + 6

    code = issued["issued"][0]["code"]
    bought = order(issued["issued"][0]["member_id"], amount=5_000, store_id="sh-002")
    redeem = {"member_id": bought["member_id"], "store_id": "sh-002", "order_id": bought["order_id"],
              "order_amount": 5_000}
    assert api.post(f"/coupons/{code}/redeem", redeem, sh2)[1]["discount"] == 800
    bought["items"][0]["amount"] -= 800
    bought["amount"] -= 800
    assert api.post("/orders", {**bought, "coupons": [{"code": code, "discount": 800}]}, sh2)[0] == 201
    paid = datetime.fromisoformat(bought["paid_at"])
    month = clock.business_day(paid).strftime("%Y-%m")  # counted in the month and day the order was paid
    first, today = min(clock.business_day(paid), clock.business_day(clock.now())), clock.business_day(clock.now())
    status, settle = api.get(f"/coupons/settlement?month={month}&store_id=sh-001", sh1)
    assert status == 200 and [r for r in settle["rows"] if r["template_id"] == t] == [
        {"template_id": t, "issuer": "STORE#sh-001", "redeeming_store_id": "sh-002", "count": 1, "discount": 800,
         "gift_cost": 0}]
    status, stats = api.get(f"/coupon-templates/{t}/stats?store_id=sh-001&from={first}&to={today}", sh1)
    assert status == 200 and (stats["issued"], stats["redeemed"], stats["discount"], stats["sales"]) == \
        (3, 1, 800, 4_200)
    assert stats["redemption_rate_bp"] == 3_333
    whole = api.get(f"/coupon-templates/{t}/stats?from={first}&to={today}", hq)[1]
    assert (whole["issued"], whole["redeemed"]) == (3, 1)

    assert api.post(f"/orders/{bought['order_id']}/refunds", {"refund_id": "all", "amount": 4_200}, sh2)[0] == 201
    settle = api.get(f"/coupons/settlement?month={month}", hq)[1]
    assert [r for r in settle["rows"] if r["template_id"] == t] == []
    stats = api.get(f"/coupon-templates/{t}/stats?region_id=east&from={first}&to={today}", east)[1]
    assert (stats["issued"], stats["redeemed"], stats["discount"]) == (3, 0, 0)
