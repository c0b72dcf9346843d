"""The manifests' DynamoDB grants cover what the code really calls: run each function (and the API's main flows)
against DynamoDB Local while recording every request, then check each (action, table or index) is granted.
The static tests (test_iam.py) prove the roles grant no more than the manifests; this proves no less."""
from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from typing import Any

import pytest

from infra import stack

TRANSACT = {"Put": "PutItem", "Update": "UpdateItem", "Delete": "DeleteItem", "ConditionCheck": "ConditionCheckItem",
            "Get": "GetItem"}


def _needs(operation: str, params: dict[str, Any]) -> set[tuple[str, str]]:
    """(IAM action without the prefix, 'table' or index name) for one DynamoDB request."""
    if operation in ("TransactWriteItems", "TransactGetItems"):
        return {(TRANSACT[kind], "table") for item in params["TransactItems"] for kind in item}
    return {(operation, params.get("IndexName", "table"))}


def _granted(grants: tuple[stack.Grant, ...]) -> set[tuple[str, str]]:
    return {(a, g.on) for g in grants for a in g.actions}


class Recorder:
    def __init__(self) -> None:
        self.calls: set[tuple[str, str]] = set()

    def __call__(self, params: dict[str, Any], model: Any, **_: Any) -> None:
        self.calls |= _needs(model.name, params)


@pytest.fixture
def record(stack) -> Iterator[Any]:  # noqa: ANN001
    from chalicelib import bootstrap

    hooked: list[tuple[Any, Recorder]] = []

    def start() -> Recorder:
        recorder, client = Recorder(), bootstrap.dynamodb_client()
        client.meta.events.register("before-parameter-build.dynamodb", recorder)
        hooked.append((client, recorder))
        return recorder

    yield start
    for client, recorder in hooked:
        client.meta.events.unregister("before-parameter-build.dynamodb", recorder)


def _spec(name: str) -> stack.FunctionSpec:
    return next(s for s in stack.load_functions() if s.name == name)


def test_merge_resume_calls_are_granted(api, tokens, monkeypatch, record):  # noqa: ANN001
    from chalicelib.cli import _LocalContext
    from chalicelib.services import merges as member_service
    from functions.merge_resume import handler
    from testkit.ledger import order
    from testkit.support import registration

    staff, hq = tokens.staff(stores=["sh-001"]), tokens.hq()
    target, source = (api.post("/members", registration(), staff)[1]["member_id"] for _ in range(2))
    assert api.post("/orders", order(source), staff)[0] == 201  # orders and points move too
    monkeypatch.setattr(member_service, "MERGE_BATCHES_INLINE", 0)
    assert api.post(f"/members/{target}/merge", {"source_member_id": source}, hq)[1]["state"] == "moving"

    recorder = record()
    assert handler({"source": "aws.scheduler"}, _LocalContext("merge-resume"))["finished"] >= 1
    assert recorder.calls and recorder.calls <= _granted(_spec("merge-resume").dynamodb), \
        recorder.calls - _granted(_spec("merge-resume").dynamodb)


def test_points_expiry_calls_are_granted(fresh_table, api, tokens, record):  # noqa: ANN001
    from chalicelib.cli import _LocalContext
    from chalicelib.domain import clock
    from functions.points_expiry import handler
    from testkit.ledger import order, plain_day
    from testkit.support import registration

    hq, staff = tokens.hq(), tokens.staff(stores=["sh-001"])
    api.put("/stores/sh-001", {"name": "s", "region_id": "east", "city": "上海", "store_type": "standard"}, hq)
    rules = api.get("/points/rules", hq)[1]
    rules["expiry"] = {"mode": "months_after", "months": 1}
    assert api.put("/points/rules", rules, hq)[0] == 200
    member = api.post("/members", registration(), staff)[1]["member_id"]
    api.post("/orders", order(member, amount=10_000, paid_at=plain_day(45)), staff)  # expired
    api.post("/orders", order(member, amount=5_000, paid_at=plain_day(1)), staff)  # expiring soon
    today = clock.business_day(clock.now())
    lot_day = date.fromisoformat(api.get(f"/members/{member}/points", hq)[1]["expiring_soon"][-1]["date"])
    rules["expiring_soon_days"] = (lot_day - today).days  # so that the 'points expiring' fact is written too
    assert api.put("/points/rules", rules, hq)[0] == 200

    recorder = record()
    result = handler({"date": today.isoformat()}, _LocalContext("points-expiry"))
    assert result["lots_expired"] == 1 and result["expiring_soon_facts"] == 1
    granted = _granted(_spec("points-expiry").dynamodb)
    assert recorder.calls and recorder.calls <= granted, recorder.calls - granted


def _coupon_calls(api, hq, staff, member):  # noqa: ANN001
    """Every coupon and pool route once, the counter's transactions (ConditionCheck) included."""
    import uuid

    from testkit.ledger import order

    t = f"g-{uuid.uuid4().hex[:8]}"
    statuses = [api.put(f"/coupon-templates/{t}", {"name": "g", "kind": "cash", "value": 100, "valid_days": 3,
                                                   "points_price": 10, "stackable": True, "budget": 50}, hq)[0],
                api.get("/coupon-templates", staff)[0], api.get(f"/coupon-templates/{t}", staff)[0]]
    status, issued = api.post("/coupon-issues", {"issue_id": t, "template_id": t, "member_ids": [member]}, hq)
    code = issued["issued"][0]["code"]
    bought = order(member, amount=1_000)
    redeem = {"member_id": member, "store_id": "sh-001", "order_id": bought["order_id"], "order_amount": 1_000}
    statuses += [status, api.get(f"/coupons/{code}?store_id=sh-001", staff)[0],
                 api.post(f"/coupons/{code}/redeem", {**redeem, "order_id": f"{t}-gone"}, staff)[0],
                 api.post(f"/coupons/{code}/redemption/cancel", {"order_id": f"{t}-gone"}, staff)[0],
                 api.post(f"/coupons/{code}/redeem", redeem, staff)[0]]
    bought["items"][0]["amount"] -= 100
    bought["amount"] -= 100
    statuses += [api.post("/orders", {**bought, "coupons": [{"code": code, "discount": 100}]}, staff)[0],
                 api.post(f"/orders/{bought['order_id']}/refunds", {"refund_id": "all", "amount": 900}, staff)[0],
                 api.post(f"/members/{member}/points/exchanges", {"exchange_id": t, "template_id": t}, staff)[0],
                 api.get(f"/members/{member}/coupons", staff)[0],
                 api.post("/benefit-pool/allocations", {"allocation_id": t, "template_id": t, "scope": "store",
                                                        "scope_id": "sh-001", "quantity": 2}, hq)[0],
                 api.get("/benefit-pool?store_id=sh-001", hq)[0],
                 api.get(f"/coupon-templates/{t}/stats?from=2026-01-01&to=2026-12-31", hq)[0],
                 api.get("/coupons/settlement?month=2026-12", hq)[0]]
    return statuses


def test_api_calls_are_granted(api, tokens, record):  # noqa: ANN001
    from testkit.ledger import order
    from testkit.support import registration, unique_phone

    hq, staff = tokens.hq(), tokens.staff(stores=["sh-001"])
    recorder = record()
    statuses = [
        api.put("/stores/sh-002", {"name": "s", "region_id": "east", "city": "上海", "store_type": "standard"}, hq)[0],
        api.get("/stores", hq)[0], api.get("/stores/sh-001", hq)[0]]
    phone = unique_phone()
    target = api.post("/members", registration(phone), staff)[1]["member_id"]
    source = api.post("/members", registration(), staff)[1]["member_id"]
    body = order(target, amount=20_000)
    statuses += [api.get(f"/members?phone={phone}", staff)[0], api.get(f"/members/{target}", hq)[0],
                 api.patch(f"/members/{target}", {"name": "王小明"}, hq)[0],
                 api.post("/orders", body, staff)[0], api.post("/orders", order(source), staff)[0],
                 api.get(f"/orders/{body['order_id']}", hq)[0],
                 api.post(f"/orders/{body['order_id']}/refunds", {"refund_id": "r1", "amount": 5_000}, staff)[0],
                 api.get(f"/members/{target}/points", hq)[0], api.get(f"/members/{target}/orders", hq)[0],
                 api.get(f"/members/{target}/tier", hq)[0],
                 api.post(f"/members/{target}/points/redemptions",
                          {"redemption_id": "x1", "points": 60, "reason": "兑换", "store_id": "sh-001"}, staff)[0],
                 api.post(f"/members/{target}/points/redemptions/x1/cancel", None, staff)[0],
                 api.post(f"/members/{target}/points/adjustments",
                          {"adjustment_id": "a1", "points": 10, "reason": "补偿"}, hq)[0],
                 api.put("/points/rules", api.get("/points/rules", hq)[1], hq)[0],
                 api.put("/tiers", api.get("/tiers", hq)[1], hq)[0]]
    statuses += _coupon_calls(api, hq, staff, target)
    statuses += [api.post(f"/members/{target}/merge", {"source_member_id": source}, hq)[0],
                 api.get(f"/members/{target}/export", hq)[0], api.delete(f"/members/{target}", hq)[0]]
    assert all(s < 300 for s in statuses), statuses
    granted = _granted(stack.load_api().dynamodb)
    assert recorder.calls and recorder.calls <= granted, recorder.calls - granted


def test_tier_review_calls_are_granted(fresh_table, api, tokens, record):  # noqa: ANN001
    from chalicelib.cli import _LocalContext
    from chalicelib.domain import clock
    from chalicelib.domain.points import add_months
    from functions.tier_review import handler
    from testkit.ledger import order
    from testkit.support import registration

    hq, staff = tokens.hq(), tokens.staff(stores=["sh-001"])
    api.put("/stores/sh-001", {"name": "s", "region_id": "east", "city": "上海", "store_type": "standard"}, hq)
    member = api.post("/members", registration(), staff)[1]["member_id"]
    assert api.post("/orders", order(member, amount=350_000, paid_at=clock.now().isoformat()), staff)[0] == 201
    a_year_on = add_months(clock.business_day(clock.now()).replace(day=1), 12)  # the order has left the window

    recorder = record()
    reviewed = [handler({"date": add_months(a_year_on, n).isoformat()}, _LocalContext("tier-review"))["reviewed"]
                for n in range(3)]  # down one level, down to the lowest (marker deleted), then nobody to review
    assert reviewed[0] == 1
    granted = _granted(_spec("tier-review").dynamodb)
    assert recorder.calls and recorder.calls <= granted, recorder.calls - granted


def test_coupon_expiry_calls_are_granted(fresh_table, api, tokens, record):  # noqa: ANN001
    from datetime import timedelta

    from chalicelib import bootstrap
    from chalicelib.cli import _LocalContext
    from chalicelib.domain import clock
    from functions.coupon_expiry import handler
    from testkit.support import registration

    hq, staff = tokens.hq(), tokens.staff(stores=["sh-001"])
    api.put("/stores/sh-001", {"name": "s", "region_id": "east", "city": "上海", "store_type": "standard"}, hq)
    member = api.post("/members", registration(), staff)[1]["member_id"]
    codes = {}
    for days in (0, 4):  # one coupon to expire, one to tell about (its last day is 3 days after the run)
        assert api.put(f"/coupon-templates/t{days}", {"name": "券", "kind": "cash", "value": 500,
                                                      "valid_days": days}, hq)[0] == 201
        answer = api.post("/coupon-issues", {"issue_id": f"i{days}", "template_id": f"t{days}",
                                             "member_ids": [member]}, hq)[1]
        codes[days] = answer["issued"][0]["code"]
    coupon = bootstrap.coupons().get_coupon(codes[0])
    today = clock.business_day(coupon.valid_to) + timedelta(days=1)

    recorder = record()
    result = handler({"date": today.isoformat()}, _LocalContext("coupon-expiry"))
    assert result == {"coupons_expired": 1, "expiring_facts": 1}
    granted = _granted(_spec("coupon-expiry").dynamodb)
    assert recorder.calls and recorder.calls <= granted, recorder.calls - granted


def test_knowledge_base_calls_are_granted(api, tokens, record):  # noqa: ANN001
    """Every knowledge-base route, an edit's BatchWriteItem of postings and the category index query included."""
    import uuid

    hq, staff = tokens.hq(), tokens.staff(stores=["sh-001"])
    article_id, category = f"g-{uuid.uuid4().hex[:8]}", f"g{uuid.uuid4().hex[:8]}"
    article = {"category": category, "title": "积分过期", "body": "一年后过期。"}
    recorder = record()
    statuses = [
        api.put(f"/kb/articles/{article_id}", article, hq)[0],
        api.put(f"/kb/articles/{article_id}", {**article, "body": "两年后过期。"}, hq)[0],
        api.get(f"/kb/articles/{article_id}", staff)[0],
        api.get("/kb/articles?q=%E7%A7%AF%E5%88%86", staff)[0],
        api.get(f"/kb/articles?category={category}", staff)[0]]
    assert statuses == [201, 200, 200, 200, 200]
    assert ("BatchWriteItem", "table") in recorder.calls and ("Query", "gsi1") in recorder.calls
    granted = _granted(stack.load_api().dynamodb)
    assert recorder.calls <= granted, recorder.calls - granted


def test_rfm_calls_are_granted(fresh_table, api, tokens, record):  # noqa: ANN001
    """Every step as the state machine calls it, over two nights (the second moves a member: a fact is written)."""
    from datetime import timedelta

    from chalicelib.cli import _LocalContext
    from chalicelib.domain import clock
    from functions.rfm import handler
    from testkit.ledger import order
    from testkit.support import create_stores, registration

    create_stores()
    staff = tokens.staff(stores=["sh-001"])
    members = [api.post("/members", registration(), staff)[1]["member_id"] for _ in range(4)]
    for n, member in enumerate(members):
        for k in range(n):
            paid = (clock.now() - timedelta(days=10 * k + 1)).isoformat()
            assert api.post("/orders", order(member, amount=5_000 * (n + 1), paid_at=paid), staff)[0] == 201

    recorder = record()
    ctx = _LocalContext("rfm")
    today = clock.business_day(clock.now())
    for night in (today - timedelta(days=2), today - timedelta(days=1)):
        plan = handler({"step": "plan", "date": night.isoformat()}, ctx)
        for phase in ("measure", "classify"):
            if phase == "classify":
                handler({"step": "thresholds", "as_of": plan["as_of"]}, ctx)
            for item in plan["segments"]:
                while not handler({"step": phase, **item}, ctx)["done"]:
                    pass
        assert handler({"step": "finish", "as_of": plan["as_of"]}, ctx)["classified"] == 3
        paid = clock.now().isoformat()
        for _ in range(6):  # the first member now buys often and big: its segment moves the next night
            assert api.post("/orders", order(members[1], amount=90_000, paid_at=paid), staff)[0] == 201
    granted = _granted(_spec("rfm").dynamodb)
    assert ("Scan", "gsi5") in recorder.calls
    assert recorder.calls <= granted, recorder.calls - granted


def test_coupon_audience_calls_are_granted(fresh_table, api, tokens, record):  # noqa: ANN001
    """The audience POST and progress read (API) and the consumer's whole job: gsi5 pages, the states, results
    and staff tags read, chunks issued and checkpointed, the job finished."""
    import uuid

    from functions.coupon_audience import drain
    from functions.rfm import run_locally
    from testkit.ledger import order
    from testkit.support import create_stores, registration

    create_stores()
    drain()  # messages of other tests' tables
    hq, staff = tokens.hq(), tokens.staff(stores=["sh-001"])
    for _ in range(3):
        member = api.post("/members", registration(), staff)[1]["member_id"]
        assert api.post("/orders", order(member), staff)[0] == 201
    run_locally({"segments": 1}, workers=1)
    t = f"g-{uuid.uuid4().hex[:8]}"
    assert api.put(f"/coupon-templates/{t}", {"name": "g", "kind": "cash", "value": 100, "valid_days": 3,
                                              "budget": 50}, hq)[0] == 201
    api_recorder = record()
    status, started = api.post("/coupon-issues", {"issue_id": t, "template_id": t,
                                                  "audience": {"home_store_id": "sh-001", "tags": ["x"]}}, hq)
    assert status == 202 and api.get(f"/coupon-issues/{t}", hq)[0] == 200
    granted = _granted(stack.load_api().dynamodb)
    assert api_recorder.calls <= granted, api_recorder.calls - granted
    status, other = api.post("/coupon-issues", {"issue_id": f"{t}-2", "template_id": t,
                                                "audience": {"home_store_id": "sh-001", "segment": "no_purchase"}}, hq)
    recorder = record()
    jobs = drain()
    assert {j["issue_id"] for j in jobs} >= {t, f"{t}-2"}
    status, third = api.post("/coupon-issues", {"issue_id": f"{t}-3", "template_id": t,
                                                "audience": {"home_store_id": "sh-001"}}, hq)
    assert drain()[0]["status"] == "done" and api.get(f"/coupon-issues/{t}-3", hq)[1]["issued"] == 3
    granted = _granted(_spec("coupon-audience").dynamodb)
    assert recorder.calls and recorder.calls <= granted, recorder.calls - granted
