"""`make bench-rfm`: what the nightly segmentation costs, printed as tables (progress on stderr).

1. The compute per 1M members (this machine, one core): R/F/M from decoded states (Python, the one
   definition in domain/segments.figures), the vectorised scoring, the usual gaps, the partials.
2. A whole night against DynamoDB Local over BENCH_RFM_MEMBERS members (default 20,000) generated through
   the order fold (domain/aggregates.fold_order), in the parallel scan's segments: requests and capacity
   units per phase (the benchmark's meter: reads as DynamoDB Local reports them, writes from item sizes under
   AWS's rules), the same night again, and the next night with no new orders.
3. The nightly cost at 10M members, scaled from (2), beside DynamoDB's export to S3.

    BENCH_RFM_MEMBERS=100000 .venv/bin/python -m bench.rfm
"""
from __future__ import annotations

import os
import random
import signal
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import date, datetime, timedelta
from typing import Any

import numpy as np

from .__main__ import USD_PER_MILLION_READ_UNITS, USD_PER_MILLION_WRITE_UNITS, noise, progress, table
from .capacity import CapacityMeter, Usage

MEMBERS = int(os.environ.get("BENCH_RFM_MEMBERS", "20000"))
SEGMENTS = 4
COMPUTE_SAMPLE = 200_000  # decoded states held in memory for the compute rows (scaled to 1M)
AT_SCALE = 10_000_000
STORES = [f"s{i:03d}" for i in range(50)]
EXPORT_USD_PER_GB = 0.11  # full export to S3, us-east-1 list price, 2025


def synth_states(n: int, today: date, seed: int = 11) -> list[Any]:
    """n members' points states, each from 0-15 orders over the last 14 months folded one by one."""
    from chalicelib.domain.aggregates import fold_order
    from chalicelib.domain.clock import BUSINESS_TZ
    from chalicelib.domain.ledger import MemberState

    rng = random.Random(seed)
    states = []
    for k in range(n):
        s = MemberState(member_id=f"{k:026d}", home_store_id=rng.choice(STORES))
        for _ in range(rng.choice([0, 1, 1, 2, 3, 5, 8, 15])):
            paid = datetime.combine(today - timedelta(days=rng.randint(1, 420)), datetime.min.time(),
                                    BUSINESS_TZ) + timedelta(minutes=rng.randint(0, 1439))
            amount = rng.choice([990, 1_800, 3_500, 12_000, 45_000])
            s = fold_order(s, paid_at=paid, store_id=rng.choice(STORES), net=amount,
                           lines=[(rng.choice(["tea", "cake", "snack", "coffee"]), amount)],
                           used_coupon=rng.random() < 0.3)
        states.append(s.evolve(version=1, tier="regular", tier_base="regular"))
    return states


def compute_rows(today: date) -> list[list[str]]:
    from chalicelib.domain import rfm
    from chalicelib.domain.segments import RfmSettings
    from chalicelib.services.rfm_job import columns

    progress(f"compute: folding {COMPUTE_SAMPLE:,} members' orders")
    t = time.perf_counter()
    states = synth_states(COMPUTE_SAMPLE, today)
    fold_s = time.perf_counter() - t
    orders = sum(s.order_count for s in states)
    as_of = today - timedelta(days=1)
    scale = 1_000_000 / COMPUTE_SAMPLE
    rows = [["fold one order into the member's aggregates (Python)", f"{fold_s / orders * 1e6:.1f} µs/order", ""]]
    t = time.perf_counter()
    cols = columns(states, as_of)
    rows.append(["R, F, M from decoded states (Python, one definition)", f"{(time.perf_counter() - t) * scale:.2f} s",
                 f"{COMPUTE_SAMPLE:,} measured, scaled"])
    t = time.perf_counter()
    gaps = rfm.usual_gaps_of([s.recent_days for s in states])
    rows.append(["usual gaps (the encoded gaps + vectorised median)", f"{(time.perf_counter() - t) * scale:.2f} s",
                 f"{COMPUTE_SAMPLE:,} measured, scaled"])
    rng = np.random.default_rng(3)
    n = 1_000_000
    r, f, m = rng.integers(0, 500, n), rng.integers(0, 30, n), rng.integers(0, 500_000, n)
    bought = rng.random(n) < 0.9
    t = time.perf_counter()
    parts = [rfm.partial_of(r[i:i + 2000], f[i:i + 2000], m[i:i + 2000]).encode() for i in range(0, n, 2000)]
    whole = rfm.merge(rfm.Partial.decode(p) for p in parts)
    rows.append(["partials of 500 pages + encode, decode, merge (numpy)", f"{time.perf_counter() - t:.2f} s",
                 "1,000,000"])
    for mode in ("mean", "quintile"):
        th = rfm.thresholds(RfmSettings(mode=mode), whole)
        t = time.perf_counter()
        out = rfm.classify(r, f, m, bought, th)
        rfm.churning(r, np.where(rng.random(n) < 0.5, 7.0, np.nan), 2000)
        rows.append([f"thresholds applied, segments and churn flags ({mode}, numpy)",
                     f"{time.perf_counter() - t:.2f} s", "1,000,000"])
    del cols, gaps, out
    return rows


def _seed(states: list[Any]) -> None:
    from chalicelib import bootstrap
    from chalicelib.store.db import to_item
    from chalicelib.store.ledger import state_item

    client, name = bootstrap.dynamodb_client(), bootstrap.settings().table_name

    def write(chunk: list[Any]) -> None:
        request = {name: [{"PutRequest": {"Item": to_item(state_item(s))}} for s in chunk]}
        while request:
            request = client.batch_write_item(RequestItems=request).get("UnprocessedItems") or {}

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(write, [states[i:i + 25] for i in range(0, len(states), 25)]))


def night_rows(today: date) -> tuple[list[list[str]], dict[str, float]]:
    from chalicelib import bootstrap
    from chalicelib.domain import clock
    from chalicelib.services import rfm_job
    from chalicelib.store import rfm as rfm_store
    from testkit.support import create_stores

    create_stores()
    progress(f"night: generating and writing {MEMBERS:,} members' states")
    states = synth_states(MEMBERS, today, seed=23)
    _seed(states)
    buyers = sum(1 for s in states if s.last_purchase_at)
    job = rfm_job.RfmJob(bootstrap.rfm(), bootstrap.stores())
    rows: list[list[str]] = []
    totals: dict[str, float] = {}

    def row(label: str, usage: Usage, seconds: float, note: str = "") -> None:
        rows.append([label, _requests(usage), f"{usage.rcu:,.1f}", f"{usage.wcu:,.0f}", f"{seconds:.1f}", note])

    as_of = today - timedelta(days=1)
    # The meter sizes each write from the request it is handed: one writer and one reader at a time keep its
    # bookkeeping exact (the production pools only overlap the same calls).
    rfm_job.WRITERS, rfm_store._READERS = 1, 1
    with CapacityMeter(bootstrap.dynamodb_client()) as meter:
        progress("night 1: plan and measure")
        t = time.perf_counter()
        plan = job.plan(as_of, SEGMENTS)
        for seg in range(SEGMENTS):
            while not job.run_segment(as_of, "measure", seg, lambda: True)["done"]:
                pass
        measure = meter.take()
        row(f"measure: {SEGMENTS} segments, {MEMBERS:,} members", measure, time.perf_counter() - t,
            "keys-only scan + BatchGetItem of states")
        t = time.perf_counter()
        job.thresholds(as_of)
        row("thresholds from the partials", meter.take(), time.perf_counter() - t)
        progress("night 1: classify (every buyer's first result is written)")
        t = time.perf_counter()
        for seg in range(SEGMENTS):
            while not job.run_segment(as_of, "classify", seg, lambda: True)["done"]:
                pass
        classify = meter.take()
        row("classify, first night (every buyer written)", classify, time.perf_counter() - t,
            "states + last results read; results, facts, checkpoints written")
        t = time.perf_counter()
        summary = job.finish(as_of)
        row("finish: night counts per store, region, brand", meter.take(), time.perf_counter() - t)
        t = time.perf_counter()
        job.run_all(as_of, workers=1)
        row("the same night again", meter.take(), time.perf_counter() - t, "answers its summary, writes nothing")
        progress("night 2: no new orders, a pool of 4 workers")
        rfm_job.WRITERS, rfm_store._READERS = 8, 8
        clock_now = clock.now
        clock.now = lambda: clock_now() + timedelta(days=1)  # type: ignore[assignment]
        try:
            t = time.perf_counter()
            quiet = job.run_all(as_of + timedelta(days=1), workers=4, segments=SEGMENTS)
            quiet_usage = meter.take()
            row("the next night, no new orders (4 workers)", quiet_usage, time.perf_counter() - t,
                f"{quiet['written']:,} rewritten (churn flags that turned)")
        finally:
            clock.now = clock_now  # type: ignore[assignment]
    totals.update(members=MEMBERS, buyers=buyers, measure_rcu=measure.rcu, classify_rcu=classify.rcu,
                  first_wcu=classify.wcu, quiet_rcu=quiet_usage.rcu, quiet_wcu=quiet_usage.wcu,
                  classified=summary["classified"], pages=len(plan["segments"]))
    return rows, totals


def _requests(usage: Usage) -> str:
    return ", ".join(f"{n:,} {op}" for op, n in sorted(usage.requests.items())) or "none"


def scale_rows(t: dict[str, float]) -> list[list[str]]:
    k = AT_SCALE / t["members"]

    def usd(rcu: float, wcu: float) -> str:
        return f"${(rcu * USD_PER_MILLION_READ_UNITS + wcu * USD_PER_MILLION_WRITE_UNITS) / 1e6 * k:,.2f}"

    return [
        ["parallel scan of the keys-only index + BatchGetItem, a quiet night",
         f"{t['quiet_rcu'] * k / 1e6:,.2f} M RRU", f"{t['quiet_wcu'] * k / 1e6:,.2f} M WRU",
         usd(t["quiet_rcu"], t["quiet_wcu"])],
        ["the same, the first night (every result written once)",
         f"{(t['measure_rcu'] + t['classify_rcu']) * k / 1e6:,.2f} M RRU", f"{t['first_wcu'] * k / 1e6:,.2f} M WRU",
         usd(t["measure_rcu"] + t["classify_rcu"], t["first_wcu"])],
        ["what the index adds to an order post", "0", "0 (KEYS_ONLY, written once)", "$0"],
        ["export to S3 instead (reads no capacity; priced per GB of the whole table)",
         "0", "0", f"${EXPORT_USD_PER_GB:.2f}/GB: 10M members with a year of orders is ~500 GB-1 TB, "
                   f"$55-110 a night, before the S3 reads"],
    ]


def main() -> None:
    os.environ.setdefault("POWERTOOLS_METRICS_DISABLED", "true")
    os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "WARNING")
    from chalicelib import bootstrap
    from chalicelib.domain import clock
    from chalicelib.local.stack import LOCAL_DIR, LocalStack, new_secret_bundle

    today = clock.business_day(clock.now())
    compute = compute_rows(today)
    progress("starting DynamoDB Local")
    stack = LocalStack(new_secret_bundle(), table_name=f"chaincrm-bench-rfm-{uuid.uuid4().hex[:8]}").start()
    try:
        with noise(LOCAL_DIR / "bench-rfm.log"):
            bootstrap.reset()
            nights, totals = night_rows(today)
    finally:
        stack.stop()
    print("\n\n".join([
        "chaincrm benchmark: the nightly RFM",
        "1. Compute per 1M members (one core of this machine)\n\n"
        + table(["step", "time", "sample"], compute),
        f"2. A night over {MEMBERS:,} members ({int(totals['buyers']):,} with a purchase), {SEGMENTS} segments, "
        "DynamoDB Local; seconds are this machine's, not Lambda's\n\n"
        + table(["phase", "requests", "RCU", "WCU", "seconds", "note"], nights),
        f"3. Scaled to {AT_SCALE:,} members (list prices us-east-1: ${USD_PER_MILLION_READ_UNITS}/M read units, "
        f"${USD_PER_MILLION_WRITE_UNITS}/M write units; China regions price in CNY)\n\n"
        + table(["reading the members", "reads", "writes", "per night"], scale_rows(totals)),
    ]))


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    main()
