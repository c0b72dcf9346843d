"""Retries that must answer what the first request answered (issue 10: defect 3 and the preview of a posted
order). Each test failed before its fix."""
from __future__ import annotations

import uuid

from testkit.ledger import order
from testkit.support import registration, unique_phone


def _member(api, tokens, hq):  # noqa: ANN001, ANN202
    status, body = api.post("/members", registration(unique_phone()), hq)
    assert status == 201, body
    return body["member_id"]


def _merged_pair_with_points(api, tokens, hq):  # noqa: ANN001, ANN202
    """Given a survivor T and a duplicate S merged into it, S holding 200 points from a ¥200 order."""
    survivor, duplicate = _member(api, tokens, hq), _member(api, tokens, hq)
    status, _ = api.post("/orders", order(duplicate, amount=20_000), hq)
    assert status == 201
    status, merged = api.post(f"/members/{survivor}/merge", {"source_member_id": duplicate}, hq)
    assert status == 200 and merged["state"] == "done", merged
    return survivor, duplicate


def test_a_redemption_retried_through_a_merged_away_id_answers_the_first_answer(api, tokens):
    hq = tokens.hq()
    survivor, old_id = _merged_pair_with_points(api, tokens, hq)
    clerk = tokens.staff(stores=["sh-001"])
    body = {"redemption_id": f"RD-{uuid.uuid4().hex[:8]}", "points": 30, "reason": "奶茶", "store_id": "sh-001"}
    # When the counter redeems through the old id and retries the identical request
    first = api.post(f"/members/{old_id}/points/redemptions", body, clerk)
    again = api.post(f"/members/{old_id}/points/redemptions", body, clerk)
    # Then the retry answers 200 with the stored answer (it used to be a 500: DocumentExists), spending once
    assert first[0] == 201, first
    assert again == (200, first[1])
    assert api.get(f"/members/{survivor}/points", hq)[1]["balance"] == first[1]["balance"]


def test_an_adjustment_retried_through_a_merged_away_id_answers_the_first_answer(api, tokens):
    hq = tokens.hq()
    _, old_id = _merged_pair_with_points(api, tokens, hq)
    body = {"adjustment_id": f"ADJ-{uuid.uuid4().hex[:8]}", "points": 15, "reason": "补偿"}
    first = api.post(f"/members/{old_id}/points/adjustments", body, hq)
    again = api.post(f"/members/{old_id}/points/adjustments", body, hq)
    assert first[0] == 201, first
    assert again == (200, first[1])


def test_previewing_a_posted_order_answers_its_stored_receipt(api, tokens):
    hq = tokens.hq()
    member = _member(api, tokens, hq)
    body = order(member, amount=10_000)
    status, receipt = api.post("/orders", body, hq)
    assert status == 201
    # A later order moves the balance: a preview that recomputed would answer a different balance
    assert api.post("/orders", order(member, amount=5_000), hq)[0] == 201
    assert api.post("/orders/preview", body, hq) == (200, receipt)
    # The same order_id with another body: what posting it would answer, a 409
    other = {**body, "amount": 9_000, "items": [{**body["items"][0], "amount": 9_000}]}
    status, err = api.post("/orders/preview", other, hq)
    assert (status, err["code"]) == (409, "order_id_reused")
