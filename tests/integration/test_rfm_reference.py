"""The nightly RFM against an independent computation.

Fifteen months of orders and refunds are posted through the API, crossing the window's first and last months,
month ends at 23:59 and 00:00 Asia/Shanghai, refunds in later months, whole and partial, and a merge; then the
job runs (several segments, a worker pool: the same code the Step Functions Map runs) and every member's R, F,
M, scores and segment is compared with a pandas computation over the raw orders and refunds, written here from
the definitions in docs/rfm.md, without the project's fold, buckets or scoring."""
from __future__ import annotations

import math
import random
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pandas as pd
import pytest

from chalicelib import bootstrap
from chalicelib.domain import clock
from chalicelib.domain.segments import RfmSettings
from functions.rfm import run_locally
from testkit.support import create_stores, registration

SH = ZoneInfo("Asia/Shanghai")
NAMES = {  # (R high, F high, M high) -> segment, as the issue names them
    (True, True, True): "重要价值", (True, False, True): "重要发展", (False, True, True): "重要保持",
    (False, False, True): "重要挽留", (True, True, False): "一般价值", (True, False, False): "一般发展",
    (False, True, False): "一般保持", (False, False, False): "一般挽留",
}
STORES = ("sh-001", "sh-002", "gz-001")


class Clock:
    def __init__(self) -> None:
        self.at = datetime.now(SH)

    def now(self) -> datetime:
        return self.at


def _at(day: date, hh: int, mm: int, ss: int = 0) -> datetime:
    return datetime.combine(day, time(hh, mm, ss), SH)


def _month_start(day: date, back: int) -> date:
    m = day.year * 12 + day.month - 1 - back
    return date(m // 12, m % 12 + 1, 1)


def _plan(today: date, rng: random.Random) -> tuple[list[dict], dict[str, str]]:
    """Members (by label) and their events, oldest first: ('order', label, at, amount, store, order_id) and
    ('refund', order_id, at, amount)."""
    yesterday = today - timedelta(days=1)
    first = _month_start(yesterday, 11)  # the first month of the window of the first night (as of yesterday)
    before_first = first - timedelta(days=1)
    homes = {}
    events: list[dict] = []
    labels = [f"m{i:02d}" for i in range(46)]
    for i, label in enumerate(labels):
        homes[label] = STORES[i % 3]
        if i < 4:
            continue  # never buys
        if i < 8:  # bought only before the window (R large, F = M = 0)
            days = [before_first - timedelta(days=rng.randint(0, 80)) for _ in range(rng.randint(1, 3))]
        else:
            n = rng.choice([1, 2, 3, 4, 6, 9, 12])
            days = [yesterday - timedelta(days=rng.randint(0, 430)) for _ in range(n)]
        if i in (8, 9):  # the window's edges: its first minute in, the minute before out
            days += [first, before_first]
        for d in days:
            hh, mm = rng.choice([(0, 0), (0, 1), (12, 30), (23, 59)])
            at = _at(d, hh, mm, 30 if (hh, mm) != (0, 0) else 5)
            if at >= _at(today, 0, 0):
                at = _at(yesterday, 12, 0)
            amount = rng.choice([990, 1800, 2500, 5000, 12_345, 30_000, 88_800])
            events.append({"kind": "order", "label": label, "at": at, "amount": amount,
                           "store": rng.choice(STORES), "order_id": f"o-{label}-{len(events):04d}"})
    for e in list(events):
        if e["kind"] == "order" and rng.random() < 0.3:  # refunds, some in a later month, some whole
            at = e["at"] + timedelta(days=rng.randint(0, 45), minutes=5)
            if at >= _at(today, 0, 0):
                continue
            whole = rng.random() < 0.5
            amount = e["amount"] if whole else max(1, e["amount"] // 3)
            events.append({"kind": "refund", "order_id": e["order_id"], "at": at, "amount": amount})
            if not whole and rng.random() < 0.5:  # the rest later: the order ends wholly refunded
                rest_at = at + timedelta(days=rng.randint(1, 20))
                if rest_at < _at(today, 0, 0):
                    events.append({"kind": "refund", "order_id": e["order_id"], "at": rest_at,
                                   "amount": e["amount"] - amount})
    events.sort(key=lambda e: e["at"])
    return events, homes


def _reference(orders: pd.DataFrame, refunds: pd.DataFrame, members: list[str], as_of: date,
               mode: str) -> dict[str, dict]:
    refunded = refunds.groupby("order_id")["amount"].sum()
    o = orders.copy()
    o["net"] = o["amount"] - o["order_id"].map(refunded).fillna(0).astype("int64")
    o["day"] = o["at"].map(lambda t: t.astimezone(SH).date())
    o["month"] = o["day"].map(lambda d: d.year * 12 + d.month - 1)
    last = as_of.year * 12 + as_of.month - 1
    o["in_window"] = (o["month"] >= last - 11) & (o["month"] <= last)
    o["counts"] = o["in_window"] & (o["net"] > 0)
    by = o.groupby("member")
    table = pd.DataFrame({
        "R": by["day"].max().map(lambda d: (as_of - d).days),
        "F": by["counts"].sum().astype("int64"),
        "M": o[o["in_window"]].groupby("member")["net"].sum(),
    }).reindex(members)
    bought = table["R"].notna()
    table["M"] = table["M"].fillna(0).astype("int64")
    table["F"] = table["F"].fillna(0).astype("int64")
    pop = table[bought & (table["F"] >= 1)]
    n = len(pop)
    out: dict[str, dict] = {}

    def cuts(values: list[int]) -> list[int]:
        ordered = sorted(values)
        return [ordered[math.ceil(k * len(ordered) / 100) - 1] for k in (20, 40, 60, 80)]

    if mode == "quintile":
        cut_r, cut_f, cut_m = cuts([-int(v) for v in pop["R"]]), cuts(list(pop["F"])), cuts(list(pop["M"]))
    for member, row in table.iterrows():
        if pd.isna(row["R"]):
            out[member] = {"segment": "no_purchase", "R": None, "F": 0, "M": 0, "scores": None}
            continue
        r, f, m = int(row["R"]), int(row["F"]), int(row["M"])
        scores = None
        if mode == "mean":  # exact: x > sum/n  <=>  x*n > sum
            high = (r * n < int(pop["R"].sum()), f * n > int(pop["F"].sum()), m * n > int(pop["M"].sum()))
        else:
            scores = (1 + sum(-r > c for c in cut_r), 1 + sum(f > c for c in cut_f), 1 + sum(m > c for c in cut_m))
            high = tuple(s >= 4 for s in scores)
        out[member] = {"segment": NAMES[high], "R": r, "F": f, "M": m, "scores": scores}
    return out


@pytest.fixture
def brand(stack, fresh_table, monkeypatch):  # noqa: ANN001
    create_stores()
    shifted = Clock()
    monkeypatch.setattr(clock, "now", shifted.now)
    return shifted


def test_rfm_equals_an_independent_pandas_computation_member_by_member(brand, api, tokens):
    rng = random.Random(20261203)
    today = datetime.now(SH).date()
    events, homes = _plan(today, rng)
    staff, hq = tokens.staff(stores=list(STORES)), tokens.hq()
    brand.at = events[0]["at"] - timedelta(days=1)
    ids = {}
    for label, home in homes.items():
        status, body = api.post("/members", registration(store_id=home), staff)
        assert status == 201, body
        ids[label] = body["member_id"]
    owner: dict[str, str] = {}
    order_rows, refund_rows = [], []
    for e in events:
        brand.at = e["at"] + timedelta(seconds=1)
        if e["kind"] == "order":
            body = {"order_id": e["order_id"], "member_id": ids[e["label"]], "store_id": e["store"],
                    "channel": "store", "paid_at": e["at"].isoformat(), "amount": e["amount"],
                    "items": [{"sku": "s1", "name": "奶茶", "category": "tea", "qty": 1, "amount": e["amount"]}]}
            status, answer = api.post("/orders", body, staff)
            assert status == 201, answer
            owner[e["order_id"]] = e["label"]
            order_rows.append({"order_id": e["order_id"], "member": e["label"], "at": e["at"], "amount": e["amount"]})
        else:
            status, answer = api.post(f"/orders/{e['order_id']}/refunds",
                                      {"refund_id": f"r-{len(refund_rows)}", "amount": e["amount"]}, staff)
            assert status in (200, 201), answer
            refund_rows.append({"order_id": e["order_id"], "amount": e["amount"]})
    # A duplicate merged into a buyer: the survivor's figures cover both people's orders.
    brand.at = datetime.combine(today, time(1, 0), SH)
    status, answer = api.post(f"/members/{ids['m10']}/merge", {"source_member_id": ids["m11"]}, hq)
    assert status in (200, 201), answer
    orders = pd.DataFrame(order_rows)
    orders["member"] = orders["member"].replace({"m11": "m10"})
    refunds = pd.DataFrame(refund_rows)
    survivors = [label for label in ids if label != "m11"]

    # Night 1 (as of yesterday), mean thresholds, four segments in a pool of three workers.
    brand.at = datetime.combine(today, time(3, 0), SH)
    first = run_locally({"segments": 4}, workers=3)
    assert first["as_of"] == (today - timedelta(days=1)).isoformat()
    _compare(api, hq, ids, survivors, _reference(orders, refunds, survivors, today - timedelta(days=1), "mean"))

    # Night 2 (as of today), quintile scores: a day later every R grew by one.
    bootstrap.rfm().put_settings(RfmSettings(mode="quintile"), 0, "test")
    brand.at = datetime.combine(today + timedelta(days=1), time(3, 0), SH)
    second = run_locally({"segments": 3}, workers=2)
    assert second["as_of"] == today.isoformat()
    expected = _reference(orders, refunds, survivors, today, "quintile")
    _compare(api, hq, ids, survivors, expected)

    # The same night again: nothing to write, the same answers.
    again = run_locally({"date": today.isoformat(), "segments": 3}, workers=2)
    assert again["classified"] == second["classified"]
    _compare(api, hq, ids, survivors, expected)


def _compare(api, hq, ids, survivors, expected) -> None:  # noqa: ANN001
    checked = 0
    for label in survivors:
        status, view = api.get(f"/members/{ids[label]}", hq)
        assert status == 200, view
        want, got = expected[label], view["rfm"]
        assert got["segment"] == want["segment"], (label, got, want)
        assert got["recency_days"] == want["R"], (label, got, want)
        assert got["frequency"] == want["F"], (label, got, want)
        assert got["monetary_fen"] == want["M"], (label, got, want)
        want_scores = dict(zip("rfm", want["scores"], strict=True)) if want["scores"] else None
        assert got["scores"] == want_scores, (label, got, want)
        checked += 1
    assert checked == len(survivors)
    segments = {expected[label]["segment"] for label in survivors}
    assert len(segments) >= 4, f"the data should spread members over several segments: {segments}"
