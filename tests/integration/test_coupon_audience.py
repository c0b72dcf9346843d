"""Segment audiences of coupon issues, against DynamoDB Local and moto's SQS: POST /coupon-issues with an
audience records a job (202) and queues it; the queue's consumer (functions/coupon_audience.py, called here
as the Lambda's SQS source or the local worker pool would) issues chunk by chunk through the bulk issue. By
segment, tags, home store and no_purchase; a crash after a chunk resumes without a coupon twice; the same POST
twice, or sixteen at once, is one job; a budget that runs out stops the job with what was issued kept; access."""
from __future__ import annotations

import uuid
from collections import Counter
from datetime import datetime, time, timedelta
from typing import Any

import pytest

from chalicelib import bootstrap
from chalicelib.domain import clock
from chalicelib.services import coupon_audience
from chalicelib.store import keys
from chalicelib.store.coupons import DynamoCouponRepository
from functions import coupon_audience as consumer
from functions.rfm import run_locally
from testkit.concurrency import at_once, call_retrying
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
    consumer.drain()  # messages other tests left on this process's queue name jobs of other tables
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


def _population(api, tokens) -> dict[str, Any]:  # noqa: ANN001
    """Eight buyers in sh-001 and gz-001 of different spend and recency, one member with points but no purchase
    (an HQ credit), one with no points state at all; then last night's segmentation."""
    staff = tokens.staff(stores=["sh-001", "sh-002", "gz-001"])
    buyers = [_buyer(api, staff, home, days, amount) for home, days, amount in [
        ("sh-001", [2, 9, 20], 60_000), ("sh-001", [3], 1_000), ("sh-001", [70, 80], 90_000),
        ("sh-001", [85], 900), ("gz-001", [1, 5], 40_000), ("gz-001", [60], 1_200),
        ("gz-001", [2, 4, 6, 8], 2_000), ("sh-002", [30], 70_000)]]
    credited = api.post("/members", registration(store_id="sh-001"), staff)[1]["member_id"]
    status, _ = api.post(f"/members/{credited}/points/adjustments",
                         {"adjustment_id": "welcome", "points": 100, "reason": "开卡礼"}, tokens.hq())
    assert status == 201
    bare = api.post("/members", registration(store_id="sh-001"), staff)[1]["member_id"]
    run_locally({"segments": 2}, workers=2)
    db = bootstrap.db()
    segment = {m: db.get(keys.member_rfm_key(m))["segment"] for m in buyers}
    homes = {m: h for m, h in zip(buyers, ["sh-001"] * 4 + ["gz-001"] * 3 + ["sh-002"], strict=True)}
    homes[credited] = "sh-001"
    return {"buyers": buyers, "credited": credited, "bare": bare, "segment": segment, "homes": homes}


def _template(api, tokens, **extra: Any) -> str:  # noqa: ANN001
    t = f"t-{uuid.uuid4().hex[:10]}"
    body = {"name": "回流券", "kind": "cash", "value": 500, "valid_days": 7, **extra}
    assert api.put(f"/coupon-templates/{t}", body, tokens.hq())[0] == 201
    return t


def _holders(template_id: str, members: list[str]) -> Counter:
    """Coupons of the template per member, counted from the coupon items themselves."""
    found: Counter = Counter()
    for m in members:
        coupons, _ = bootstrap.coupons().member_coupons([m], None, None, 100)
        found[m] += sum(1 for c in coupons if c.template_id == template_id)
    return +found


def _issue(api, token, template_id: str, audience: dict[str, Any], **extra: Any) -> tuple[int, Any]:  # noqa: ANN001
    return api.post("/coupon-issues", {"issue_id": f"a-{uuid.uuid4().hex[:10]}", "template_id": template_id,
                                       "audience": audience, **extra}, token)


def test_audiences_by_segment_tags_home_store_and_no_purchase(brand, api, tokens):
    pop = _population(api, tokens)
    hq = tokens.hq()
    everyone = [*pop["buyers"], pop["credited"], pop["bare"]]
    some = pop["segment"][pop["buyers"][0]]
    bootstrap.db().put({**keys.member_tags_key(pop["buyers"][4]), "type": "member_tags", "tags": {"VIP"}})
    cases = [
        ({"segment": some}, {m for m, s in pop["segment"].items() if s == some}),
        ({"segment": "no_purchase"}, {pop["credited"]}),
        ({"home_store_id": "gz-001"}, set(pop["buyers"][4:7])),
        ({"tags": ["VIP"]}, {pop["buyers"][4]}),
        ({"segment": some, "home_store_id": "sh-001"},
         {m for m, s in pop["segment"].items() if s == some and pop["homes"][m] == "sh-001"}),
    ]
    for audience, expected in cases:
        t = _template(api, tokens)
        status, started = _issue(api, hq, t, audience)
        assert status == 202, started
        assert started["status"] == "selecting" and started["kind"] == "audience" and started["issued"] == 0
        assert {k: v for k, v in started["audience"].items() if v is not None} == audience
        consumer.drain()
        status, done = api.get(f"/coupon-issues/{started['issue_id']}", hq)
        assert status == 200 and done["status"] == "done", done
        assert done["matched"] == len(expected) and done["issued"] == len(expected), (audience, done)
        assert _holders(t, everyone) == Counter(dict.fromkeys(expected, 1)), audience


def test_a_crash_after_a_chunk_resumes_and_issues_each_member_once(brand, api, tokens, monkeypatch):
    pop = _population(api, tokens)
    monkeypatch.setattr(coupon_audience, "PAGE", 2)  # many chunks from a few members
    t = _template(api, tokens)
    status, started = _issue(api, tokens.hq(), t, {"home_store_id": "sh-001"})
    assert status == 202
    issue_id = started["issue_id"]
    real = DynamoCouponRepository.commit_audience_chunk
    calls = {"n": 0}

    def dies_on_the_third(self, *args, **kw):  # noqa: ANN001, ANN002, ANN003
        calls["n"] += 1
        if calls["n"] == 3:  # the chunk's coupons are issued, its checkpoint is not written
            raise RuntimeError("injected crash after a chunk")
        return real(self, *args, **kw)

    monkeypatch.setattr(DynamoCouponRepository, "commit_audience_chunk", dies_on_the_third)
    with pytest.raises(RuntimeError):
        consumer.process({"issue_id": issue_id}, lambda: True)
    assert api.get(f"/coupon-issues/{issue_id}", tokens.hq())[1]["status"] == "issuing"
    # Out of time after one more chunk: not finished, so the message is queued again; the drain finishes it.
    budget = iter([True, False])
    assert consumer.process({"issue_id": issue_id}, lambda: next(budget, False))["finished"] is False
    consumer.drain()
    expected = {m for m, h in pop["homes"].items() if h == "sh-001"}
    done = api.get(f"/coupon-issues/{issue_id}", tokens.hq())[1]
    assert done["status"] == "done" and done["matched"] == done["issued"] == len(expected), done
    assert _holders(t, [*pop["buyers"], pop["credited"], pop["bare"]]) == Counter(dict.fromkeys(expected, 1))
    # A message delivered again after the end changes nothing.
    assert consumer.process({"issue_id": issue_id}, lambda: True) == {"issue_id": issue_id, "status": "done",
                                                                      "finished": True}


def test_the_same_post_twice_is_one_job_and_another_body_is_409(brand, api, tokens):
    pop = _population(api, tokens)
    hq, t = tokens.hq(), _template(api, tokens)
    body = {"issue_id": f"a-{uuid.uuid4().hex[:10]}", "template_id": t, "audience": {"home_store_id": "gz-001"}}
    first = api.post("/coupon-issues", body, hq)
    assert first[0] == 202
    assert api.post("/coupon-issues", body, hq) == first
    status, err = api.post("/coupon-issues", {**body, "audience": {"home_store_id": "sh-001"}}, hq)
    assert status == 409 and err["code"] == "issue_id_reused"
    status, err = api.post("/coupon-issues", {**{k: v for k, v in body.items() if k != "audience"},
                                              "member_ids": pop["buyers"][:1]}, hq)
    assert status == 409 and err["code"] == "issue_id_reused"
    consumer.drain()
    status, replay = api.post("/coupon-issues", body, hq)
    assert status == 202 and replay["status"] == "done" and replay["issued"] == 3
    assert _holders(t, pop["buyers"]) == Counter(dict.fromkeys(pop["buyers"][4:7], 1))


def test_sixteen_identical_posts_at_once_make_one_job(brand, live, api, tokens):
    pop = _population(api, tokens)
    hq, t = tokens.hq(), _template(api, tokens)
    body = {"issue_id": f"a-{uuid.uuid4().hex[:10]}", "template_id": t, "audience": {"home_store_id": "sh-001"}}
    answers = at_once([lambda: call_retrying(live, "POST", "/coupon-issues", body, hq) for _ in range(16)])
    assert {s for s, _ in answers} == {202}
    assert len({a["created_at"] for _, a in answers}) == 1  # one record
    at_once([lambda: consumer.drain() for _ in range(4)])  # workers racing on whatever was queued
    consumer.drain()
    expected = {m for m, h in pop["homes"].items() if h == "sh-001"}
    done = api.get(f"/coupon-issues/{body['issue_id']}", hq)[1]
    assert done["status"] == "done" and done["issued"] == len(expected), done
    assert _holders(t, [*pop["buyers"], pop["credited"]]) == Counter(dict.fromkeys(expected, 1))


def test_a_budget_that_runs_out_stops_the_job_with_what_was_issued(brand, api, tokens, monkeypatch):
    pop = _population(api, tokens)
    monkeypatch.setattr(coupon_audience, "PAGE", 2)
    t = _template(api, tokens, budget=3)
    status, started = _issue(api, tokens.hq(), t, {"home_store_id": "sh-001"})  # 5 members match
    assert status == 202
    consumer.drain()
    done = api.get(f"/coupon-issues/{started['issue_id']}", tokens.hq())[1]
    assert done["status"] == "stopped" and done["stop_reason"] == "budget_exhausted" and done["issued"] == 3, done
    held = _holders(t, [*pop["buyers"], pop["credited"]])
    assert sum(held.values()) == 3 and set(held.values()) == {1}
    template = api.get(f"/coupon-templates/{t}", tokens.hq())[1]
    assert template["issued"] == 3 and template["left"] == 0


def test_access(brand, api, tokens):
    pop = _population(api, tokens)
    t = _template(api, tokens)
    audience = {"home_store_id": "sh-001"}
    assert _issue(api, tokens.member(pop["buyers"][0]), t, audience)[0] == 403
    assert _issue(api, tokens.staff(stores=["sh-001"]), t, audience)[0] == 403
    manager = tokens.staff("store_manager", stores=["sh-001"])
    status, err = _issue(api, manager, t, {"home_store_id": "gz-001"}, store_id="sh-001")
    assert status == 403 and err["code"] == "audience_out_of_scope"
    status, err = _issue(api, manager, t, audience, store_id="gz-001")  # another store's quota
    assert status == 403
    status, err = _issue(api, tokens.staff("region_manager", region="east"), t, {"home_store_id": "gz-001"},
                         region_id="east")
    assert status == 403 and err["code"] == "audience_out_of_scope"
    # A store manager's audience without a home store is their store's home members, from their quota.
    assert api.post("/benefit-pool/allocations", {"allocation_id": f"al-{t}", "template_id": t, "scope": "store",
                                                  "scope_id": "sh-001", "quantity": 10}, tokens.hq())[0] == 201
    status, started = _issue(api, manager, t, {"segment": "no_purchase"}, store_id="sh-001")
    assert status == 202 and started["issuer"] == "STORE#sh-001"
    consumer.drain()
    status, done = api.get(f"/coupon-issues/{started['issue_id']}", manager)
    assert status == 200 and done["issued"] == 1 and _holders(t, [pop["credited"]]) == Counter({pop["credited"]: 1})
    assert api.get(f"/coupon-issues/{started['issue_id']}", tokens.staff("store_manager", stores=["gz-001"]))[0] == 403
    assert api.get(f"/coupon-issues/{started['issue_id']}", tokens.staff(stores=["sh-001"]))[0] == 403
    hq_issue = _issue(api, tokens.hq(), t, audience)[1]["issue_id"]
    assert api.get(f"/coupon-issues/{hq_issue}", manager)[0] == 403
    assert api.get("/coupon-issues/nope", tokens.hq())[0] == 404
