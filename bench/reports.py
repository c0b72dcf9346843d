"""The reports' DynamoDB cost: a store report and the KPI comparison for a 31-day range over a brand of STORES
stores (each with a full month of day items as live orders leave them: every figure and most hours set), and
what the day rollup adds to an order post (the same post measured with and without its rollup).

The store report also reads the nightly job's store item (50 best members, 20 on the churn list) and their
names: a night is written for it, as the job would."""
from __future__ import annotations

import random
from collections import Counter
from datetime import date, timedelta
from typing import Any

from chalicelib import bootstrap
from chalicelib.domain import clock, rollups
from chalicelib.domain.access import Principal, Role
from chalicelib.domain.segments import ALL_SEGMENTS
from chalicelib.domain.stores import StoreInput
from chalicelib.services import posting, reports, stores
from chalicelib.store import keys

from .capacity import CapacityMeter, Usage
from .dynamo import CLERK, HQ, Scenario, _order, _shoppers

STORES = 300
DAYS = 31
REGIONS = 10
SHARDED = 4  # the busy store's rollup_shards
_made: dict[str, Any] = {}


def _range() -> tuple[date, date]:
    last = clock.business_day(clock.now()) - timedelta(days=1)
    return last - timedelta(days=DAYS - 1), last


def _day_item(rng: random.Random) -> dict[str, int]:
    orders = rng.randrange(150, 900)
    members = orders * rng.randrange(40, 70) // 100
    item = {"sales_fen": orders * rng.randrange(1_800, 3_500), "orders": orders, "member_orders": members,
            "guest_orders": orders - members, "points_issued": members * 25, "refunds_fen": rng.randrange(0, 20_000),
            "refunds": rng.randrange(0, 8), "points_reversed": rng.randrange(0, 200),
            "new_members": rng.randrange(0, 30),
            "coupons_redeemed": rng.randrange(5, 60), "coupon_orders": rng.randrange(5, 60),
            "discount_fen": rng.randrange(2_500, 30_000), "own_redeemed": rng.randrange(0, 20),
            "attached_orders": rng.randrange(0, 5)}
    for h in range(7, 24):  # a shop's open hours: each hour some orders
        item[rollups.HOURS[h]] = rng.randrange(1, 80)
    return item


def _brand() -> list[str]:
    """STORES stores in REGIONS regions, each with DAYS days of full day items (one shard; the first store
    spread over SHARDED), and last night's store item with its lists. Made once, unmeasured."""
    if "stores" in _made:
        return _made["stores"]
    rng = random.Random(16)
    first, last = _range()
    ids = [f"rb-{i:03d}" for i in range(STORES)]
    cities = ["上海", "杭州", "南京", "广州", "深圳", "成都", "武汉", "西安", "北京", "天津"]
    for i, sid in enumerate(ids):
        stores.put_store(sid, StoreInput(name=f"门店{i}", region_id=f"r{i % REGIONS}", city=cities[i % len(cities)],
                                         store_type="standard", rollup_shards=SHARDED if i == 0 else 1), HQ,
                         bootstrap.stores())
    items = []
    for i, sid in enumerate(ids):
        for d in range(DAYS):
            day = first + timedelta(days=d)
            for shard in range(SHARDED if i == 0 else 1):
                items.append({**keys.store_day_key(sid, day, shard), **_day_item(rng)})
    bootstrap.db().put_many(items)
    rfm = bootstrap.rfm()
    member = {"member_id": "01J0000000000000000000BENCH", "monetary": 123_400, "lifetime_spend": 456_700,
              "frequency": 14, "recency_days": 3, "segment": ALL_SEGMENTS[0], "tier": "gold"}
    for sid in ids[:2]:
        rfm.put_night(last, "STORE", sid, {
            "as_of": last.isoformat(), "segments": dict.fromkeys(ALL_SEGMENTS, 100), "members": 900,
            "repurchase": {"buyers": 300, "repeat_buyers": 90, "rate_permille": 300},
            "top": [{**member, "member_id": f"01J{n:023d}"} for n in range(50)],
            "churn": [{**member, "member_id": f"01K{n:023d}", "usual_gap_days": "7", "days_since_purchase": 30}
                      for n in range(20)]})
    rfm.db.put({**keys.rfm_latest_key(), "as_of": last.isoformat(), "type": "rfm_latest"})
    _made["stores"] = ids
    return ids


def _store_report(store_id: str) -> None:
    first, last = _range()
    body = reports.store_report(HQ, store_id, first, last, stores=bootstrap.stores(), rollups=bootstrap.rollups(),
                                rfm=bootstrap.rfm(), members=bootstrap.members())
    if len(body["daily"]) != DAYS or not body["kpis"]["orders"]:
        raise RuntimeError(f"store report: {len(body['daily'])} days, {body['kpis']['orders']} orders")


def _kpis(arg: tuple[Principal, str]) -> None:
    first, last = _range()
    body = reports.kpis(arg[0], first, last, arg[1], stores=bootstrap.stores(), rollups=bootstrap.rollups())
    if not body["rows"] or not body["total"]["orders"]:
        raise RuntimeError("kpis: nothing")


def _without_rollups(n: int) -> list[str]:
    """Shoppers whose post is measured with its day rollup taken out (the difference is what it costs)."""
    return _shoppers(n)


def _post_bare(member_id: str) -> None:
    real = rollups.for_sale
    rollups.for_sale = lambda sale: []  # type: ignore[assignment]
    try:
        posting.post_order(_order(member_id, 5), CLERK, bootstrap.members(), bootstrap.ledger(), bootstrap.stores())
    finally:
        rollups.for_sale = real  # type: ignore[assignment]


REGION_MANAGER = Principal(sub="bench-rm", role=Role.REGION_MANAGER, region_id="r1")
SCENARIOS = [
    Scenario(f"report: store, {DAYS} days (1 shard), with its best 50 and churn 20",
             lambda n: [_brand()[1]] * n, _store_report),
    Scenario(f"report: store, {DAYS} days ({SHARDED} shards)", lambda n: [_brand()[0]] * n, _store_report),
    Scenario(f"report: KPIs by store, {STORES} stores x {DAYS} days (HQ)", lambda n: _brand() and [(HQ, "store")] * n,
             _kpis),
    Scenario(f"report: KPIs by day, {STORES} stores x {DAYS} days (HQ)", lambda n: _brand() and [(HQ, "day")] * n,
             _kpis),
    Scenario(f"report: KPIs by city, one region ({STORES // REGIONS} stores)",
             lambda n: _brand() and [(REGION_MANAGER, "city")] * n, _kpis),
    Scenario("post order (5 lines) without its day rollup (compare: post order 5 lines)", _without_rollups,
             _post_bare),
]


def measure(runs: int) -> list[tuple[str, Usage]]:
    _brand()
    results: list[tuple[str, Usage]] = []
    with CapacityMeter(bootstrap.dynamodb_client()) as meter:
        for scenario in SCENARIOS:
            args = scenario.prepare(runs)
            meter.take()
            for arg in args:
                scenario.run(arg)
            total = meter.take()
            per = len(args) * scenario.per_run
            results.append((scenario.label, Usage(requests=Counter({op: c / per for op, c in total.requests.items()}),
                                                  rcu=total.rcu / per, wcu=total.wcu / per)))
    return results
