"""The report pages in a real browser (headless Chromium, testkit/browser.py): they render without a console
error under their own CSP, every figure Chromium sees equals the JSON, the key numbers are on screen, phones
get no sideways page, and a screenshot of each lands in test-output/screenshots/.

No fixture of tests/conftest.py is used (no DynamoDB Local). Without chromium or chromedriver these fail
with what to install: they never skip."""
from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import pytest

from chalicelib.api.report_html import analytics_page, fen, permille, store_page
from testkit import browser as harness
from testkit.browser import Browser, BrowserMissing, loaded_html, screenshot_path
from tests.browser.samples import (
    HOSTILE,
    analytics,
    analytics_figures,
    empty_analytics,
    empty_store_report,
    full_store_report,
    store_figures,
)


@pytest.fixture(scope="module")
def chromium() -> Iterator[Browser]:
    with harness.browser() as b:  # one browser for the module: each start costs about a second
        yield b


def _shoot(page: harness.Page, name: str) -> None:
    path = page.screenshot(screenshot_path(name))
    assert path.stat().st_size > 10_000  # a real picture, not a blank
    print(f"screenshot: {path}")


def _check_store(chromium: Browser, report: dict[str, Any], name: str) -> str:
    with loaded_html(store_page(report), using=chromium) as page:
        assert page.console_errors() == []
        assert page.figures() == store_figures(report)
        text = page.visible_text()
        k = report["kpis"]
        for shown in (fen(k["net_sales_fen"]), f"{k['orders']:,}", fen(k["average_ticket_fen"]),
                      permille(k["member_share_permille"]), f"{k['new_members']:,}",
                      permille(k["coupon_redemption_permille"]), report["from"], report["to"]):
            assert shown in text, shown
        _shoot(page, name)
        return text


def test_the_full_store_report_renders_every_figure(chromium: Browser) -> None:
    report = full_store_report()
    text = _check_store(chromium, report, "store_full")
    with loaded_html(store_page(report), using=chromium) as page:
        on_screen = page.figure_texts()
    # The numbers people read are on screen, formatted: each hour's bar label, each segment, each member
    for h, n in enumerate(report["hours"]):
        assert on_screen[f"hours.{h}"] == (f"{n:,}" if n else "")
    for s, n in report["segments"]["counts"].items():
        assert on_screen[f"segments.counts.{s}"] == f"{n:,}"
        assert s in text
    for i, m in enumerate(report["top_members"]):
        assert on_screen[f"top_members.{i}.monetary"] == fen(m["monetary"])
        assert on_screen[f"top_members.{i}.member_id"] == m["member_id"]
    assert on_screen["segments.change." + next(iter(report["segments"]["change"]))] == "\u221217"
    assert "张*" in text and "上海" in text
    assert HOSTILE in text  # shown as text: had it run, the CSP would have refused it with a console error
    assert permille(report["repurchase"]["rate_permille"]) in text


def test_an_empty_store_report_renders_words(chromium: Browser) -> None:
    text = _check_store(chromium, empty_store_report(), "store_empty")
    for words in ("No orders in this range", "No nightly segmentation yet", "No member purchases in the last 12 months",
                  "No member is overdue"):
        assert words in text


@pytest.mark.parametrize("answer", [analytics("region"), analytics("day"), empty_analytics()],
                         ids=["region", "day", "empty"])
def test_the_analytics_page_renders_every_figure(chromium: Browser, answer: dict[str, Any]) -> None:
    with loaded_html(analytics_page(answer), using=chromium) as page:
        assert page.console_errors() == []
        assert page.figures() == analytics_figures(answer)
        text = page.visible_text()
        assert fen(answer["total"]["net_sales_fen"]) in text
        for row in answer["rows"]:
            assert page.figure_texts()[f"rows.{row['key']}.net_sales_fen"] == fen(row["kpis"]["net_sales_fen"])
        if not answer["rows"]:
            assert "No rows for this range" in text
        _shoot(page, f"analytics_{answer['group_by']}" + ("_empty" if not answer["rows"] else ""))


def test_on_a_phone_the_page_never_scrolls_sideways(chromium: Browser) -> None:
    chromium.driver.set_window_size(390, 1600)
    try:
        with loaded_html(store_page(full_store_report()), using=chromium) as page:
            overflow = page.driver.execute_script(
                "return document.documentElement.scrollWidth - document.documentElement.clientWidth;")
            assert overflow <= 0  # the wide parts (charts, tables) scroll inside their own box
            assert page.console_errors() == []
            _shoot(page, "store_full_phone")
    finally:
        chromium.driver.set_window_size(*harness.WINDOW)


def test_the_page_prints(chromium: Browser) -> None:
    with loaded_html(store_page(full_store_report()), using=chromium) as page:
        pdf = base64.b64decode(page.driver.print_page())
    assert pdf.startswith(b"%PDF")


def test_the_harness_reports_what_the_csp_refuses(chromium: Browser) -> None:
    # Given a page that tries to load an outside image under the reports' CSP (refused before any network)
    from chalicelib.api.report_html import CSP

    html = (f'<!DOCTYPE html><html><head><meta http-equiv="Content-Security-Policy" content="{CSP}"></head>'
            '<body><img src="https://example.invalid/pixel.png" alt=""></body></html>')
    with loaded_html(html, using=chromium) as page:
        # Then the harness sees the refusal: an empty console_errors() above means something
        assert any("Content Security Policy" in e for e in page.console_errors())


def test_a_missing_browser_fails_with_what_to_install(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.setattr(harness, "CHROMEDRIVER", tmp_path / "chromedriver")
    with pytest.raises(BrowserMissing, match="apt-get install -y chromium chromium-driver"):
        with harness.open_page("about:blank"):
            pass
