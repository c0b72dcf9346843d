"""The store report and the KPI comparison equal a recomputation, written here, from what the test posted
through the API: orders (members and guests, at known hours, with coupons issued from a store's quota),
refunds a month later (one partial, one whole that gives its coupon back), registrations on two days, a merge
of a duplicate registration, and a busy store whose days are spread over four shards.

The recomputation reads only the test's own list of events, never the rollup code (docs/reports.md gives the
definitions both follow)."""
from __future__ import annotations

import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

import pytest

from chalicelib.domain import clock
from functions.rfm import run_locally
from testkit.ledger import ShiftedClock
from testkit.support import create_stores, registration

SH = clock.BUSINESS_TZ
STORES = {"sh-001": ("east", "上海"), "sh-002": ("east", "上海"), "gz-001": ("south", "广州"),
          "mall": ("online", "上海")}
COUNTS = ("sales_fen", "orders", "member_orders", "guest_orders", "attached_orders", "points_issued", "refunds_fen",
          "refunds", "points_reversed", "new_members", "coupons_issued", "coupons_redeemed", "coupon_orders",
          "discount_fen", "own_redeemed")


@dataclass
class Book:
    """What was posted, per store and business day: the test's own account of it."""

    days: dict[tuple[str, date], dict[str, int]] = field(default_factory=lambda: defaultdict(lambda: defaultdict(int)))
    hours: dict[tuple[str, date], list[int]] = field(default_factory=lambda: defaultdict(lambda: [0] * 24))

    def add(self, store: str, day: date, **figures: int) -> None:
        for k, v in figures.items():
            self.days[(store, day)][k] += v

    def expected(self, stores: set[str], first: date, last: date) -> dict[str, int]:
        c = dict.fromkeys(COUNTS, 0)
        for (store, day), figures in self.days.items():
            if store in stores and first <= day <= last:
                for k, v in figures.items():
                    c[k] += v
        c["net_sales_fen"] = c["sales_fen"] - c["refunds_fen"]
        c["average_ticket_fen"] = round_half_up(c["sales_fen"], c["orders"])
        c["member_share_permille"] = round_half_up(1000 * c["member_orders"], c["orders"])
        c["coupon_redemption_permille"] = round_half_up(1000 * c["own_redeemed"], c["coupons_issued"])
        return c

    def hours_of(self, store: str, first: date, last: date) -> list[int]:
        out = [0] * 24
        for (s, day), hours in self.hours.items():
            if s == store and first <= day <= last:
                out = [a + b for a, b in zip(out, hours, strict=True)]
        return out


def round_half_up(n: int, d: int) -> int:
    if d == 0:
        return 0
    q, r = divmod(n, d)
    return q + (1 if 2 * r >= d else 0)


@pytest.fixture
def world(stack, fresh_table, monkeypatch, api, tokens):  # noqa: ANN001
    create_stores()
    hq = tokens.hq()
    for store_id, (region, city) in STORES.items():
        body = {"name": f"Store {store_id}", "region_id": region, "city": city,
                "store_type": "online" if store_id == "mall" else "standard",
                "rollup_shards": 4 if store_id == "sh-001" else 1}
        assert api.put(f"/stores/{store_id}", body, hq)[0] in (200, 201)
    shifted = ShiftedClock()
    monkeypatch.setattr(clock, "now", shifted.now)
    return shifted


def _order(api, token, book: Book, *, store: str, paid: datetime, amount: int, member: str | None = None,  # noqa: ANN001
           phone: str | None = None, coupons: list[tuple[str, int, str]] | None = None) -> dict:
    """Posts an order (with coupons redeemed at the counter first) and books it: (code, discount, issuer)."""
    order_id = f"o-{uuid.uuid4().hex[:12]}"
    for code, discount, _ in coupons or []:
        redeem = {"member_id": member, "store_id": store, "order_id": order_id, "order_amount": amount + discount}
        status, answer = api.post(f"/coupons/{code}/redeem", redeem, token)
        assert status == 201 and answer["discount"] == discount, answer
    body = {"order_id": order_id, "store_id": store, "channel": "store", "paid_at": paid.isoformat(), "amount": amount,
            "items": [{"sku": "s1", "name": "奶茶", "category": "tea", "qty": 1, "amount": amount}]}
    body |= {"member_id": member} if member else {"phone": phone}
    if coupons:
        body["coupons"] = [{"code": c, "discount": d} for c, d, _ in coupons]
    status, answer = api.post("/orders", body, token)
    assert status == 201, answer
    day = clock.business_day(paid)
    book.add(store, day, sales_fen=amount, orders=1, points_issued=answer.get("points_earned") or 0,
             **({"member_orders": 1} if member else {"guest_orders": 1}))
    book.hours[(store, day)][paid.astimezone(SH).hour] += 1
    if coupons:
        book.add(store, day, coupon_orders=1, coupons_redeemed=len(coupons), discount_fen=sum(d for _, d, _ in coupons))
        for _, _, issuer in coupons:
            book.add(issuer.removeprefix("STORE#"), day, own_redeemed=1)
    return {**body, "answer": answer}


def _refund(api, token, book: Book, order: dict, amount: int, *, whole_coupons: bool = False) -> None:  # noqa: ANN001
    status, answer = api.post(f"/orders/{order['order_id']}/refunds", {"refund_id": f"r-{uuid.uuid4().hex[:8]}",
                                                                       "amount": amount}, token)
    assert status == 201, answer
    book.add(order["store_id"], clock.business_day(clock.now()), refunds_fen=amount, refunds=1,
             points_reversed=answer["points_reversed"])
    if whole_coupons:  # the whole refund gives the order's coupons back: off the day it was paid
        paid_day = clock.business_day(datetime.fromisoformat(order["paid_at"]))
        assert answer["coupons_restored"] == [c["code"] for c in order["coupons"]]
        book.add(order["store_id"], paid_day, coupon_orders=-1, coupons_redeemed=-len(order["coupons"]),
                 discount_fen=-sum(c["discount"] for c in order["coupons"]))
        for c in order["coupons"]:
            book.add("sh-001", paid_day, own_redeemed=-1)  # every coupon of this test comes from sh-001's quota


def _register(api, token, book: Book, home: str) -> str:  # noqa: ANN001
    status, body = api.post("/members", registration(store_id=home), token)
    assert status == 201, body
    book.add(home, clock.business_day(clock.now()), new_members=1)
    return body["member_id"]


def _check_report(api, token, book: Book, store: str, first: date, last: date) -> dict:  # noqa: ANN001
    status, report = api.get(f"/stores/{store}/report?from={first}&to={last}", token)
    assert status == 200, report
    assert report["kpis"] == book.expected({store}, first, last), (store, first, last)
    assert report["hours"] == book.hours_of(store, first, last)
    assert [d["day"] for d in report["daily"]] == [(first + timedelta(days=i)).isoformat()
                                                   for i in range((last - first).days + 1)]
    for row in report["daily"]:
        day = date.fromisoformat(row["day"])
        want = book.expected({store}, day, day)
        assert {k: row[k] for k in row if k != "day"} == {k: want[k] for k in row if k != "day"}, row
    return report


def test_reports_equal_a_recomputation_of_what_was_posted(world, api, tokens):
    book = Book()
    hq = tokens.hq()
    staff = tokens.staff("store_manager", stores=["sh-001", "sh-002", "gz-001", "mall"])
    today = world.today()
    at = lambda days_ago, hour, minute=0: datetime.combine(today - timedelta(days=days_ago),  # noqa: E731
                                                           datetime.min.time(), SH).replace(hour=hour, minute=minute)

    # Day 1: members join at three stores; coupons issued from sh-001's own quota.
    members = {home: [_register(api, staff, book, home) for _ in range(n)]
               for home, n in (("sh-001", 3), ("sh-002", 2), ("gz-001", 1))}
    t = f"rep-{uuid.uuid4().hex[:6]}"
    assert api.put(f"/coupon-templates/{t}", {"name": "满减5元", "kind": "cash", "value": 500, "valid_days": 60,
                                              "budget": 50, "stackable": True}, hq)[0] == 201
    assert api.post("/benefit-pool/allocations", {"allocation_id": f"{t}-a", "template_id": t, "scope": "store",
                                                  "scope_id": "sh-001", "quantity": 10}, hq)[0] == 201
    holders = members["sh-001"] + members["sh-002"][:1]
    status, issued = api.post("/coupon-issues", {"issue_id": f"{t}-i", "template_id": t, "member_ids": holders,
                                                 "store_id": "sh-001"}, staff)
    assert status == 201 and issued["issued_count"] == 4
    book.add("sh-001", today, coupons_issued=4)
    code_of = {c["member_id"]: c["code"] for c in issued["issued"]}

    # Orders over five weeks back, at known hours, the edges of the day included (00:00 and 23:59).
    orders = []
    for i, (store, days_ago, hour, amount) in enumerate([
            ("sh-001", 34, 0, 1_850), ("sh-001", 34, 23, 2_600), ("sh-001", 20, 9, 3_100), ("sh-001", 2, 12, 4_400),
            ("sh-002", 33, 15, 5_000), ("sh-002", 3, 8, 1_200), ("gz-001", 10, 18, 9_900), ("gz-001", 0, 9, 700)]):
        home = [m for ms in members.values() for m in ms]
        orders.append(_order(api, staff, book, store=store, paid=at(days_ago, hour, 59 if hour == 23 else 0),
                             amount=amount, member=home[i % len(home)]))
    guest = _order(api, staff, book, store="sh-001", paid=at(5, 12), amount=2_000, phone="13800000000")
    burst = [_order(api, staff, book, store="sh-001", paid=at(1, h), amount=1_000 + h, member=members["sh-001"][h % 3])
             for h in (11, 11, 12, 13)]
    # Coupon orders: one at the issuing store, one at sh-002 (issued by sh-001, redeemed elsewhere).
    m_own, m_away = members["sh-001"][0], members["sh-002"][0]
    coupon_here = _order(api, staff, book, store="sh-001", paid=at(4, 14), amount=2_500, member=m_own,
                         coupons=[(code_of[m_own], 500, "STORE#sh-001")])
    coupon_away = _order(api, staff, book, store="sh-002", paid=at(33, 16), amount=3_500, member=m_away,
                         coupons=[(code_of[m_away], 500, "STORE#sh-001")])

    # Day 2: refunds (for orders paid last month: counted today), a new member at the mall, a duplicate merged.
    world.advance(1)
    day2 = world.today()
    _refund(api, staff, book, orders[0], 850)  # partial, an order of more than a month ago
    _refund(api, staff, book, coupon_away, 3_500, whole_coupons=True)  # whole: its coupon comes back
    _register(api, staff, book, "mall")
    duplicate = _register(api, staff, book, "sh-002")
    status, merged = api.post(f"/members/{members['sh-002'][1]}/merge", {"source_member_id": duplicate}, hq)
    assert status in (200, 201, 202), merged
    book.add("sh-002", day2, new_members=-1)  # one person: the duplicate's registration no longer counts
    _order(api, staff, book, store="sh-002", paid=at(-1, 10), amount=1_600, member=duplicate)  # through the old id
    del guest, burst, coupon_here

    first = today - timedelta(days=40)
    for store in STORES:
        _check_report(api, hq, book, store, first, day2)
    _check_report(api, staff, book, "sh-001", today - timedelta(days=34), today - timedelta(days=34))  # a single day
    _check_report(api, staff, book, "sh-002", day2, day2)  # the refund day only
    month_start = day2.replace(day=1)
    _check_report(api, staff, book, "sh-001", month_start, day2)  # this month: the refund, not the sale

    # HQ side by side: every grouping adds up to the same total; a region manager sees their region only.
    everything = set(STORES) | {"-"}
    for group_by, key_of in (("store", lambda s: s), ("region", lambda s: STORES[s][0]),
                             ("city", lambda s: STORES[s][1])):
        status, kpis = api.get(f"/analytics/kpis?from={first}&to={day2}&group_by={group_by}", hq)
        assert status == 200, kpis
        assert kpis["total"] == book.expected(everything, first, day2)
        groups: dict[str, set[str]] = defaultdict(set)
        for s in STORES:
            groups[key_of(s)].add(s)
        rows = {r["key"]: r["kpis"] for r in kpis["rows"]}
        for key, stores in groups.items():
            assert rows[key] == book.expected(stores, first, day2), (group_by, key)
    status, by_day = api.get(f"/analytics/kpis?from={first}&to={day2}&group_by=day", hq)
    assert status == 200 and [r["key"] for r in by_day["rows"]] == [
        (first + timedelta(days=i)).isoformat() for i in range((day2 - first).days + 1)]
    for row in by_day["rows"]:
        d = date.fromisoformat(row["key"])
        assert row["kpis"] == book.expected(everything, d, d), row["key"]
    east = tokens.staff("region_manager", region="east")
    status, mine = api.get(f"/analytics/kpis?from={first}&to={day2}&group_by=city", east)
    assert status == 200 and mine["scope"] == "region east"
    assert {r["key"]: r["kpis"] for r in mine["rows"]} == {"上海": book.expected({"sh-001", "sh-002"}, first, day2)}
    assert mine["total"] == book.expected({"sh-001", "sh-002"}, first, day2)

    # The nightly job: segments, repurchase, best members (names masked) and the churn list in the report.
    status, before = api.get(f"/stores/sh-001/report?from={first}&to={day2}", staff)
    assert before["segments"] is None and before["top_members"] == []
    run_locally({"segments": 2}, workers=2)
    status, report = api.get(f"/stores/sh-001/report?from={first}&to={day2}", staff)
    assert status == 200
    assert report["segments"]["members"] == sum(report["segments"]["counts"].values()) == 3
    top = report["top_members"]
    assert [t["monetary"] for t in top] == sorted((t["monetary"] for t in top), reverse=True) and top
    assert all(t["name"] is None or t["name"].endswith("*") for t in top)
    assert all(t["phone_masked"] and "*" in t["phone_masked"] for t in top)
