"""Report links and pages through the API: a link opens its page without a bearer header, for ten minutes, for
the one store, range and scope it was made for; the JSON reports' defaults and limits."""
from __future__ import annotations

import time
from datetime import datetime, timedelta
from urllib.parse import parse_qs, urlparse

from chalicelib.adapters import links
from chalicelib.domain import clock
from testkit.ledger import order
from testkit.support import registration


def _open(api, url: str):  # noqa: ANN001
    """GET a link as a browser does: no bearer header, the raw response."""
    parsed = urlparse(url)
    return api.client.http.get(f"{parsed.path}?{parsed.query}" if parsed.query else parsed.path)


def test_a_store_link_opens_its_page_and_nothing_else(api, tokens):
    staff = tokens.staff("store_manager", stores=["sh-001"])
    member = api.post("/members", registration(store_id="sh-001"), staff)[1]["member_id"]
    assert api.post("/orders", order(member, amount=4_321), staff)[0] == 201
    status, link = api.post("/stores/sh-001/report-links", {}, staff)
    assert status == 201, link
    assert "Bearer" not in link["url"] and link["path"].startswith("/stores/sh-001/report.html?link=")
    assert 595 <= (datetime.fromisoformat(link["expires_at"]) - clock.now()).total_seconds() <= 600
    resp = _open(api, link["path"])
    assert resp.status_code == 200
    headers = {k.lower(): v for k, v in resp.headers.items()}
    assert headers["content-type"].startswith("text/html")
    assert "default-src 'none'" in headers["content-security-policy"]
    assert headers["referrer-policy"] == "no-referrer" and headers["cache-control"] == "no-store"
    page = resp.body.decode()
    status, report = api.get("/stores/sh-001/report", staff)
    assert f'data-figure="kpis.orders" data-value="{report["kpis"]["orders"]}"' in page

    token = parse_qs(urlparse(link["path"]).query)["link"][0]
    other = _open(api, f"/stores/sh-002/report.html?link={token}")  # the link names sh-001 only
    assert other.status_code == 404
    tampered = token[:-3] + ("AAA" if not token.endswith("AAA") else "BBB")
    bad = _open(api, f"/stores/sh-001/report.html?link={tampered}")
    assert bad.status_code == 401 and b"invalid_link" in bad.body
    assert _open(api, "/stores/sh-001/report.html").status_code == 401  # no link: no page
    kpi_page = _open(api, f"/analytics/report.html?link={token}")  # a store link is not an analytics link
    assert kpi_page.status_code == 401


def test_a_link_expires_after_ten_minutes(api, tokens, monkeypatch):
    hq = tokens.hq()
    status, link = api.post("/analytics/report-links", {"group_by": "region"}, hq)
    assert status == 201
    assert _open(api, link["path"]).status_code == 200
    later = time.time() + links.TTL_SECONDS + 1
    monkeypatch.setattr(links.time, "time", lambda: later)
    late = _open(api, link["path"])
    assert late.status_code == 401 and b"link_expired" in late.body


def test_a_link_is_bound_to_the_scope_it_was_made_with(api, tokens):
    """A region manager's KPI link opens their region's page only; a link cannot widen a scope."""
    east = tokens.staff("region_manager", region="east")
    status, link = api.post("/analytics/report-links", {"group_by": "store"}, east)
    assert status == 201
    page = _open(api, link["path"]).body.decode()
    assert 'data-value="region east"' in page
    assert "gz-001" not in page  # a south store never appears on an east manager's page
    staff = tokens.staff(stores=["gz-001"])
    status, err = api.post("/stores/sh-001/report-links", {}, staff)
    assert status == 403 and err["code"] == "store_out_of_scope"


def test_report_ranges_default_to_the_thirty_days_before_today_and_stop_at_a_year(api, tokens):
    hq = tokens.hq()
    status, report = api.get("/stores/sh-001/report", hq)
    yesterday = clock.business_day(clock.now()) - timedelta(days=1)
    assert status == 200 and report["to"] == yesterday.isoformat()
    assert report["from"] == (yesterday - timedelta(days=29)).isoformat() and len(report["daily"]) == 30
    status, err = api.get("/stores/sh-001/report?from=2025-01-01&to=2026-01-02", hq)
    assert status == 422 and err["code"] == "range_too_long"
    status, err = api.get("/stores/sh-001/report?from=2026-02-02&to=2026-02-01", hq)
    assert status == 422
    status, err = api.get("/stores/nope/report", hq)
    assert status == 404 and err["code"] == "store_not_found"
