"""The report pages as a store manager and HQ open them: the console asks the API for a signed link, headless
Chromium opens it from the running server (no bearer header, no token in the URL), the page shows no console
error, and every figure on it equals the JSON report the same caller gets. Screenshots land in
test-output/screenshots/. Without chromium or chromedriver this fails (it never skips)."""
from __future__ import annotations

from datetime import datetime, timedelta

import requests

from chalicelib.domain import clock
from functions.rfm import run_locally
from testkit.browser import open_page, screenshot_path
from testkit.support import auth, create_stores, registration


def _flatten(value: object, prefix: str = "") -> dict[str, str]:
    """The JSON as the page names its figures: dotted paths, lists by index, values as the page writes them."""
    if isinstance(value, dict):
        return {k: v for key, item in value.items() for k, v in _flatten(item, f"{prefix}{key}.").items()}
    if isinstance(value, list):
        return {k: v for i, item in enumerate(value) for k, v in _flatten(item, f"{prefix}{i}.").items()}
    return {prefix[:-1]: "" if value is None else str(value)}


def _link(live, path: str, body: dict, token: str) -> str:  # noqa: ANN001
    resp = requests.post(live.url + path, json=body, headers=auth(token), timeout=30)
    assert resp.status_code == 201, resp.text
    url = resp.json()["url"]
    assert url.startswith(live.url) and token not in url
    return url


def test_store_and_kpi_pages_show_what_the_json_says(stack, fresh_table, live, api, tokens):
    create_stores()
    manager = tokens.staff("store_manager", stores=["sh-001"])
    today = clock.business_day(clock.now())
    names = ["王小明", "李娜", "张伟", "<script>alert(1)</script>"]
    members = [api.post("/members", registration(store_id="sh-001", name=n), manager)[1]["member_id"] for n in names]
    for i, member in enumerate(members * 3):
        paid = datetime.combine(today - timedelta(days=1 + i % 9), datetime.min.time(), clock.BUSINESS_TZ) \
            .replace(hour=8 + (i * 5) % 14)
        body = {"order_id": f"page-{i}", "member_id": member, "store_id": "sh-001", "channel": "store",
                "paid_at": paid.isoformat(), "amount": 1_000 + 333 * i,
                "items": [{"sku": "s", "name": "奶茶", "category": "tea", "qty": 1, "amount": 1_000 + 333 * i}]}
        assert api.post("/orders", body, manager)[0] == 201
    run_locally({"segments": 1}, workers=1)

    status, report = api.get("/stores/sh-001/report", manager)
    assert status == 200 and report["kpis"]["orders"] == 12 and report["top_members"]
    with open_page(_link(live, "/stores/sh-001/report-links", {}, manager)) as page:
        assert page.console_errors() == []
        shown = page.figures()
        page.screenshot(screenshot_path("live_store_report"))
        print(f"screenshot: {screenshot_path('live_store_report')}")
        text = page.visible_text()
    want = _flatten(report)
    compared = [name for name in shown if name in want and name != "generated_at"]  # two requests, two instants
    assert len(compared) > 60  # kpis, hours, days, segments, best members, churn list
    assert {n: shown[n] for n in compared} == {n: want[n] for n in compared}
    for key in ("kpis.orders", "kpis.net_sales_fen", "hours.13"):
        assert key in compared
    assert "王**" in text and "alert(1)" not in text  # names masked on a shop screen
    assert "¥" in text and "Store sh-001" in text

    hq = tokens.hq()
    status, kpis = api.get("/analytics/kpis?group_by=region", hq)
    assert status == 200
    with open_page(_link(live, "/analytics/report-links", {"group_by": "region"}, hq)) as page:
        assert page.console_errors() == []
        shown = page.figures()
        page.screenshot(screenshot_path("live_kpis_by_region"))
    want = {**{f"total.{k}": str(v) for k, v in kpis["total"].items()},
            **{f"rows.{r['key']}.{k}": str(v) for r in kpis["rows"] for k, v in r["kpis"].items()}}
    compared = [name for name in shown if name in want]
    assert any(n.startswith("rows.east.") for n in compared) and "total.orders" in compared
    assert {n: shown[n] for n in compared} == {n: want[n] for n in compared}
