"""Coupons end to end through the API (chalice test client, DynamoDB Local): a template, an issue, the
counter (look up, redeem, replay, cancel), the order posted with its coupons, a whole refund restoring them,
points exchanged for a coupon, and the member's list."""
from __future__ import annotations

import uuid

import pytest

from testkit.ledger import order
from testkit.support import registration


def tid() -> str:
    return f"t-{uuid.uuid4().hex[:10]}"


def template(**extra):
    body = {"name": "满200减30", "kind": "threshold", "value": 3_000, "min_spend": 20_000, "valid_days": 7}
    body.update(extra)
    return body


@pytest.fixture
def staff(tokens):
    return tokens.staff(stores=["sh-001"])


@pytest.fixture
def member(api, staff):
    return api.post("/members", registration(), staff)[1]["member_id"]


def issue_one(api, tokens, template_id, member_id):
    status, answer = api.post("/coupon-issues", {"issue_id": f"i-{uuid.uuid4().hex[:10]}", "template_id": template_id,
                                                 "member_ids": [member_id]}, tokens.hq())
    assert status == 201, answer
    return answer["issued"][0]["code"]


def test_redeem_post_refund_restores(api, tokens, staff, member):
    t = tid()
    status, view = api.put(f"/coupon-templates/{t}", template(budget=5, per_member_limit=2), tokens.hq())
    assert status == 201 and view["left"] == 5 and view["issued"] == 0
    code = issue_one(api, tokens, t, member)
    assert api.get(f"/coupon-templates/{t}", staff)[1]["left"] == 4

    status, check = api.get(f"/coupons/{code.lower()}?store_id=sh-001&order_amount=19999", staff)
    assert status == 200 and check["usable"] is False and check["refusal"] == "below_minimum_spend"
    assert check["holder_phone"] and "*" in check["holder_phone"]

    body = order(member, amount=25_000, lines=2)
    redeem = {"member_id": member, "store_id": "sh-001", "order_id": body["order_id"], "order_amount": 25_000,
              "lines": [{"sku": line["sku"], "amount": line["amount"]} for line in body["items"]]}
    status, answer = api.post(f"/coupons/{code}/redeem", redeem, staff)
    assert status == 201, answer
    assert answer["discount"] == 3_000 and answer["amount_after"] == 22_000
    assert [line["discount"] for line in answer["lines"]] == [1_500, 1_500]
    assert api.post(f"/coupons/{code}/redeem", redeem, staff) == (200, answer)
    status, err = api.post(f"/coupons/{code}/redeem", {**redeem, "order_amount": 26_000, "lines": None}, staff)
    assert status == 409 and err["code"] == "redemption_conflict"
    status, err = api.post(f"/coupons/{code}/redeem", {**redeem, "order_id": "another"}, staff)
    assert status == 409 and err["code"] == "already_redeemed"

    paid = dict(body)
    paid["items"] = [{**line, "amount": split["paid"]} for line, split in zip(body["items"], answer["lines"])]
    paid["amount"] = 22_000
    status, err = api.post("/orders", {**paid, "coupons": [{"code": code, "discount": 2_999}]}, staff)
    assert status == 422 and err["code"] == "coupons_not_redeemed"
    status, receipt = api.post("/orders", {**paid, "coupons": [{"code": code, "discount": 3_000}]}, staff)
    assert status == 201 and receipt["points_earned"] == 220
    status, err = api.post(f"/coupons/{code}/redemption/cancel", {"order_id": body["order_id"]}, staff)
    assert status == 409 and err["code"] == "order_posted"

    status, refund = api.post(f"/orders/{body['order_id']}/refunds", {"refund_id": "r1", "amount": 10_000}, staff)
    assert status == 201 and refund["coupons_restored"] == []
    status, refund = api.post(f"/orders/{body['order_id']}/refunds", {"refund_id": "r2", "amount": 12_000}, staff)
    assert status == 201 and refund["coupons_restored"] == [code]
    status, page = api.get(f"/members/{member}/coupons?state=available", tokens.member(member))
    assert status == 200 and [c["code"] for c in page["items"]] == [code]


def test_cancel_releases_and_stacking(api, tokens, staff, member):
    cash, pct = tid(), tid()
    api.put(f"/coupon-templates/{cash}", template(kind="cash", value=500, min_spend=0, stackable=True), tokens.hq())
    api.put(f"/coupon-templates/{pct}", template(kind="discount", value=None, min_spend=0, pct=85, cap=2_000,
                                                  stackable=True), tokens.hq())
    a, b = issue_one(api, tokens, cash, member), issue_one(api, tokens, pct, member)
    oid = f"o-{uuid.uuid4().hex[:8]}"
    redeem = {"member_id": member, "store_id": "sh-001", "order_id": oid, "order_amount": 10_000}
    assert api.post(f"/coupons/{a}/redeem", redeem, staff)[1]["discount"] == 500
    second = api.post(f"/coupons/{b}/redeem", redeem, staff)[1]
    assert second["amount_before"] == 9_500 and second["discount"] == 9_500 - 9_500 * 85 // 100
    status, released = api.post(f"/coupons/{a}/redemption/cancel", {"order_id": oid}, staff)
    assert status == 200 and released["state"] == "available"
    assert api.post(f"/coupons/{a}/redemption/cancel", {"order_id": oid}, staff) == (200, released)


def test_exchange_spends_points_and_issues(api, tokens, staff, member):
    t = tid()
    api.put(f"/coupon-templates/{t}", template(kind="cash", value=500, min_spend=0, points_price=100), tokens.hq())
    api.post("/orders", order(member, amount=30_000), staff)
    body = {"exchange_id": "x1", "template_id": t}
    status, answer = api.post(f"/members/{member}/points/exchanges", body, tokens.member(member))
    assert status == 201, answer
    assert answer["points"] == 100 and answer["balance"] == 200 and answer["coupon"]["state"] == "available"
    assert api.post(f"/members/{member}/points/exchanges", body, tokens.member(member)) == (200, answer)
    assert api.get(f"/members/{member}/points", tokens.hq())[1]["balance"] == 200


def test_export_lists_the_members_coupons(api, tokens, member):
    t = tid()
    api.put(f"/coupon-templates/{t}", template(kind="cash", value=500, min_spend=0), tokens.hq())
    code = issue_one(api, tokens, t, member)
    status, export = api.get(f"/members/{member}/export", tokens.member(member))
    assert status == 200 and [c["code"] for c in export["coupons"]] == [code]
    assert {r["type"] for r in export["records"]} >= {"coupon_counts"}
