"""Refunds that used to move money wrongly (issue 10: #4, #7, #8, and the spendable balance in a refusal).
Each test failed before its fix."""
from __future__ import annotations

import uuid

from testkit.ledger import order
from testkit.support import registration, unique_phone


def _member(api, hq):  # noqa: ANN001, ANN202
    status, body = api.post("/members", registration(unique_phone()), hq)
    assert status == 201, body
    return body["member_id"]


def _refund(api, token, order_id, amount, items=None):  # noqa: ANN001, ANN202
    body = {"refund_id": f"f-{uuid.uuid4().hex[:8]}", "amount": amount}
    if items is not None:
        body["items"] = items
    return api.post(f"/orders/{order_id}/refunds", body, token)


def _two_lines_of_one_sku(member_id):  # noqa: ANN001, ANN202
    body = order(member_id, amount=8_000, lines=2)
    body["items"][0].update(sku="A", amount=5_000, qty=1)
    body["items"][1].update(sku="A", amount=3_000, qty=2)
    return body


def test_a_refund_by_line_counts_every_line_of_the_sku(api, tokens):
    # Given an order with two lines of SKU A (5000 x1 + 3000 x2)
    hq = tokens.hq()
    body = _two_lines_of_one_sku(_member(api, hq))
    assert api.post("/orders", body, hq)[0] == 201
    # When one A worth 5000 is refunded, Then it is accepted (only the last line of A used to count: 422)
    status, answer = _refund(api, hq, body["order_id"], 5_000, [{"sku": "A", "qty": 1, "amount": 5_000}])
    assert status == 201, answer
    # And the rest of A (3000, two units) still fits, but nothing more
    status, err = _refund(api, hq, body["order_id"], 1, [{"sku": "A", "qty": 1, "amount": 1}])
    assert status == 201, err
    status, err = _refund(api, hq, body["order_id"], 2_999, [{"sku": "A", "qty": 2, "amount": 2_999}])
    assert (status, err["code"], err["details"]) == (422, "refund_exceeds_line", {"skus": ["A"]})


def test_quantities_are_limited_across_refunds(api, tokens):
    # Given a line of qty 2
    hq = tokens.hq()
    body = order(_member(api, hq), amount=6_000)
    body["items"][0]["qty"] = 2
    assert api.post("/orders", body, hq)[0] == 201
    sku = body["items"][0]["sku"]
    # When one unit and then two units are refunded, Then the second is refused (both used to be accepted)
    assert _refund(api, hq, body["order_id"], 1_000, [{"sku": sku, "qty": 1, "amount": 1_000}])[0] == 201
    status, err = _refund(api, hq, body["order_id"], 1_000, [{"sku": sku, "qty": 2, "amount": 1_000}])
    assert (status, err["code"]) == (422, "refund_exceeds_line")
    assert _refund(api, hq, body["order_id"], 1_000, [{"sku": sku, "qty": 1, "amount": 1_000}])[0] == 201


def test_an_erased_members_order_can_still_be_refunded(api, tokens):
    hq = tokens.hq()
    member = _member(api, hq)
    body = order(member, amount=10_000)
    assert api.post("/orders", body, hq)[0] == 201
    assert api.delete(f"/members/{member}", hq)[0] == 200
    # When the customer returns the goods after erasing their membership
    status, answer = _refund(api, hq, body["order_id"], 10_000)
    # Then the refund is recorded against the order (it used to be 404 member_erased); no points move
    assert status == 201, answer
    assert (answer["refunded_total"], answer["points_reversed"], answer["member_id"]) == (10_000, 0, None)
    assert api.get(f"/orders/{body['order_id']}", hq)[1]["refunded_amount"] == 10_000


def test_raising_a_threshold_demotes_nobody_through_an_unrelated_refund(api, tokens, fresh_table):
    hq = tokens.hq()
    assert api.put("/stores/sh-001", {"name": "s", "region_id": "east", "city": "上海", "store_type": "standard"},
                   hq)[0] == 201
    member = _member(api, hq)
    # Given a member at 白银 (silver, from ¥1,000) with ¥1,100 of spend over two orders
    assert api.post("/orders", order(member, amount=10_000), hq)[0] == 201
    status, receipt = api.post("/orders", order(member, amount=100_000), hq)
    assert receipt["tier_after"]["tier_id"] == "silver"
    small = order(member, amount=100)
    assert api.post("/orders", small, hq)[0] == 201
    # When HQ raises 白银's threshold to ¥2,000 (promised: nobody is demoted before the next review)
    tiers = api.get("/tiers", hq)[1]
    tiers["tiers"][1]["threshold"] = 200_000
    assert api.put("/tiers", tiers, hq)[0] == 200
    # And a 1-fen refund of another order follows
    status, answer = _refund(api, hq, small["order_id"], 1)
    # Then the member keeps 白银 (the refund used to answer tier: regular)
    assert status == 201, answer
    assert (answer["tier"], answer["tier_changed"]) == ("silver", False)


def test_a_refund_still_takes_back_the_upgrade_its_own_order_caused(api, tokens):
    hq = tokens.hq()
    member = _member(api, hq)
    body = order(member, amount=120_000)
    assert api.post("/orders", body, hq)[1]["tier_after"]["tier_id"] == "silver"
    status, answer = _refund(api, hq, body["order_id"], 120_000)
    assert (status, answer["tier"], answer["tier_changed"]) == (201, "regular", True)
