"""The nightly run under hostile conditions, against DynamoDB Local: a crash mid-segment resumes without
counting a page twice, two workers on one segment commit each page once, a second run of a night writes
nothing, a night later with no new orders rewrites nobody, a move between segments writes one fact, and an
erased member leaves the index."""
from __future__ import annotations

import json
import random
from datetime import date, datetime, time, timedelta
from typing import Any

import pytest

from chalicelib import bootstrap
from chalicelib.domain import clock
from chalicelib.services import rfm_job
from chalicelib.store.rfm import DynamoRfmRepository
from functions.rfm import handler as rfm_handler
from functions.rfm import run_locally
from testkit.concurrency import at_once
from testkit.ledger import LambdaContext
from testkit.support import create_stores, registration

SH = clock.BUSINESS_TZ


class Clock:
    def __init__(self, at: datetime) -> None:
        self.at = at

    def now(self) -> datetime:
        return self.at


@pytest.fixture
def night(stack, fresh_table, monkeypatch):  # noqa: ANN001
    create_stores()
    today = datetime.now(SH).date()
    shifted = Clock(datetime.combine(today, time(10, 0), SH))
    monkeypatch.setattr(clock, "now", shifted.now)
    monkeypatch.setattr(rfm_job, "PAGE", 4)  # many pages from a few members
    return shifted


def _members(api, tokens, n: int, seed: int = 7) -> list[str]:  # noqa: ANN001
    rng = random.Random(seed)
    staff = tokens.staff(stores=["sh-001", "sh-002", "gz-001"])
    ids = []
    for i in range(n):
        home = ("sh-001", "sh-002", "gz-001")[i % 3]
        status, body = api.post("/members", registration(store_id=home), staff)
        assert status == 201
        ids.append(body["member_id"])
        for _ in range(i % 5):  # 0..4 orders, the last ones 1..80 days ago
            _order(api, staff, body["member_id"], rng.randint(1, 80), rng.choice([1_500, 9_900, 45_000]), home)
    return ids


def _order(api, staff, member_id: str, days_ago: int, amount: int, store: str = "sh-001") -> str:  # noqa: ANN001
    paid = clock.now() - timedelta(days=days_ago)
    body = {"order_id": f"o-{random.getrandbits(48):x}", "member_id": member_id, "store_id": store,
            "channel": "store", "paid_at": paid.isoformat(), "amount": amount,
            "items": [{"sku": "s", "name": "茶", "category": "tea", "qty": 1, "amount": amount}]}
    status, answer = api.post("/orders", body, staff)
    assert status == 201, answer
    return body["order_id"]


def _results(ids: list[str]) -> dict[str, Any]:
    db = bootstrap.db()
    return {m: db.get({"pk": f"MEMBER#{m}", "sk": "PROFILE~RFM"}) for m in ids}


def _night_counts(as_of: str) -> dict[str, Any]:
    items = bootstrap.db().query_all(KeyConditionExpression="pk = :pk", values={":pk": f"RFMNIGHT#{as_of}"})
    return {i["sk"]: json.loads(i["body"]) for i in items}


def test_a_crash_mid_segment_resumes_and_counts_every_member_once(night, api, tokens, monkeypatch):
    ids = _members(api, tokens, 24)
    real_commit = DynamoRfmRepository.commit_page
    crashed = []

    def crashing(self, as_of, phase, segment, page, *a, **kw):  # noqa: ANN001
        if phase == "classify" and page == 1 and not crashed:  # after its members' results were written
            crashed.append(segment)
            raise RuntimeError("the Lambda died here")
        return real_commit(self, as_of, phase, segment, page, *a, **kw)

    monkeypatch.setattr(DynamoRfmRepository, "commit_page", crashing)
    with pytest.raises(RuntimeError, match="died"):
        run_locally({"segments": 3}, workers=3)
    assert crashed
    monkeypatch.setattr(DynamoRfmRepository, "commit_page", real_commit)
    summary = run_locally({"segments": 3}, workers=3)
    buyers = [m for i, m in enumerate(ids) if i % 5]
    assert summary["classified"] == len(buyers)  # every member with a points state, once
    brand = _night_counts(summary["as_of"])["BRAND#ALL"]
    assert brand["members"] == len(buyers)
    stores = [v for k, v in _night_counts(summary["as_of"]).items() if k.startswith("STORE#")]
    assert sum(s["members"] for s in stores) == len(buyers)
    results = _results(ids)
    assert all(results[m] is not None for m in buyers)
    assert all(results[m] is None for i, m in enumerate(ids) if i % 5 == 0)  # never bought: no item
    # A member's view agrees with the night's counts.
    seg_counts: dict[str, int] = {}
    for m in buyers:
        seg_counts[results[m]["segment"]] = seg_counts.get(results[m]["segment"], 0) + 1
    assert {k: v for k, v in brand["segments"].items() if v} == seg_counts


def test_two_workers_on_one_segment_commit_each_page_once(night, api, tokens):
    ids = _members(api, tokens, 15)
    job = rfm_job.RfmJob(bootstrap.rfm(), bootstrap.stores())
    plan = job.plan(None, segments=1)
    as_of = date.fromisoformat(plan["as_of"])
    for phase in ("measure", "classify"):
        if phase == "classify":
            job.thresholds(as_of)

        def worker(p: str = phase) -> None:
            while not job.run_segment(as_of, p, 0, lambda: True)["done"]:
                pass
        at_once([worker, worker, worker])
    summary = job.finish(as_of)
    assert summary["classified"] == sum(1 for i in range(len(ids)) if i % 5)
    pages = list(bootstrap.rfm().pages(as_of, "classify"))
    assert sum(json.loads(p["body"])["members"] for p in pages) == summary["classified"]


def test_a_second_run_of_a_night_and_the_next_quiet_night_rewrite_nobody(night, api, tokens):
    ids = _members(api, tokens, 20)
    first = run_locally({"segments": 2}, workers=2)
    assert first["written"] == first["classified"]  # the first night writes every buyer's result
    before = _results(ids)
    counts = _night_counts(first["as_of"])
    again = run_locally({"date": first["as_of"], "segments": 2}, workers=2)
    assert again == first  # the finished night answers its own summary
    assert _results(ids) == before and _night_counts(first["as_of"]) == counts
    # The next night, no new orders: every R is one day older, no segment or score moves.
    night.at += timedelta(days=1)
    quiet = run_locally({"segments": 2}, workers=2)
    assert quiet["as_of"] != first["as_of"]
    after = _results(ids)
    churn_flips = [m for m in ids if before[m] and (before[m].get("churn_gap") != after[m].get("churn_gap"))]
    assert quiet["written"] == len(churn_flips)
    for m in ids:
        if before[m]:
            assert (after[m]["segment"], after[m].get("scores")) == (before[m]["segment"], before[m].get("scores"))


def test_a_move_between_segments_writes_one_fact_and_keeps_history(night, api, tokens):
    ids = _members(api, tokens, 12)
    staff = tokens.staff(stores=["sh-001"])
    first = run_locally({"segments": 1}, workers=1)
    lapsed = next(m for i, m in enumerate(ids) if i % 5 == 1)  # one old-ish order
    was = _results([lapsed])[lapsed]["segment"]
    for days in (1, 1, 2, 3, 3, 4, 5, 6):  # now recent, frequent, big
        _order(api, staff, lapsed, days, 88_800)
    night.at += timedelta(days=1)
    second = run_locally({"segments": 1}, workers=1)
    now_in = _results([lapsed])[lapsed]
    assert now_in["segment"] != was and second["moved"] >= 1
    assert json.loads(now_in["history"])[-1] == [was, first["as_of"], second["as_of"]]
    fact = bootstrap.db().get({"pk": f"MEMBER#{lapsed}", "sk": f"FACT#segment_changed#{second['as_of']}"})
    body = json.loads(fact["body"])
    assert body["from"] == was and body["to"] == now_in["segment"] and body["text"] == f"moved from {was} to " \
        f"{now_in['segment']}"
    status, view = api.get(f"/members/{lapsed}", tokens.hq())
    assert view["rfm"]["segment"] == now_in["segment"] and view["rfm"]["history"][-1]["segment"] == was


def test_an_erased_member_leaves_the_index_and_loses_its_segment(night, api, tokens):
    ids = _members(api, tokens, 6)
    run_locally({"segments": 1}, workers=1)
    gone = ids[1]
    assert _results([gone])[gone] is not None
    status, _ = api.delete(f"/members/{gone}", tokens.hq())
    assert status == 200
    assert _results([gone])[gone] is None
    night.at += timedelta(days=1)
    summary = run_locally({"segments": 1}, workers=1)
    assert summary["classified"] == sum(1 for i in range(len(ids)) if i % 5) - 1
    assert _results([gone])[gone] is None


def test_the_handler_runs_each_step_as_the_state_machine_calls_it(night, api, tokens):
    _members(api, tokens, 8)
    ctx = LambdaContext("rfm")
    plan = rfm_handler({"step": "plan", "segments": 2}, ctx)
    assert len(plan["segments"]) == 2 and plan["measure"] is True
    for phase in ("measure", "classify"):
        if phase == "classify":
            rfm_handler({"step": "thresholds", "as_of": plan["as_of"]}, ctx)
        for item in plan["segments"]:
            while not rfm_handler({"step": phase, **item}, ctx)["done"]:
                pass
    done = rfm_handler({"step": "finish", "as_of": plan["as_of"]}, ctx)
    assert done["classified"] == sum(1 for i in range(8) if i % 5)
    rfm_handler({"step": "plan", "date": "2020-01-01", "segments": 1}, ctx)
    with pytest.raises(RuntimeError, match="thresholds"):  # classify before thresholds is refused, not guessed
        rfm_handler({"step": "classify", "as_of": "2020-01-01", "segment": 0}, ctx)
