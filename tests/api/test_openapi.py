"""The served OpenAPI document is valid 3.1 (independent validator) and every documented operation's live
answers match their documented schemas."""
from __future__ import annotations

import json
import uuid
from datetime import timedelta

import pytest
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate

from chalicelib.domain import clock
from testkit.ledger import order
from testkit.support import registration, unique_phone


@pytest.fixture(scope="module")
def doc(api):
    status, body = api.get("/openapi.json")
    assert status == 200
    return body


def test_document_is_valid_openapi_31(doc):
    validate(doc)
    assert doc["openapi"].startswith("3.1")
    assert doc["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"


def test_every_app_route_is_documented(doc):
    from app import app

    documented = {(path, method.upper()) for path, ops in doc["paths"].items() for method in ops}
    assert documented == {(path, method) for path, methods in app.routes.items() for method in methods}


def _check(doc, path, method, status, body, media="application/json"):
    op = doc["paths"][path][method.lower()]
    assert str(status) in op["responses"], f"{method} {path} answered undocumented {status}"
    content = op["responses"][str(status)].get("content")
    if content:
        assert media in content, f"{method} {path} {status} answered {media}, documented {sorted(content)}"
        schema = {**content[media]["schema"], "components": doc["components"]}
        errors = sorted(Draft202012Validator(schema).iter_errors(body), key=str)
        assert not errors, f"{method} {path} {status}: {errors[0].message}"


def _call(api, method, path, body, token):
    """(status, media type, answer): JSON parsed, any other media (a report page: text/html) as text."""
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {token}"} if token else {})}
    raw = None if body is None else json.dumps(body)
    resp = getattr(api.client.http, method.lower())(path, body=raw, headers=headers)
    media = {k.lower(): v for k, v in resp.headers.items()}.get("content-type", "").split(";")[0].strip()
    if media == "application/json":
        return resp.status_code, media, json.loads(resp.body) if resp.body else None
    return resp.status_code, media, resp.body.decode()


def _examples(api, tokens):
    """One valid call per documented operation: (path template, method, concrete path, body, token)."""
    hq, staff = tokens.hq(), tokens.staff(stores=["sh-001"])
    m = api.post("/members", registration(), staff)[1]["member_id"]
    dup = api.post("/members", registration(), staff)[1]["member_id"]
    gone = api.post("/members", registration(), staff)[1]["member_id"]
    session = api.post("/auth/wechat", {"code": f"doc~{uuid.uuid4().hex[:6]}"})[1]
    buyer = api.post("/members", registration(), staff)[1]["member_id"]
    bought = order(buyer, amount=50_000)
    api.post("/orders", bought, staff)
    api.post(f"/members/{buyer}/points/redemptions", {"redemption_id": "doc-r0", "points": 5, "reason": "doc",
                                                      "store_id": "sh-001"}, staff)
    tiers, rules = api.get("/tiers", hq)[1], api.get("/points/rules", hq)[1]
    tpl, sale = f"doc-{uuid.uuid4().hex[:8]}", f"doc-sale-{uuid.uuid4().hex[:8]}"
    cash = {"name": "无门槛5元", "kind": "cash", "value": 500, "valid_days": 7, "points_price": 10, "stackable": True}
    assert api.put(f"/coupon-templates/{tpl}", cash, hq)[0] == 201
    code = api.post("/coupon-issues", {"issue_id": f"doc-{uuid.uuid4().hex[:8]}", "template_id": tpl,
                                       "member_ids": [buyer]}, hq)[1]["issued"][0]["code"]
    tk = f"doc-{uuid.uuid4().hex[:8]}"
    today = clock.business_day(clock.now()).isoformat()
    assert api.post("/tickets", {"ticket_id": tk, "channel": "store", "type": "complaint", "subject": "文档",
                                 "description": "文档用", "store_id": "sh-001", "member_id": buyer}, staff)[0] == 201
    task_a, task_b = f"doc-{uuid.uuid4().hex[:8]}", f"doc-{uuid.uuid4().hex[:8]}"
    for task in (task_a, task_b):
        assert api.post(f"/tickets/{tk}/tasks", {"task_id": task, "store_id": "sh-001", "title": "回访",
                                                 "due_at": "2026-12-31T18:00:00+08:00"}, staff)[0] == 201
    routing = api.get("/routing-rules", hq)[1]
    tag_rules = api.get("/tag-rules", hq)[1]
    rfm_settings = api.get("/rfm-settings", hq)[1]
    from datetime import date

    from chalicelib import bootstrap

    bootstrap.rfm().put_night(date(2020, 1, 3), "STORE", "sh-001", {  # a night as the run writes it
        "as_of": "2020-01-03", "segments": {"重要价值": 1, "一般挽留": 2}, "members": 3,
        "repurchase": {"buyers": 2, "repeat_buyers": 1, "rate_permille": 500},
        "churn": [{"member_id": buyer, "monetary": 12_000, "lifetime_spend": 40_000, "usual_gap_days": "6",
                   "days_since_purchase": 25, "tier": "gold"}]})
    sla_policy = api.get("/sla-policies", hq)[1]
    kb = f"doc-{uuid.uuid4().hex[:8]}"
    article = {"category": "faq", "title": "积分过期规则", "tags": ["积分"], "body": "会员积分一年后过期。"}
    assert api.put(f"/kb/articles/{kb}", article, hq)[0] == 201
    # reports: the range holds today's orders (and the night above is the latest the store report reads)
    east = tokens.staff("region_manager", region="east")
    week = f"from={(clock.business_day(clock.now()) - timedelta(days=6)).isoformat()}&to={today}"
    status, store_link = api.post("/stores/sh-001/report-links", {"to": today}, staff)
    assert status == 201, store_link
    status, kpi_link = api.post("/analytics/report-links", {"group_by": "day"}, east)
    assert status == 201, kpi_link
    return [
        ("/stores/{store_id}/report", "GET", f"/stores/sh-001/report?{week}", None, staff),
        ("/analytics/kpis", "GET", f"/analytics/kpis?{week}&group_by=city", None, east),
        ("/stores/{store_id}/report-links", "POST", "/stores/sh-001/report-links",
         {"from": "2026-01-01", "to": "2026-01-31"}, staff),
        ("/analytics/report-links", "POST", "/analytics/report-links", {"group_by": "store_type"}, hq),
        ("/stores/{store_id}/report.html", "GET", store_link["path"], None, None),  # a link: no bearer
        ("/analytics/report.html", "GET", kpi_link["path"], None, None),
        ("/kb/articles/{article_id}", "PUT", f"/kb/articles/{kb}", {**article, "body": "积分两年后过期。"}, hq),
        ("/kb/articles/{article_id}", "GET", f"/kb/articles/{kb}", None, staff),
        ("/kb/articles", "GET", "/kb/articles?q=%E7%A7%AF%E5%88%86%E8%BF%87%E6%9C%9F&limit=3", None, staff),
        # calendars: dates long past, so SLA clocks of other tests in the session count as before
        ("/calendars/brand", "PUT", "/calendars/brand",
         {"holidays": [{"start": "2020-10-01", "end": "2020-10-07", "name": "国庆节"}],
          "workdays": [{"date": "2020-10-10", "hours_of": "mon"}]}, hq),
        ("/calendars/brand", "GET", "/calendars/brand", None, staff),
        ("/calendars/{calendar_id}", "PUT", "/calendars/doc-office",
         {"name": "文档", "hours": {"mon": [{"open": "09:00", "close": "12:00"}, {"open": "13:00", "close": "18:00"}]}},
         hq),
        ("/calendars/{calendar_id}", "GET", "/calendars/doc-office", None, staff),
        ("/stores/{store_id}/closures", "PUT", "/stores/sh-001/closures",
         {"closures": [{"start": "2020-02-01", "end": "2020-02-03", "name": "文档"}]}, hq),
        ("/stores/{store_id}/closures", "GET", "/stores/sh-001/closures", None, staff),
        # SLA: the policy PUT back as read (new tickets keep the same targets), and what each caller was told
        ("/sla-policies", "GET", "/sla-policies", None, tokens.staff("store_manager", stores=["sh-001"])),
        ("/sla-policies", "PUT", "/sla-policies", sla_policy, hq),
        ("/notifications/me", "GET", "/notifications/me?limit=5", None, staff),
        ("/notifications/me/read", "POST", "/notifications/me/read", {"notification_ids": [f"doc-{tk}"]}, staff),
        ("/tickets", "GET", "/tickets?sla=at_risk&limit=2", None, hq),
        ("/tickets", "POST", "/tickets", {"ticket_id": f"doc-{uuid.uuid4().hex[:8]}", "channel": "hotline",
                                          "type": "inquiry", "subject": "问", "description": "营业时间"}, hq),
        ("/tickets", "GET", "/tickets?queue=store-sh-001&status=new&limit=2", None, staff),
        ("/tickets/{ticket_id}", "GET", f"/tickets/{tk}", None, staff),
        ("/tickets/stats", "GET", f"/tickets/stats?from={today}&to={today}&group_by=store", None,  # tk's store
         tokens.staff("region_manager", region="east")),
        ("/members/{member_id}/tickets", "GET", f"/members/{buyer}/tickets", None, staff),
        ("/tickets/{ticket_id}/actions", "POST", f"/tickets/{tk}/actions",
         {"action_id": "doc-c", "type": "comment", "body": "内部备注"}, staff),
        ("/tickets/{ticket_id}/tasks", "POST", f"/tickets/{tk}/tasks",
         {"task_id": f"doc-{uuid.uuid4().hex[:8]}", "store_id": "sh-002", "title": "调货",
          "due_at": "2026-12-30T12:00:00+08:00"}, staff),
        ("/queues/{queue_id}", "PUT", "/queues/doc-east", {"kind": "region", "name": "华东", "region_id": "east"}, hq),
        ("/queues/{queue_id}/agents/me", "PUT", "/queues/store-sh-001/agents/me", {"available": False}, staff),
        # tags: the rules PUT back as read (the nightly rules stay as they were); a tag given and taken back
        ("/tag-rules", "GET", "/tag-rules", None, tokens.staff("region_manager", region="east")),
        ("/tag-rules", "PUT", "/tag-rules", tag_rules, hq),
        ("/members/{member_id}/tags", "POST", f"/members/{buyer}/tags", {"tag": "文档"}, staff),
        ("/members/{member_id}/tags/{tag}", "DELETE", f"/members/{buyer}/tags/%E6%96%87%E6%A1%A3", None, staff),
        # the nightly segmentation: a store's distribution, the settings PUT back as read
        ("/analytics/rfm", "GET", "/analytics/rfm?store_id=sh-001&as_of=2020-01-03", None, staff),
        ("/rfm-settings", "GET", "/rfm-settings", None, tokens.staff("store_manager", stores=["sh-001"])),
        ("/rfm-settings", "PUT", "/rfm-settings", rfm_settings, hq),
        ("/routing-rules", "GET", "/routing-rules", None, hq),
        ("/routing-rules", "PUT", "/routing-rules", {"rules": routing["rules"], "version": routing["version"]}, hq),
        ("/stores/{store_id}/tasks", "GET", "/stores/sh-001/tasks?state=open&limit=5", None, staff),
        ("/tasks/{task_id}/complete", "POST", f"/tasks/{task_a}/complete", {"outcome": "done"}, staff),
        ("/tasks/{task_id}/assign", "POST", f"/tasks/{task_b}/assign", {"assignee": "staff-1"}, staff),
        ("/coupon-templates/{template_id}", "PUT", f"/coupon-templates/{tpl}-2",
         {**cash, "kind": "discount", "value": None, "pct": 85, "cap": 2_000, "budget": 100}, hq),
        ("/coupon-templates", "GET", "/coupon-templates", None, staff),
        ("/coupon-templates/{template_id}", "GET", f"/coupon-templates/{tpl}", None, staff),
        ("/coupon-issues", "POST", "/coupon-issues",
         {"issue_id": f"doc-{uuid.uuid4().hex[:8]}", "template_id": tpl, "member_ids": [buyer, m]}, hq),
        # a segment audience: the job is recorded and queued (202, its progress), then read back
        ("/coupon-issues", "POST", "/coupon-issues",
         {"issue_id": f"doc-{tpl}", "template_id": tpl, "audience": {"segment": "no_purchase", "tags": ["文档"]}}, hq),
        ("/coupon-issues/{issue_id}", "GET", f"/coupon-issues/doc-{tpl}", None, hq),
        ("/members/{member_id}/points/exchanges", "POST", f"/members/{buyer}/points/exchanges",
         {"exchange_id": "doc-x", "template_id": tpl}, staff),
        ("/coupons/{code}", "GET", f"/coupons/{code}?store_id=sh-001&order_amount=1000", None, staff),
        ("/coupons/{code}/redeem", "POST", f"/coupons/{code}/redeem",
         {"member_id": buyer, "store_id": "sh-001", "order_id": sale, "order_amount": 1_000,
          "lines": [{"sku": "a", "amount": 600}, {"sku": "b", "amount": 400}]}, staff),
        ("/coupons/{code}/redemption/cancel", "POST", f"/coupons/{code}/redemption/cancel", {"order_id": sale},
         staff),
        ("/members/{member_id}/coupons", "GET", f"/members/{buyer}/coupons?limit=5", None, staff),
        ("/benefit-pool/allocations", "POST", "/benefit-pool/allocations",
         {"allocation_id": f"doc-{uuid.uuid4().hex[:8]}", "template_id": tpl, "scope": "store", "scope_id": "sh-001",
          "quantity": 5}, hq),
        ("/benefit-pool", "GET", "/benefit-pool?store_id=sh-001", None, hq),
        ("/coupon-templates/{template_id}/stats", "GET",
         f"/coupon-templates/{tpl}/stats?from=2026-01-01&to=2026-12-31", None, hq),
        ("/coupons/settlement", "GET", "/coupons/settlement?month=2026-12", None, hq),
        ("/orders", "POST", "/orders", order(buyer, amount=1_000), staff),
        ("/orders/preview", "POST", "/orders/preview", order(buyer, amount=2_000), staff),
        ("/orders/{order_id}", "GET", f"/orders/{bought['order_id']}", None, staff),
        ("/orders/{order_id}/refunds", "POST", f"/orders/{bought['order_id']}/refunds",
         {"refund_id": "doc-ref", "amount": 1_000}, staff),
        ("/members/{member_id}/orders", "GET", f"/members/{buyer}/orders", None, staff),
        ("/members/{member_id}/points", "GET", f"/members/{buyer}/points", None, staff),
        ("/members/{member_id}/tier", "GET", f"/members/{buyer}/tier", None, staff),
        ("/members/{member_id}/points/redemptions", "POST", f"/members/{buyer}/points/redemptions",
         {"redemption_id": "doc-r1", "points": 10, "reason": "doc", "store_id": "sh-001"}, staff),
        ("/members/{member_id}/points/redemptions/{redemption_id}/cancel", "POST",
         f"/members/{buyer}/points/redemptions/doc-r0/cancel", None, staff),
        ("/members/{member_id}/points/adjustments", "POST", f"/members/{buyer}/points/adjustments",
         {"adjustment_id": "doc-a", "points": 7, "reason": "doc"}, hq),
        ("/tiers", "GET", "/tiers", None, staff),
        ("/tiers", "PUT", "/tiers", tiers, hq),
        ("/points/rules", "GET", "/points/rules", None, staff),
        ("/points/rules", "PUT", "/points/rules", rules, hq),
        ("/health", "GET", "/health", None, None),
        ("/openapi.json", "GET", "/openapi.json", None, None),
        ("/auth/wechat", "POST", "/auth/wechat", {"code": f"doc2~{uuid.uuid4().hex[:6]}"}, None),
        ("/members/me/phone", "POST", "/members/me/phone", {"code": f"phone-{unique_phone()}"}, session["token"]),
        ("/stores/{store_id}", "PUT", "/stores/doc-1",
         {"name": "文档店", "region_id": "east", "city": "上海", "store_type": "kiosk",
          "business_hours": {"mon": {"open": "09:00", "close": "21:00"}}}, hq),
        ("/stores", "GET", "/stores?limit=2", None, staff),
        ("/stores/{store_id}", "GET", "/stores/sh-001", None, staff),
        ("/members", "POST", "/members", registration(), staff),
        ("/members", "GET", f"/members?phone={unique_phone()}", None, staff),
        ("/members/{member_id}", "GET", f"/members/{m}", None, staff),
        ("/members/{member_id}", "PATCH", f"/members/{m}", {"name": "改名"}, staff),
        ("/members/{member_id}/merge", "POST", f"/members/{m}/merge", {"source_member_id": dup}, hq),
        ("/members/{member_id}/export", "GET", f"/members/{m}/export", None, hq),
        ("/members/{member_id}", "DELETE", f"/members/{gone}", None, hq),
    ]


def test_live_answers_match_documented_schemas(doc, api, tokens):
    examples = _examples(api, tokens)
    documented = {(p, m.upper()) for p, ops in doc["paths"].items() for m in ops}
    assert {(p, m) for p, m, *_ in examples} == documented, "add an example for every documented operation"
    for template, method, path, body, token in examples:
        status, media, answer = _call(api, method, path, body, token)
        assert status < 300, (method, path, status, answer)
        _check(doc, template, method, status, answer, media)
        if media == "text/html":  # a report page: the page it documents (every figure marked)
            assert answer.lstrip().startswith("<!DOCTYPE html>") and 'data-figure="' in answer, answer[:200]
        if token is not None or "?link=" in path:  # and the documented 401 (no token; a page: no link)
            status, media, answer = _call(api, method, path.split("?link=")[0], body, None)
            assert status == 401
            _check(doc, template, method, status, answer, media)


def test_documented_422_and_404_shapes(doc, api, tokens):
    status, body = api.post("/members", {"phone": "1"}, tokens.staff(stores=["sh-001"]))
    assert status == 422
    _check(doc, "/members", "POST", status, body)
    status, body = api.get("/members/01ARZ3NDEKTSV4RRFFQ69G5FAV", tokens.hq())
    assert status == 404
    _check(doc, "/members/{member_id}", "GET", status, body)


def _request_schemas(doc) -> dict[str, dict]:
    """Every component a request body reaches, with every query parameter's schema."""
    schemas, todo = doc["components"]["schemas"], []
    found: dict[str, dict] = {}
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            if "requestBody" in op:
                todo.append(op["requestBody"]["content"]["application/json"]["schema"])
            for param in op.get("parameters", []):
                found[f"{method} {path} ?{param['name']}"] = param["schema"]
    while todo:
        node = todo.pop()
        if isinstance(node, dict):
            ref = node.get("$ref")
            if ref and ref.rsplit("/", 1)[-1] not in found:
                name = ref.rsplit("/", 1)[-1]
                found[name] = schemas[name]
                todo.append(schemas[name])
            todo.extend(node.values())
        elif isinstance(node, list):
            todo.extend(node)
    return found


def _nodes(node):
    yield node
    children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else ()
    for child in children:
        yield from _nodes(child)


def test_request_schemas_have_no_null_default(doc):
    """openapi-typescript (default settings) turns a `default` into a required property; absent means none."""
    for name, schema in _request_schemas(doc).items():
        assert not [n for n in _nodes(schema) if isinstance(n, dict) and "default" in n and n["default"] is None], name


def test_query_parameters_are_never_null(doc):
    for name, schema in _request_schemas(doc).items():
        if "?" in name:
            assert {"type": "null"} not in list(_nodes(schema)), name


def test_refused_nulls_are_documented_as_not_nullable(doc, api, tokens):
    from chalicelib.api.openapi import REFUSED_NULL
    from chalicelib.domain.members import MemberPatch

    hq, staff = tokens.hq(), tokens.staff(stores=["sh-001"])
    member = api.post("/members", registration(), staff)[1]["member_id"]
    for model, fields in REFUSED_NULL.items():
        props = doc["components"]["schemas"][model.__name__]["properties"]
        for field in fields:
            assert {"type": "null"} not in list(_nodes(props[field])), (model.__name__, field)
    # MemberPatch is PATCH /members/{member_id}'s body: the use case refuses clearing these
    for field in REFUSED_NULL[MemberPatch]:
        status, body = api.patch(f"/members/{member}", {field: None}, hq)
        assert status == 422, (field, body)
        _check(doc, "/members/{member_id}", "PATCH", status, body)


def test_every_phone_the_document_describes_is_accepted():
    """The documented phone pattern is the form to send: never looser than the validation."""
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from chalicelib.api.openapi import PHONE
    from chalicelib.domain.phone import normalize_phone

    @settings(max_examples=200, deadline=None)
    @given(st.from_regex(PHONE["pattern"], fullmatch=True))
    def accepted(phone: str) -> None:
        assert normalize_phone(phone) == phone[-11:]

    accepted()


def test_issued_cursors_match_the_documented_cursor(doc, api, tokens):
    """The cursor parameter's pattern admits the cursors we hand out (and the first page's empty one)."""
    import re

    staff = tokens.staff(stores=["sh-001"])
    params = doc["paths"]["/stores"]["get"]["parameters"]
    pattern = next(p["schema"]["pattern"] for p in params if p["name"] == "cursor")
    status, page = api.get("/stores?limit=1", staff)
    assert status == 200 and page["next_cursor"], page
    assert re.fullmatch(pattern, page["next_cursor"]) and re.fullmatch(pattern, "")
    status, following = api.get(f"/stores?limit=1&cursor={page['next_cursor']}", staff)
    assert status == 200 and following["items"] != page["items"]
