"""The coupon numbers against a table worked out by hand (DynamoDB Local, an empty table of its own, so the
settlement's totals are ours alone): coupons issued from a store's quota, a region's quota and HQ's budget,
redeemed at other stores, a gift, a discount, two coupons stacked on one order, a partial refund (changes
nothing), whole refunds (take the redemption back out of the month the order was PAID in, even when the
refund comes a month later) and coupons redeemed again after their restore, on orders paid this month and
on the last day of the previous month.

Every number below is written by hand from the terms and the amounts; none is read back from the code under
test. At the end the pool auditor recomputes the same numbers from the raw items on its own."""
from __future__ import annotations

import uuid
from datetime import date, datetime, time, timedelta
from typing import Any

import pytest

from chalicelib.domain import clock
from testkit.audit import audit_coupons, audit_pool
from testkit.ledger import order
from testkit.support import create_stores, registration

GIFT_COST, CASH, CAP = 600, 500, 1_500  # the gift costs the brand 6 yuan; 5 yuan off; 20 % off, at most 15 yuan


@pytest.fixture
def world(stack, fresh_table, api, tokens):  # noqa: ANN001
    create_stores()  # sh-001, sh-002 (east), gz-001 (south), mall (online)
    return api, tokens


def _ok(answer: tuple[int, Any], status: int = 201) -> Any:
    assert answer[0] == status, answer
    return answer[1]


def _row(t: str, issuer: str, redeemer: str, count: int, discount: int, gift_cost: int) -> dict[str, Any]:
    return {"template_id": t, "issuer": issuer, "redeeming_store_id": redeemer, "count": count,
            "discount": discount, "gift_cost": gift_cost}


def _day(d: date, issued: int = 0, redeemed: int = 0, discount: int = 0, gift_cost: int = 0,
         sales: int = 0) -> dict[str, Any]:
    return {"day": d.isoformat(), "issued": issued, "redeemed": redeemed, "discount": discount,
            "gift_cost": gift_cost, "sales": sales}


def test_settlement_and_stats_match_the_hand_computed_table(world):
    api, tokens = world
    hq = tokens.hq()
    east, south = tokens.staff("region_manager", region="east"), tokens.staff("region_manager", region="south")
    manager = {s: tokens.staff("store_manager", stores=[s]) for s in ("sh-001", "sh-002", "gz-001")}
    staff = {s: tokens.staff(stores=[s]) for s in ("sh-001", "sh-002", "gz-001")}

    # ---- the calendar, by hand: THIS month (today's) and PREV (the last day of the month before) ----
    today = clock.business_day(clock.now())
    prev_day = today.replace(day=1) - timedelta(days=1)
    THIS, PREV = f"{today.year:04d}-{today.month:02d}", f"{prev_day.year:04d}-{prev_day.month:02d}"
    assert THIS != PREV and prev_day.day in (28, 29, 30, 31)

    def paid_today() -> str:
        at = clock.now() - timedelta(seconds=2)
        assert clock.business_day(at) == today, "the test ran across midnight: run it again"
        return at.isoformat()

    paid_prev = datetime.combine(prev_day, time(12, 0), tzinfo=clock.BUSINESS_TZ).isoformat()

    # ---- templates, quotas, issues ----
    tg, td, tc = (f"{p}-{uuid.uuid4().hex[:8]}" for p in ("gift", "pct", "cash"))
    _ok(api.put(f"/coupon-templates/{tg}", {"name": "赠饮券", "kind": "gift", "valid_days": 30, "budget": 50,
                                              "gift": {"name": "奶茶一杯", "cost": GIFT_COST}}, hq))
    _ok(api.put(f"/coupon-templates/{td}", {"name": "八折券", "kind": "discount", "pct": 80, "cap": CAP,
                                              "valid_days": 30, "budget": 50, "stackable": True}, hq))
    _ok(api.put(f"/coupon-templates/{tc}", {"name": "立减5元", "kind": "cash", "value": CASH, "valid_days": 30,
                                              "budget": 50, "stackable": True}, hq))
    for t, scope, scope_id in [(tg, "store", "sh-001"), (td, "region", "east"), (tc, "store", "gz-001")]:
        _ok(api.post("/benefit-pool/allocations", {"allocation_id": f"a-{uuid.uuid4().hex[:10]}", "template_id": t,
                                                   "scope": scope, "scope_id": scope_id, "quantity": 5}, hq))
    m1, m2, m3 = (_ok(api.post("/members", registration(), staff["sh-001"]))["member_id"] for _ in range(3))

    def issue(t: str, members: list[str], token: str, **level: str) -> dict[str, str]:
        answer = _ok(api.post("/coupon-issues", {"issue_id": f"i-{uuid.uuid4().hex[:10]}", "template_id": t,
                                                 "member_ids": members, **level}, token))
        assert answer["issued_count"] == len(members)
        return {r["member_id"]: r["code"] for r in answer["issued"]}

    g = issue(tg, [m1, m2], manager["sh-001"], store_id="sh-001")  # issuer STORE#sh-001
    d = issue(td, [m1, m3], east, region_id="east")  # issuer REGION#east
    c = issue(tc, [m1, m3], manager["gz-001"], store_id="gz-001")  # issuer STORE#gz-001
    c |= issue(tc, [m2], hq)  # issuer HQ

    def buy(member: str, store: str, amount: int, coupons: list[tuple[str, int]], paid_at: str,
            post: bool = True) -> dict[str, Any]:
        """Redeem each (code, the discount worked out by hand) for one order at the counter, then post it."""
        order_id = f"o-{uuid.uuid4().hex[:10]}"
        for code, discount in coupons:
            redeemed = _ok(api.post(f"/coupons/{code}/redeem", {"member_id": member, "store_id": store,
                                                                 "order_id": order_id, "order_amount": amount},
                                    staff[store]))
            assert redeemed["discount"] == discount, (code, redeemed)
        body = order(member, amount=amount - sum(x for _, x in coupons), store_id=store, paid_at=paid_at)
        body.update(order_id=order_id, coupons=[{"code": code, "discount": x} for code, x in coupons])
        if post:
            _ok(api.post("/orders", body, staff[store]))
        return body

    def refund(body: dict[str, Any], amount: int) -> dict[str, Any]:
        return _ok(api.post(f"/orders/{body['order_id']}/refunds",
                            {"refund_id": f"r-{uuid.uuid4().hex[:8]}", "amount": amount}, staff[body["store_id"]]))

    def settlement(month: str, token: str, store_id: str | None = None) -> dict[str, Any]:
        query = f"?month={month}" + (f"&store_id={store_id}" if store_id else "")
        view = _ok(api.get(f"/coupons/settlement{query}", token), 200)
        view["rows"] = sorted(view["rows"], key=lambda r: (r["template_id"], r["issuer"], r["redeeming_store_id"]))
        return view

    def expect(month: str, level: str, rows: list[dict[str, Any]]) -> dict[str, Any]:
        return {"month": month, "level": level,
                "rows": sorted(rows, key=lambda r: (r["template_id"], r["issuer"], r["redeeming_store_id"])),
                "count": sum(r["count"] for r in rows), "discount": sum(r["discount"] for r in rows),
                "gift_cost": sum(r["gift_cost"] for r in rows)}

    # O1: m1's gift (issued at sh-001) at sh-002: nothing off, the gift's cost; 100.00 paid
    o1 = buy(m1, "sh-002", 10_000, [(g[m1], 0)], paid_today())
    o1_row = _row(tg, "STORE#sh-001", "sh-002", 1, 0, GIFT_COST)
    assert settlement(THIS, hq) == expect(THIS, "HQ", [o1_row])
    refund(o1, 3_000)  # a partial refund: the gift was still given
    assert settlement(THIS, hq) == expect(THIS, "HQ", [o1_row])

    # O2: m1 stacks the region's 20 % off (200.00 -> 40.00 off, capped at 15.00) and gz-001's 5.00 off (on the
    # 185.00 left) at gz-001: 180.00 paid; then the whole 180.00 comes back: both coupons return to m1
    o2 = buy(m1, "gz-001", 20_000, [(d[m1], CAP), (c[m1], CASH)], paid_today())
    assert settlement(THIS, hq) == expect(THIS, "HQ", [
        o1_row, _row(td, "REGION#east", "gz-001", 1, 1_500, 0), _row(tc, "STORE#gz-001", "gz-001", 1, 500, 0)])
    assert sorted(refund(o2, 18_000)["coupons_restored"]) == sorted([d[m1], c[m1]])
    assert settlement(THIS, hq) == expect(THIS, "HQ", [o1_row])

    # O3: the restored 20 % off again, at sh-001 on 50.00: 10.00 off (under the cap), 40.00 paid
    buy(m1, "sh-001", 5_000, [(d[m1], 1_000)], paid_today())

    # O4 (paid last month): m3's gz-001 5.00 off at sh-001 on 80.00: 75.00 paid; O6 (paid last month): m3's
    # 20 % off at sh-002 on 30.00: 6.00 off, 24.00 paid
    o4 = buy(m3, "sh-001", 8_000, [(c[m3], CASH)], paid_prev)
    assert settlement(PREV, hq) == expect(PREV, "HQ", [_row(tc, "STORE#gz-001", "sh-001", 1, 500, 0)])
    buy(m3, "sh-002", 3_000, [(d[m3], 600)], paid_prev)
    # O4 wholly refunded today: out of LAST month (when it was paid), not this one
    this_before = settlement(THIS, hq)
    assert refund(o4, 7_500)["coupons_restored"] == [c[m3]]
    assert settlement(PREV, hq) == expect(PREV, "HQ", [_row(td, "REGION#east", "sh-002", 1, 600, 0)])
    assert settlement(THIS, hq) == this_before

    # O5: the restored 5.00 off again, this month, at sh-001 on 60.00: 55.00 paid
    buy(m3, "sh-001", 6_000, [(c[m3], CASH)], paid_today())
    # O7: m2's gift at gz-001 on 40.00; O8: HQ's 5.00 off at sh-002 on 10.00: 5.00 paid
    buy(m2, "gz-001", 4_000, [(g[m2], 0)], paid_today())
    buy(m2, "sh-002", 1_000, [(c[m2], CASH)], paid_today())
    # O9: m1's restored 5.00 off held at the counter for an order never posted: not redeemed
    buy(m1, "sh-001", 2_000, [(c[m1], CASH)], paid_today(), post=False)

    # ---- the settlement, by hand ----
    this_rows = {
        "o1": o1_row,                                              # issued at sh-001, redeemed at sh-002
        "o7": _row(tg, "STORE#sh-001", "gz-001", 1, 0, GIFT_COST),  # issued at sh-001, redeemed at gz-001
        "o3": _row(td, "REGION#east", "sh-001", 1, 1_000, 0),      # O2's use refunded, redeemed again
        "o5": _row(tc, "STORE#gz-001", "sh-001", 1, 500, 0),       # O4's use refunded (last month), again here
        "o8": _row(tc, "HQ", "sh-002", 1, 500, 0),
    }
    prev_rows = {"o6": _row(td, "REGION#east", "sh-002", 1, 600, 0)}
    assert settlement(THIS, hq) == expect(THIS, "HQ", list(this_rows.values()))
    assert [settlement(THIS, hq)[k] for k in ("count", "discount", "gift_cost")] == [5, 2_000, 1_200]  # by hand
    assert settlement(PREV, hq) == expect(PREV, "HQ", list(prev_rows.values()))
    # a store manager sees their store as issuer or as redeemer
    assert settlement(THIS, manager["sh-001"], "sh-001") == expect(
        THIS, "STORE#sh-001", [this_rows[k] for k in ("o1", "o7", "o3", "o5")])
    assert settlement(THIS, manager["gz-001"], "gz-001") == expect(
        THIS, "STORE#gz-001", [this_rows["o7"], this_rows["o5"]])  # redeemer of O7, issuer of O5
    assert settlement(PREV, manager["gz-001"], "gz-001") == expect(PREV, "STORE#gz-001", [])  # O4 refunded
    assert settlement(THIS, manager["sh-002"], "sh-002") == expect(
        THIS, "STORE#sh-002", [this_rows["o1"], this_rows["o8"]])
    assert settlement(PREV, manager["sh-002"], "sh-002") == expect(PREV, "STORE#sh-002", [prev_rows["o6"]])
    # a region manager: what their region's stores issued or redeemed, and what the region issued
    assert settlement(THIS, south) == expect(THIS, "REGION#south", [this_rows["o7"], this_rows["o5"]])
    assert settlement(THIS, east) == expect(THIS, "REGION#east", list(this_rows.values()))
    assert settlement(PREV, south) == expect(PREV, "REGION#south", [])

    # ---- the stats, by hand (issued today; redeemed on the paid day; sales = what the order paid) ----
    def stats(t: str, token: str, query: str = "", first: date = prev_day) -> dict[str, Any]:
        view = _ok(api.get(f"/coupon-templates/{t}/stats?from={first}&to={today}{query}", token), 200)
        # a day whose redemption was refunded away may stay listed, all zero: only the others are compared
        assert all(first.isoformat() <= x["day"] <= today.isoformat() for x in view["days"]), view
        view["days"] = [x for x in view["days"] if any(v for k, v in x.items() if k != "day")]
        return view

    def want(t: str, level: str, days: list[dict[str, Any]], first: date = prev_day) -> dict[str, Any]:
        issued, redeemed = sum(x["issued"] for x in days), sum(x["redeemed"] for x in days)
        return {"template_id": t, "level": level, "first_day": first.isoformat(), "last_day": today.isoformat(),
                "issued": issued, "redeemed": redeemed,
                "redemption_rate_bp": redeemed * 10_000 // issued if issued else 0,
                "discount": sum(x["discount"] for x in days), "gift_cost": sum(x["gift_cost"] for x in days),
                "sales": sum(x["sales"] for x in days), "days": days}

    # the gift: 2 issued at sh-001, both used (O1 paid 100.00, O7 40.00)
    gift_days = [_day(today, issued=2, redeemed=2, gift_cost=1_200, sales=14_000)]
    assert stats(tg, manager["sh-001"], "&store_id=sh-001") == want(tg, "STORE#sh-001", gift_days)
    assert stats(tg, east) == want(tg, "REGION#east", gift_days)  # the region's own quota and its stores'
    assert stats(tg, hq) == want(tg, "HQ", gift_days)  # the whole brand
    assert stats(tg, hq)["redemption_rate_bp"] == 10_000
    # 20 % off: 2 issued by the east region; O6 last month (6.00 off, 24.00 paid), O3 today (10.00, 40.00);
    # O2's use and its whole refund cancel out on today's row
    pct_days = [_day(prev_day, redeemed=1, discount=600, sales=2_400),
                _day(today, issued=2, redeemed=1, discount=1_000, sales=4_000)]
    assert stats(td, east) == want(td, "REGION#east", pct_days)
    assert stats(td, hq, "&region_id=east") == want(td, "REGION#east", pct_days)
    assert stats(td, hq) == want(td, "HQ", pct_days)
    assert stats(td, hq, first=today) == want(td, "HQ", pct_days[1:], first=today)  # today only: rate 50 %
    assert stats(td, hq, first=today)["redemption_rate_bp"] == 5_000
    assert stats(td, manager["sh-001"], "&store_id=sh-001") == want(td, "STORE#sh-001", [])  # redeemed, not issued
    # 5.00 off: 2 issued at gz-001 (O4 refunded away; O5 55.00 paid; m1's held for O9, never posted), 1 by HQ (O8)
    store_days = [_day(today, issued=2, redeemed=1, discount=500, sales=5_500)]
    assert stats(tc, manager["gz-001"], "&store_id=gz-001") == want(tc, "STORE#gz-001", store_days)
    assert stats(tc, south) == want(tc, "REGION#south", store_days)
    assert stats(tc, hq) == want(tc, "HQ", [_day(today, issued=3, redeemed=2, discount=1_000, sales=6_000)])
    assert stats(tc, hq)["redemption_rate_bp"] == 6_666
    assert stats(tc, east) == want(tc, "REGION#east", [])

    # ---- and the auditor, recomputing all of it from the raw items ----
    report = audit_pool([tg, td, tc])
    assert report["redeemed"] == 6  # O1, O3, O5, O6, O7, O8
    assert report["coupons"] == {tg: {"STORE#sh-001": 2}, td: {"REGION#east": 2},
                                 tc: {"STORE#gz-001": 2, "HQ": 1}}
    audit_coupons([tg, td, tc])
