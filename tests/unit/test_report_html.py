"""The report pages as text: escaped, self-contained, every figure named and equal to its JSON, empty ranges
rendered as words. (tests/browser opens the same pages in Chromium.)"""
from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest

from chalicelib.api.report_html import CSP, analytics_page, fen, permille, store_page
from chalicelib.domain.segments import ALL_SEGMENTS
from tests.browser.samples import (
    HOSTILE,
    analytics,
    analytics_figures,
    empty_analytics,
    empty_store_report,
    full_store_report,
    store_figures,
)


class Figures(HTMLParser):
    """Every data-figure in document order: (name, value, the text inside it as shown: tooltips left out)."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.found: list[list[str]] = []
        self._open: list[tuple[int, str, int]] = []  # (index in found, tag, nesting of that tag)
        self._tooltip = 0
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._tooltip += tag == "title"
        self._open = [(i, t, n + (t == tag)) for i, t, n in self._open]
        a = dict(attrs)
        if "data-figure" in a:
            self.found.append([a["data-figure"], a.get("data-value") or "", ""])
            self._open.append((len(self.found) - 1, tag, 1))

    def handle_endtag(self, tag: str) -> None:
        self._tooltip -= tag == "title"
        self._open = [(i, t, n - (t == tag)) for i, t, n in self._open]
        self._open = [o for o in self._open if o[2] > 0]

    def handle_data(self, data: str) -> None:
        if self._tooltip:
            return
        for i, _, _ in self._open:
            self.found[i][2] += data

    @property
    def values(self) -> dict[str, str]:
        names = [f[0] for f in self.found]
        assert len(names) == len(set(names)), "a figure name appears twice"
        return {name: value for name, value, _ in self.found}

    @property
    def texts(self) -> dict[str, str]:
        return {name: text for name, _, text in self.found}


def test_money_and_rates_are_formatted_from_integers() -> None:
    assert fen(123456) == "¥1,234.56"
    assert fen(5) == "¥0.05"
    assert fen(0) == "¥0.00"
    assert fen(-123456789) == "-¥1,234,567.89"
    assert permille(1234) == "123.4%"
    assert permille(5) == "0.5%"
    assert permille(0) == "0.0%"
    assert permille(1000) == "100.0%"


@pytest.mark.parametrize("make", [full_store_report, empty_store_report])
def test_every_figure_of_the_store_report_is_on_the_page_with_its_json_value(make) -> None:
    report = make()
    # Given a store report, When it is rendered, Then the page's figures are exactly the JSON's
    assert Figures(store_page(report)).values == store_figures(report)


@pytest.mark.parametrize("answer", [analytics("region"), analytics("store"), analytics("day"), empty_analytics()],
                         ids=["region", "store", "day", "empty"])
def test_every_figure_of_the_analytics_answer_is_on_the_page_with_its_json_value(answer) -> None:
    assert Figures(analytics_page(answer)).values == analytics_figures(answer)


def test_tiles_show_money_and_rates_formatted() -> None:
    report = full_store_report()
    report["kpis"] |= {"net_sales_fen": 123456, "member_share_permille": 593, "orders": 12345}
    texts = Figures(store_page(report)).texts
    assert texts["kpis.net_sales_fen"] == "¥1,234.56"
    assert texts["kpis.member_share_permille"] == "59.3%"
    assert texts["kpis.orders"] == "12,345"
    assert texts["repurchase.rate_permille"] == "31.5%"
    assert texts["top_members.0.monetary"] == "¥9,000.00"
    assert texts["hours.12"] == f"{report['hours'][12]:,}"  # the bar's label


def test_segments_follow_the_domain_order_and_show_signed_changes() -> None:
    report = full_store_report()
    found = Figures(store_page(report))
    order = [n.removeprefix("segments.counts.") for n, _, _ in found.found if n.startswith("segments.counts.")]
    assert order == list(ALL_SEGMENTS)
    assert found.texts[f"segments.change.{ALL_SEGMENTS[0]}"] == "\u221217"  # a minus sign, not a hyphen
    assert found.texts[f"segments.change.{ALL_SEGMENTS[1]}"] == "+9"


def test_text_from_the_data_is_escaped() -> None:
    for html in (store_page(full_store_report()), analytics_page(analytics())):
        # Given names, store names and labels holding a script tag, Then the page has no script element at all
        assert "<script" not in html.lower()
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    report = full_store_report()
    report["top_members"][0]["member_id"] = '"><img src=x onerror=alert(1)>'
    html = store_page(report, title=HOSTILE)
    assert "<img" not in html and "<script" not in html.lower()
    assert Figures(html).values["top_members.0.member_id"] == '"><img src=x onerror=alert(1)>'


@pytest.mark.parametrize("html", [store_page(full_store_report()), store_page(empty_store_report()),
                                  analytics_page(analytics("day")), analytics_page(empty_analytics())],
                         ids=["store", "store-empty", "analytics-day", "analytics-empty"])
def test_the_page_loads_nothing_from_anywhere(html: str) -> None:
    assert "http://" not in html and "https://" not in html
    assert "<script" not in html.lower() and "@import" not in html and "url(" not in html
    for attr in re.findall(r'\b(?:src|href)\s*=\s*"([^"]*)"', html):
        assert attr.startswith("data:"), attr
    assert f'<meta http-equiv="Content-Security-Policy" content="{CSP}">' in html
    assert CSP == "default-src 'none'; style-src 'unsafe-inline'; img-src data:"


def test_an_empty_range_reads_as_words_not_as_broken_charts() -> None:
    # Given a store with no orders, no nightly run yet and no members to list
    html = store_page(empty_store_report())
    # Then each part says so, and no chart is drawn over nothing
    for words in ("No orders in this range", "No nightly segmentation yet", "No coupons issued or redeemed",
                  "No member purchases in the last 12 months", "No member is overdue", "no data yet"):
        assert words in html
    assert "<svg" not in html
    assert "NaN" not in html and "Infinity" not in html


def test_segments_without_a_night_before_show_counts_only() -> None:
    report = full_store_report()
    report["segments"]["change"] = None
    found = Figures(store_page(report)).values
    assert not any(n.startswith("segments.change.") for n in found)
    assert "no earlier night to compare" in store_page(report)


def test_a_range_of_refunds_only_draws_a_bar_below_zero() -> None:
    # Given a range whose only event is a refund (net sales negative, no order)
    report = empty_store_report()
    report["daily"][2] |= {"refunds_fen": 5000, "net_sales_fen": -5000}
    report["kpis"] |= {"refunds_fen": 5000, "net_sales_fen": -5000, "refunds": 1}
    html = store_page(report)
    found = Figures(html)
    # Then the trend is drawn, the day hangs below the axis, and the tile shows the sign
    assert found.values[f"daily.{report['daily'][2]['day']}.net_sales_fen"] == "-5000"
    assert 'class="bar neg"' in html
    assert found.texts["kpis.net_sales_fen"] == "-¥50.00"
    assert "No orders in this range" in html  # the hours chart has nothing to draw


def test_analytics_by_day_draws_the_trend_in_day_order() -> None:
    answer = analytics("day")  # rows arrive newest first
    charted = [n for n, _, _ in Figures(analytics_page(answer)).found if n.startswith("chart.")]
    assert charted == sorted(charted) and len(charted) == 30
    assert "<svg" in analytics_page(answer)
    assert "<svg" not in analytics_page(analytics("region"))  # places are bars with their names


def test_the_title_can_be_given() -> None:
    assert "<title>Morning report</title>" in store_page(empty_store_report(), title="Morning report")
    assert "<title>New store · 2026-11-01 – 2026-11-07</title>" in store_page(empty_store_report())
