"""The store report and analytics pages as self-contained HTML: inline CSS and server-built SVG, no script,
no fetch of anything (a strict CSP in the page says so), so a link opens offline, with scripts disabled, and
prints. Pure: the dicts the JSON routes answer go in, a string comes out.

Every figure on the page carries `data-figure` (its path in the JSON, e.g. `kpis.orders`, `hours.7`,
`daily.2026-11-03.net_sales_fen`) and `data-value` (the JSON's raw value), so a test can hold the page
against the JSON it came from."""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from html import escape
from typing import Any

from ..domain.segments import ALL_SEGMENTS

CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"
DASH = "—"
MINUS = "\u2212"  # a real minus sign for changes: a hyphen reads as a dash next to a number

# The tiles at the top of the store page, in reading order: (kpis key, label, format)
STORE_TILES = (("net_sales_fen", "Net sales", "fen"), ("orders", "Orders", "int"),
               ("average_ticket_fen", "Average ticket", "fen"), ("member_share_permille", "Member share", "permille"),
               ("new_members", "New members", "int"), ("coupon_redemption_permille", "Coupon redemption", "permille"))
# The rest of the kpis object, in a compact list under the tiles (the coupon counts are in the funnel)
STORE_DETAILS = (("sales_fen", "Gross sales", "fen"), ("refunds_fen", "Refunded", "fen"), ("refunds", "Refunds", "int"),
                 ("member_orders", "Member orders", "int"), ("guest_orders", "Guest orders", "int"),
                 ("discount_fen", "Coupon discounts", "fen"), ("points_issued", "Points issued", "int"),
                 ("points_reversed", "Points reversed", "int"))
# The analytics page's tiles and table columns
ANALYTICS_COLUMNS = (("orders", "Orders", "int"), ("net_sales_fen", "Net sales", "fen"),
                     ("average_ticket_fen", "Average ticket", "fen"),
                     ("member_share_permille", "Member share", "permille"), ("new_members", "New members", "int"),
                     ("coupon_redemption_permille", "Coupon redemption", "permille"))


# ---------------------------------------------------------------------------------------------- formatting
def fen(value: int) -> str:
    """123456 -> ¥1,234.56; integer arithmetic, so no float ever rounds a fen away."""
    sign = "-" if value < 0 else ""
    yuan, cents = divmod(abs(value), 100)
    return f"{sign}¥{yuan:,}.{cents:02d}"


def permille(value: int) -> str:
    """1234 -> 123.4%."""
    sign = "-" if value < 0 else ""
    whole, tenth = divmod(abs(value), 10)
    return f"{sign}{whole:,}.{tenth}%"


def change(value: int) -> str:
    return f"+{value:,}" if value > 0 else f"{MINUS}{-value:,}" if value < 0 else "±0"


def _show(value: Any, kind: str) -> str:
    if value is None:
        return DASH
    if kind == "fen":
        return fen(value)
    if kind == "permille":
        return permille(value)
    if kind == "int":
        return f"{value:,}"
    return str(value)


def _t(value: Any) -> str:
    """Any text from the data, escaped (names and ids may hold markup)."""
    return escape(DASH if value is None else str(value))


def _fig(name: str, value: Any, text: str, *, tag: str = "span", cls: str = "") -> str:
    """One figure: `text` is already HTML (formatted numbers are escaped by their caller)."""
    raw = "" if value is None else str(value)
    klass = f' class="{cls}"' if cls else ""
    return f'<{tag}{klass} data-figure="{escape(name)}" data-value="{escape(raw)}">{text}</{tag}>'


def _num(name: str, value: Any, kind: str, *, tag: str = "span", cls: str = "") -> str:
    return _fig(name, value, escape(_show(value, kind)), tag=tag, cls=cls)


# ---------------------------------------------------------------------------------------------- SVG charts
@dataclass(frozen=True)
class Column:
    """One bar of a column chart: its axis label, value, figure name and hover text."""
    label: str
    value: int
    figure: str
    tip: str


def _nice(value: int) -> int:
    """The axis end: the smallest 1, 1.5, 2, 2.5, 3, 4, 5, 6 or 8 x 10^k >= value (tight enough that the bars
    fill the chart, round enough to read; its half is a tick too). Small counts end at themselves."""
    if value <= 10:
        return max(value, 0)
    step = 1
    while True:
        for m in (10, 15, 20, 25, 30, 40, 50, 60, 80):
            if m * step >= value * 10:
                return m * step // 10
        step *= 10


def _axis_money(value: int) -> str:
    return f"¥{value // 100:,}" if value % 100 == 0 else fen(value)


def column_chart(columns: Sequence[Column], *, money: bool, label_bars: bool, label_every: int = 1,
                 caption: str) -> str:
    """Vertical bars from a zero baseline (negative days, e.g. refunds only, hang below it), y-axis ticks at
    readable values, x labels every `label_every` columns. It scales with its viewBox down to 560px wide, then
    scrolls sideways: a phone-wide chart would shrink its labels past reading."""
    width, height, left, top, bottom = 960, 280, 70, 24, 40
    hi = _nice(max([c.value for c in columns if c.value > 0], default=0)) or 1
    lo = -_nice(-min([c.value for c in columns if c.value < 0], default=0))
    plot_h = height - top - bottom
    span = hi - lo  # >= 1: hi is never 0

    def y(v: int) -> float:
        return top + (hi - v) * plot_h / span

    slot = (width - left - 10) / max(len(columns), 1)
    bar_w = max(slot * 0.7, 1)
    ticks: list[int] = []
    for t in (0, hi, hi // 2, lo):  # a tick too close to one already drawn would print over it
        if all(abs(y(t) - y(k)) >= 16 for k in ticks):
            ticks.append(t)
    fmt = _axis_money if money else (lambda v: f"{v:,}")
    out = [f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" aria-label="{escape(caption)}">']
    for t in ticks:
        out.append(f'<line class="grid" x1="{left}" x2="{width - 10}" y1="{y(t):.1f}" y2="{y(t):.1f}"/>'
                   f'<text class="axis" x="{left - 6}" y="{y(t) + 4:.1f}" text-anchor="end">{escape(fmt(t))}</text>')
    for i, c in enumerate(columns):
        x = left + i * slot + (slot - bar_w) / 2
        y0, y1 = sorted((y(0), y(c.value)))
        cls = "bar neg" if c.value < 0 else "bar"
        parts = [f'<title>{escape(c.tip)}</title>',
                 f'<rect class="{cls}" x="{x:.1f}" y="{y0:.1f}" width="{bar_w:.1f}" height="{max(y1 - y0, 0):.1f}"/>']
        if label_bars and c.value:
            parts.append(f'<text class="val" x="{x + bar_w / 2:.1f}" y="{y0 - 4:.1f}" text-anchor="middle">'
                         f'{c.value:,}</text>')
        out.append(_fig(c.figure, c.value, "".join(parts), tag="g"))
        if i % label_every == 0 or i == len(columns) - 1:
            out.append(f'<text class="axis" x="{x + bar_w / 2:.1f}" y="{height - bottom + 16}" '
                       f'text-anchor="middle">{escape(c.label)}</text>')
    out.append("</svg>")
    return f'<div class="scroll">{"".join(out)}</div>'


def bar_rows(rows: Iterable[tuple[str, str, int, str]], *, extra: Mapping[str, str] | None = None) -> str:
    """Horizontal bars as an HTML grid (label, bar, value[, extra]): the labels wrap on phones and stay text.
    Each row: (label HTML, figure name, value, value HTML)."""
    rows = list(rows)
    top = max([abs(v) for _, _, v, _ in rows], default=0) or 1
    out = ['<div class="hbars">']
    for label, figure, value, shown in rows:
        pct = abs(value) * 100 / top
        cls = "fill neg" if value < 0 else "fill"
        out.append(f'<div class="hrow"><div class="hlabel">{label}</div>'
                   f'<div class="track"><div class="{cls}" style="width:{pct:.1f}%"></div></div>'
                   f'{_fig(figure, value, shown, cls="hval")}'
                   f'{(extra or {}).get(figure, "")}</div>')
    out.append("</div>")
    return "".join(out)


# ---------------------------------------------------------------------------------------------- page pieces
def _tile(figure: str, value: Any, label: str, kind: str, note: str = "", *, hero: bool = False) -> str:
    shown = _num(figure, value, kind, cls="big") if value is not None else '<span class="big">—</span>'
    return (f'<div class="tile{" hero" if hero else ""}"><div class="label">{escape(label)}</div>{shown}'
            f'<div class="note">{note}</div></div>')


def _section(title: str, body: str, note: str = "") -> str:
    sub = f'<p class="sub">{note}</p>' if note else ""
    return f'<section><h2>{escape(title)}</h2>{sub}{body}</section>'


def _empty(text: str) -> str:
    return f'<p class="empty">{escape(text)}</p>'


def _table(head: Sequence[str], rows: Sequence[Sequence[str]], *, numeric_from: int) -> str:
    """A scrollable table (phones scroll it sideways); cells are HTML; columns from `numeric_from` align right."""
    th = "".join(f'<th{" class=n" if i >= numeric_from else ""}>{escape(h)}</th>' for i, h in enumerate(head))
    body = "".join("<tr>" + "".join(f'<td{" class=n" if i >= numeric_from else ""}>{c}</td>'
                                    for i, c in enumerate(r)) + "</tr>" for r in rows)
    return f'<div class="scroll"><table><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table></div>'


def _member_cell(prefix: str, row: Mapping[str, Any]) -> str:
    phone = f' <span class="muted">{_t(row.get("phone_masked"))}</span>' if row.get("phone_masked") else ""
    return (f'<div>{_t(row.get("name"))}{phone}</div>'
            f'{_fig(f"{prefix}.member_id", row.get("member_id"), _t(row.get("member_id")), cls="id")}')


def _segment_section(segments: Mapping[str, Any] | None) -> str:
    if segments is None:
        return _section("Member segments", _empty("No nightly segmentation yet"))
    counts: Mapping[str, int] = segments.get("counts") or {}
    changes: Mapping[str, int] | None = segments.get("change")
    # The domain's order; a name the domain does not know (yet) is still shown, after the known ones
    names = [s for s in ALL_SEGMENTS if s in counts] + sorted(set(counts) - set(ALL_SEGMENTS))
    extra = {}
    if changes is not None:
        for s in names:
            d = changes.get(s)
            if d is not None:
                cls = "chg up" if d > 0 else "chg down" if d < 0 else "chg"
                extra[f"segments.counts.{s}"] = _fig(f"segments.change.{s}", d, escape(change(d)), cls=cls)
    rows = [(escape(s), f"segments.counts.{s}", counts[s], f"{counts[s]:,}") for s in names]
    note = (f'Night of {_fig("segments.as_of", segments.get("as_of"), _t(segments.get("as_of")))} · '
            f'{_num("segments.members", segments.get("members"), "int")} members · '
            + ("change since the night before" if changes is not None else "no earlier night to compare"))
    return _section("Member segments", bar_rows(rows, extra=extra) if names else _empty("No members segmented"), note)


def _funnel_section(k: Mapping[str, Any]) -> str:
    issued, redeemed = k.get("coupons_issued") or 0, k.get("coupons_redeemed") or 0
    orders, coupon_orders = k.get("orders") or 0, k.get("coupon_orders") or 0
    if not (issued or redeemed or coupon_orders):  # the zeros still show, as plain text
        return _section("Coupons", _empty("No coupons issued or redeemed in this range")
                        + f'<p>Issued {_num("kpis.coupons_issued", issued, "int")} · redeemed '
                          f'{_num("kpis.coupons_redeemed", redeemed, "int")} · coupon orders '
                          f'{_num("kpis.coupon_orders", coupon_orders, "int")}</p>')
    funnel = bar_rows([("Issued", "kpis.coupons_issued", issued, f"{issued:,}"),
                       ("Redeemed", "kpis.coupons_redeemed", redeemed, f"{redeemed:,}")])
    rate = k.get("coupon_redemption_permille")
    share = None if not orders else coupon_orders * 1000 // orders  # derived: the one figure not in the JSON
    line = (f'<p>{_num("kpis.coupon_orders", coupon_orders, "int")} of {orders:,} orders used a coupon'
            + (f' ({_num("funnel.coupon_order_share_permille", share, "permille")})' if share is not None else "")
            + f' · redemption rate {escape(_show(rate, "permille"))}</p>')
    return _section("Coupons", funnel + line, "issued → redeemed in this range")


def _top_section(top: Sequence[Mapping[str, Any]]) -> str:
    if not top:
        return _section("Top members", _empty("No member purchases in the last 12 months (as of last night)"))
    rows = [[str(i + 1), _member_cell(f"top_members.{i}", m), _t(m.get("segment")), _t(m.get("tier")),
             _num(f"top_members.{i}.monetary", m.get("monetary"), "fen"),
             _num(f"top_members.{i}.frequency", m.get("frequency"), "int"),
             _num(f"top_members.{i}.recency_days", m.get("recency_days"), "int")] for i, m in enumerate(top)]
    table = _table(["#", "Member", "Segment", "Tier", "Spend", "Orders", "Days since"], rows, numeric_from=4)
    return _section("Top members", table, "home-store members by spend over the last 12 months, as of last night")


def _churn_section(churn: Sequence[Mapping[str, Any]]) -> str:
    if not churn:
        return _section("Churn warnings", _empty("No member is overdue"))
    rows = [[_member_cell(f"churn.{i}", m), _t(m.get("tier")),
             _num(f"churn.{i}.monetary", m.get("monetary"), "fen"),
             _num(f"churn.{i}.lifetime_spend", m.get("lifetime_spend"), "fen"),
             _fig(f"churn.{i}.usual_gap_days", m.get("usual_gap_days"), _t(m.get("usual_gap_days"))),
             _num(f"churn.{i}.days_since_purchase", m.get("days_since_purchase"), "int")]
            for i, m in enumerate(churn)]
    table = _table(["Member", "Tier", "Spend", "Lifetime", "Usual gap (days)", "Days since"], rows, numeric_from=2)
    return _section("Churn warnings", table, "regulars who are well past their usual gap, by spend")


def _daily_section(daily: Sequence[Mapping[str, Any]]) -> str:
    if not any(d.get("net_sales_fen") or d.get("orders") for d in daily):
        return _section("Sales trend", _empty("No orders in this range"))
    every = max(1, round(len(daily) / 10))  # about ten date labels, whatever the range
    cols = [Column(str(d["day"])[5:] if len(str(d["day"])) == 10 else str(d["day"]), d.get("net_sales_fen") or 0,
                   f"daily.{d['day']}.net_sales_fen",
                   f"{d['day']}: {fen(d.get('net_sales_fen') or 0)} net, {d.get('orders') or 0:,} orders")
            for d in daily]
    return _section("Sales trend", column_chart(cols, money=True, label_bars=False, label_every=every,
                                                caption="Daily net sales"), "daily net sales")


def _hours_section(hours: Sequence[int]) -> str:
    if not any(hours):
        return _section("Orders by hour", _empty("No orders in this range"))
    cols = [Column(str(h), n, f"hours.{h}", f"{h:02d}:00–{h:02d}:59: {n:,} orders") for h, n in enumerate(hours)]
    return _section("Orders by hour", column_chart(cols, money=False, label_bars=True, caption="Orders by hour"),
                    "hour paid, Asia/Shanghai")


def _details(k: Mapping[str, Any]) -> str:
    items = "".join(f'<div><dt>{escape(label)}</dt><dd>{_num(f"kpis.{key}", k.get(key), kind)}</dd></div>'
                    for key, label, kind in STORE_DETAILS)
    return f'<dl class="details">{items}</dl>'


# ---------------------------------------------------------------------------------------------- pages
def store_page(report: dict, *, title: str | None = None) -> str:
    """The store report (GET /stores/{store_id}/report's answer) as one HTML page."""
    store = report.get("store") or {}
    k = report.get("kpis") or {}
    rep = report.get("repurchase")
    tiles = [_tile(f"kpis.{key}", k.get(key), label, kind, hero=key == "net_sales_fen")
             for key, label, kind in STORE_TILES]
    tiles.append(_tile("repurchase.rate_permille", None if rep is None else rep.get("rate_permille"),
                       "Repurchase rate", "permille",
                       "no data yet" if rep is None else
                       f'{_num("repurchase.repeat_buyers", rep.get("repeat_buyers"), "int")} of '
                       f'{_num("repurchase.buyers", rep.get("buyers"), "int")} buyers came back'))
    name = store.get("name") or store.get("store_id")
    heading = (f'<h1>{_fig("store.name", store.get("name"), _t(name))}</h1>'
               f'<p class="sub">{_fig("store.store_id", store.get("store_id"), _t(store.get("store_id")))} · '
               f'{_t(store.get("city"))} · region {_t(store.get("region_id"))} · {_t(store.get("store_type"))}</p>'
               f'<p class="range">{_fig("from", report.get("from"), _t(report.get("from")))} – '
               f'{_fig("to", report.get("to"), _t(report.get("to")))} '
               f'({_num("days", report.get("days"), "int")} days)</p>')
    body = (heading + f'<div class="tiles four">{"".join(tiles)}</div>' + _details(k)
            + _daily_section(report.get("daily") or []) + _hours_section(report.get("hours") or [])
            + _segment_section(report.get("segments")) + _funnel_section(k)
            + _top_section(report.get("top_members") or []) + _churn_section(report.get("churn") or []))
    page_title = title or f"{name} · {report.get('from')} – {report.get('to')}"
    return _page(page_title, body, report.get("generated_at"))


def analytics_page(kpis: dict) -> str:
    """The analytics KPIs (GET /analytics/kpis's answer) as one HTML page."""
    total = kpis.get("total") or {}
    rows: list[Mapping[str, Any]] = kpis.get("rows") or []
    group_by = kpis.get("group_by")
    tiles = "".join(_tile(f"total.{key}", total.get(key), label, kind) for key, label, kind in ANALYTICS_COLUMNS)
    heading = (f'<h1>Sales and members by {_fig("group_by", group_by, _t(group_by))}</h1>'
               f'<p class="sub">{_fig("scope", kpis.get("scope"), _t(kpis.get("scope")))}</p>'
               f'<p class="range">{_fig("from", kpis.get("from"), _t(kpis.get("from")))} – '
               f'{_fig("to", kpis.get("to"), _t(kpis.get("to")))}</p>')
    if not rows:
        chart = _section("Net sales", _empty("No rows for this range"))
        table = ""
    else:
        chart = _section("Net sales", _rows_chart(rows, by_day=group_by == "day"))
        head = ["", *(label for _, label, _ in ANALYTICS_COLUMNS)]
        cells = [[_row_label(r), *(_num(f"rows.{r.get('key')}.{key}", (r.get("kpis") or {}).get(key), kind)
                                   for key, _, kind in ANALYTICS_COLUMNS)] for r in rows]
        table = _section("Every " + str(group_by or "row"), _table(head, cells, numeric_from=1))
    body = heading + f'<div class="tiles three">{tiles}</div>' + chart + table
    title = f"{kpis.get('scope') or 'Analytics'} · {kpis.get('from')} – {kpis.get('to')}"
    return _page(title, body, kpis.get("generated_at"))


def _row_label(row: Mapping[str, Any]) -> str:
    key, label = row.get("key"), row.get("label")
    if label and label != key:
        return f'{_t(label)} <span class="muted">{_t(key)}</span>'
    return _t(key)


def _rows_chart(rows: Sequence[Mapping[str, Any]], *, by_day: bool) -> str:
    def net(r: Mapping[str, Any]) -> int:
        return (r.get("kpis") or {}).get("net_sales_fen") or 0

    if by_day:  # a trend reads left to right in day order, whatever order the rows came in
        ordered = sorted(rows, key=lambda r: str(r.get("key")))
        every = max(1, round(len(ordered) / 10))
        cols = [Column(str(r.get("key"))[5:], net(r), f"chart.{r.get('key')}.net_sales_fen",
                       f"{r.get('key')}: {fen(net(r))}") for r in ordered]
        return column_chart(cols, money=True, label_bars=False, label_every=every, caption="Net sales by day")
    return bar_rows((_row_label(r), f"chart.{r.get('key')}.net_sales_fen", net(r), escape(fen(net(r))))
                    for r in rows)


def _page(title: str, body: str, generated_at: Any) -> str:
    footer = f'<footer>Generated {_fig("generated_at", generated_at, _t(generated_at))}</footer>'
    return ("<!DOCTYPE html>"
            '<html lang="en"><head><meta charset="utf-8">'
            f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            '<meta name="referrer" content="no-referrer">'
            # an empty icon: otherwise the browser asks the server for /favicon.ico and logs the refusal
            '<link rel="icon" href="data:,">'
            f"<title>{escape(title)}</title><style>{STYLE}</style></head>"
            f"<body><main>{body}{footer}</main></body></html>")


STYLE = """
:root{--ink:#1f2933;--muted:#66788a;--line:#e4e7eb;--bar:#2f80ed;--neg:#d64545;--up:#1f8a4c;--bg:#f5f7fa}
*{box-sizing:border-box}
body{margin:0;background:var(--bg);color:var(--ink);font:15px/1.45 -apple-system,BlinkMacSystemFont,"Segoe UI",
"PingFang SC","Hiragino Sans GB","Microsoft YaHei","Noto Sans CJK SC","Source Han Sans SC","WenQuanYi Micro Hei",
Roboto,"Helvetica Neue",Arial,sans-serif}
main{max-width:1100px;margin:0 auto;padding:20px 16px 40px}
h1{font-size:1.6rem;margin:0 0 4px}h2{font-size:1.1rem;margin:0 0 4px}
.sub,.muted,.note,.axis,footer{color:var(--muted)}.sub{margin:0 0 10px}.range{margin:0 0 16px;font-weight:600}
.tiles{display:grid;grid-template-columns:repeat(2,1fr);gap:10px;margin-bottom:12px}.hero{grid-column:span 2}
@media (min-width:700px){.four{grid-template-columns:repeat(4,1fr)}.three{grid-template-columns:repeat(3,1fr)}}
.tile,section{background:#fff;border:1px solid var(--line);border-radius:10px;padding:12px 14px}
.label{font-size:.85rem;color:var(--muted)}.big{display:block;font-size:1.5rem;font-weight:700;white-space:nowrap}
.note{font-size:.8rem}
section{margin-top:14px;break-inside:avoid}
.details{display:grid;grid-template-columns:repeat(auto-fit,minmax(200px,1fr));gap:4px 16px;margin:0 2px}
.details div{display:flex;justify-content:space-between;border-bottom:1px dotted var(--line)}
.details dt{color:var(--muted)}.details dd{margin:0;font-weight:600}
.chart{width:100%;min-width:560px;height:auto;display:block}
.chart .bar{fill:var(--bar)}.chart .neg{fill:var(--neg)}.chart .grid{stroke:var(--line)}
.chart text{font-size:12px}.chart .val{font-size:11px;fill:var(--ink)}.chart .axis{fill:var(--muted)}
.hbars{display:grid;gap:6px}
.hrow{display:grid;grid-template-columns:minmax(90px,30%) 1fr auto auto;gap:8px;align-items:center}
.track{background:var(--bg);border-radius:4px;height:14px}
.fill{background:var(--bar);height:100%;border-radius:4px;min-width:1px}.fill.neg{background:var(--neg)}
.hval{font-weight:600;text-align:right;min-width:4ch}
.chg{font-size:.85rem;min-width:5ch;text-align:right;color:var(--muted)}.up{color:var(--up)}.down{color:var(--neg)}
.empty{color:var(--muted);font-style:italic;margin:8px 0}
.scroll{overflow-x:auto}
table{border-collapse:collapse;width:100%;font-size:.9rem}
th,td{padding:5px 8px;border-bottom:1px solid var(--line);text-align:left;vertical-align:top}
th{color:var(--muted);font-weight:600}.n{text-align:right;white-space:nowrap}
.id{font:.75rem ui-monospace,Menlo,Consolas,monospace;color:var(--muted);word-break:break-all}
footer{margin-top:20px;font-size:.8rem}
@media (max-width:600px){main{padding:12px 8px}.big{font-size:1.25rem}.hrow{grid-template-columns:1fr auto auto}
.track{grid-column:1/-1;order:5}}
@media print{body{background:#fff;font-size:12px}main{max-width:none;padding:0}.chart{min-width:0}
.tile,section{border-color:#ccc;box-shadow:none}.scroll{overflow:visible}
*{-webkit-print-color-adjust:exact;print-color-adjust:exact}tr{break-inside:avoid}}
"""
