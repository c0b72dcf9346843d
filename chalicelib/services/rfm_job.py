"""The nightly RFM run: plan -> measure every segment -> thresholds -> classify every segment -> finish.

Each segment of the member index (a parallel Scan's Segment/TotalSegments) is read page by page; every page's
partial result is committed with the segment's cursor in one transaction, so a crashed or repeated step
resumes after the last committed page and never counts a page twice. On AWS a Step Functions Map runs the
segments across Lambda invocations (functions/rfm.py, infra/); locally `run_all` runs the same steps with a
thread pool. Definitions: domain/rfm.py and docs/rfm.md.
"""
from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any, Protocol

import numpy as np

from ..domain import clock
from ..domain import rfm as calc
from ..domain.ledger import MemberState
from ..domain.segments import ALL_SEGMENTS, MemberRfm, RfmSettings, Window, next_result

PAGE = 2_000  # members per committed page: a page's partial stays far below DynamoDB's 400 KB item limit
MEMBERS_PER_SEGMENT = 100_000  # one Map iteration's share: ~50 pages, a few Lambda minutes
MAX_SEGMENTS = 1_000
WRITERS = 8  # results written in parallel per worker
UNKNOWN_STORE = "-"
TOP_MEMBERS = 50  # the store report's best members (docs/reports.md)


class RulesSource(Protocol):
    def rules(self) -> tuple[Any, int]: ...  # (domain.tags.TagRules, version): the tag rules now


@dataclass
class Page:
    """One page of members as columns (members whose state vanished meanwhile, e.g. merged away, are left out)."""

    states: list[MemberState]
    r: np.ndarray
    f: np.ndarray
    m: np.ndarray
    purchased: np.ndarray
    month_orders: np.ndarray


def columns(states: Iterable[MemberState], as_of: date) -> Page:
    kept, r, f, m, bought, month = [], [], [], [], [], []
    window = Window(as_of)
    for s in states:
        fig = window.figures(s)
        kept.append(s)
        r.append(fig.recency_days or 0)
        f.append(fig.frequency)
        m.append(fig.monetary)
        bought.append(fig.recency_days is not None)
        month.append(fig.month_orders)
    i64 = np.int64
    return Page(kept, np.array(r, i64), np.array(f, i64), np.array(m, i64), np.array(bought, bool),
                np.array(month, i64))


class RfmJob:
    def __init__(self, rfm: Any, stores: Any, rules: RulesSource | None = None) -> None:
        self.rfm = rfm
        self.stores = stores
        self.rules_source = rules

    # ---- plan ----------------------------------------------------------------------------------------------
    def plan(self, as_of: date | None = None, segments: int | None = None) -> dict[str, Any]:
        as_of = as_of or clock.business_day(clock.now()) - timedelta(days=1)
        settings, _ = self.rfm.settings()
        existing = self.rfm.run(as_of)
        if existing is not None:  # planned already (a re-run): its segments, settings and rules stand
            segments = int(existing["segments"])
        if segments is None:
            estimate = self.rfm.table_item_estimate()
            segments = min(MAX_SEGMENTS, max(1, math.ceil(estimate / MEMBERS_PER_SEGMENT)))
        rules = self.rules_source.rules()[0] if self.rules_source else None
        run = self.rfm.start_run(as_of, segments, settings, rules)
        total = int(run["segments"])
        return {"as_of": as_of.isoformat(), "measure": run["settings"]["mode"] != "fixed",
                "segments": [{"as_of": as_of.isoformat(), "segment": i} for i in range(total)]}

    # ---- a segment's pages -----------------------------------------------------------------------------------
    def run_segment(self, as_of: date, phase: str, segment: int, time_left: Callable[[], bool]) -> dict[str, Any]:
        run = self._run(as_of)
        total = int(run["segments"])
        settings = RfmSettings.model_validate(run["settings"])
        if phase == "classify":
            if run["thresholds"] is None:
                raise RuntimeError(f"the night {as_of} has no thresholds yet: run the thresholds step first")
            thresholds = calc.Thresholds.from_dict(run["thresholds"])
            rules = _rules(run.get("tag_rules"))
        page, start, done = self.rfm.cursor(as_of, phase, segment)
        while not done and time_left():
            ids, last = self.rfm.scan_members(segment, total, start, PAGE)
            loaded = self.rfm.load(ids, with_results=phase == "classify")
            states = [s for s, _ in (loaded[i] for i in ids) if s is not None]
            cols = columns(states, as_of)
            if phase == "measure":
                partial: dict[str, Any] = {"blob": calc.partial_of(cols.r, cols.f, cols.m).encode()}
            else:
                previous = {i: res for i, (_, res) in loaded.items()}
                partial = {"body": self._classify(as_of, cols, previous, thresholds, settings, rules)}
            if self.rfm.commit_page(as_of, phase, segment, page, last, last is None, partial):
                page, start, done = page + 1, last, last is None
            else:  # another worker committed this page first: continue from where it left the cursor
                page, start, done = self.rfm.cursor(as_of, phase, segment)
        return {"as_of": as_of.isoformat(), "segment": segment, "done": done}

    def _classify(self, as_of: date, cols: Page, previous: dict[str, MemberRfm | None],
                  thresholds: calc.Thresholds, settings: RfmSettings, rules: Any) -> str:
        result = calc.classify(cols.r, cols.f, cols.m, cols.purchased, thresholds)
        gaps = calc.usual_gaps_of([s.recent_days for s in cols.states])
        churn = calc.churning(cols.r, gaps, settings.churn_factor_permille) & cols.purchased
        writes = []
        for i, s in enumerate(cols.states):
            segment = result.segment(i)
            tags = _tags(rules, s, segment, int(cols.r[i]), int(cols.f[i]), int(cols.m[i]), cols.purchased[i])
            gap = calc.gap_text(float(gaps[i])) if churn[i] else None
            before = previous.get(s.member_id)
            new = next_result(s.member_id, as_of, segment, result.scores(i), tags, gap, before)
            if new.same_as(before):
                continue
            moved = new.moved_from(before)
            fact = None if moved is None else {
                "type": "segment_changed", "member_id": s.member_id, "from": moved, "to": segment,
                "as_of": as_of.isoformat(), "text": f"moved from {moved} to {segment}"}
            writes.append((new, before, fact))
        with ThreadPoolExecutor(WRITERS) as pool:
            written = sum(pool.map(lambda w: self.rfm.write_result(as_of, *w), writes))
        homes = [s.home_store_id or UNKNOWN_STORE for s in cols.states]
        names = sorted(set(homes))
        index = {n: k for k, n in enumerate(names)}
        groups = np.array([index[h] for h in homes], np.int64)
        counts = calc.counts_by_group(groups, result.codes, len(names))
        buyers, repeaters = calc.repurchase(groups, cols.month_orders, len(names))
        best: dict[str, list[list[Any]]] = {}
        for i in np.flatnonzero(cols.m > 0):  # the store report's best members, by the window's spend
            s = cols.states[int(i)]
            best.setdefault(homes[int(i)], []).append(
                [s.member_id, int(cols.m[i]), s.lifetime_spend, int(cols.f[i]), int(cols.r[i]), result.segment(int(i)),
                 s.tier])
        churners: dict[str, list[list[Any]]] = {}
        for i in np.flatnonzero(churn):
            s = cols.states[int(i)]
            churners.setdefault(homes[int(i)], []).append(
                [s.member_id, int(cols.m[i]), s.lifetime_spend, calc.gap_text(float(gaps[i])), int(cols.r[i]), s.tier])
        body = {"members": len(cols.states), "written": int(written),
                "moved": sum(1 for w in writes if w[2] is not None),
                "stores": {n: counts[k].tolist() for k, n in enumerate(names)},
                "repurchase": {n: [int(buyers[k]), int(repeaters[k])] for k, n in enumerate(names)},
                "churn": {h: _top(c, settings.churn_list_size) for h, c in churners.items()},
                "top": {h: _top(c, TOP_MEMBERS) for h, c in best.items()}}
        return _dumps(body)

    # ---- thresholds --------------------------------------------------------------------------------------------
    def thresholds(self, as_of: date) -> dict[str, Any]:
        run = self._run(as_of)
        if run["thresholds"] is not None:
            return run["thresholds"]
        settings = RfmSettings.model_validate(run["settings"])
        whole = None
        if settings.mode != "fixed":
            self._all_done(as_of, "measure", int(run["segments"]))
            whole = calc.merge(calc.Partial.decode(bytes(p["blob"])) for p in self.rfm.pages(as_of, "measure"))
        return self.rfm.set_thresholds(as_of, calc.thresholds(settings, whole).as_dict())

    # ---- finish --------------------------------------------------------------------------------------------
    def finish(self, as_of: date) -> dict[str, Any]:
        run = self._run(as_of)
        if run.get("phase") == "done":  # a finished night answers what it wrote, and writes nothing again
            return _loads(run["summary"])
        settings = RfmSettings.model_validate(run["settings"])
        self._all_done(as_of, "classify", int(run["segments"]))
        counts: dict[str, np.ndarray] = {}
        rebuy: dict[str, np.ndarray] = {}
        churn: dict[str, list[list[Any]]] = {}
        top: dict[str, list[list[Any]]] = {}
        members = written = moved = 0
        for page in self.rfm.pages(as_of, "classify"):
            body = _loads(page["body"])
            members, written, moved = members + body["members"], written + body["written"], moved + body["moved"]
            for sid, row in body["stores"].items():
                counts[sid] = counts.get(sid, np.zeros(len(ALL_SEGMENTS), np.int64)) + np.array(row, np.int64)
            for sid, pair in body["repurchase"].items():
                rebuy[sid] = rebuy.get(sid, np.zeros(2, np.int64)) + np.array(pair, np.int64)
            for sid, rows in body["churn"].items():
                churn[sid] = _top(churn.get(sid, []) + rows, settings.churn_list_size)
            for sid, rows in body.get("top", {}).items():  # pages of a run started before the list existed: none
                top[sid] = _top(top.get(sid, []) + rows, TOP_MEMBERS)
        regions = self._regions()
        by_region: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        for sid, row in counts.items():
            pair = rebuy.get(sid, np.zeros(2, np.int64))
            self.rfm.put_night(as_of, "STORE", sid, _night(as_of, row, pair, churn.get(sid, []), top.get(sid, [])))
            region = regions.get(sid, UNKNOWN_STORE)
            was = by_region.get(region, (np.zeros(len(ALL_SEGMENTS), np.int64), np.zeros(2, np.int64)))
            by_region[region] = (was[0] + row, was[1] + pair)
        for region, (row, pair) in by_region.items():
            self.rfm.put_night(as_of, "REGION", region, _night(as_of, row, pair, None))
        brand_row = sum(counts.values(), np.zeros(len(ALL_SEGMENTS), np.int64))
        brand_pair = sum(rebuy.values(), np.zeros(2, np.int64))
        self.rfm.put_night(as_of, "BRAND", "ALL", _night(as_of, brand_row, brand_pair, None))
        summary = {"as_of": as_of.isoformat(), "classified": int(members), "written": int(written),
                   "moved": int(moved), "segments": int(run["segments"]), "thresholds": run["thresholds"]}
        self.rfm.finish_run(as_of, summary)
        return summary

    # ---- the whole night, locally ------------------------------------------------------------------------------
    def run_all(self, as_of: date | None = None, workers: int = 4, segments: int | None = None) -> dict[str, Any]:
        plan = self.plan(as_of, segments)
        night = date.fromisoformat(plan["as_of"])

        def drive(phase: str) -> None:
            def one(seg: int) -> None:
                while not self.run_segment(night, phase, seg, lambda: True)["done"]:
                    pass
            with ThreadPoolExecutor(max(1, workers)) as pool:
                list(pool.map(one, [s["segment"] for s in plan["segments"]]))

        if plan["measure"]:
            drive("measure")
        self.thresholds(night)
        drive("classify")
        return self.finish(night)

    # ---- helpers -----------------------------------------------------------------------------------------------
    def _run(self, as_of: date) -> dict[str, Any]:
        run = self.rfm.run(as_of)
        if run is None:
            raise RuntimeError(f"no RFM run planned for {as_of}")
        return run

    def _all_done(self, as_of: date, phase: str, total: int) -> None:
        missing = [s for s in range(total) if not self.rfm.cursor(as_of, phase, s)[2]]
        if missing:
            raise RuntimeError(f"{phase}: segments not finished yet: {missing[:10]}")

    def _regions(self) -> dict[str, str]:
        regions, cursor = {}, None
        while True:
            page, cursor = self.stores.list(cursor, 100)
            regions.update({s.store_id: s.region_id for s in page})
            if not cursor:
                return regions


def _night(as_of: date, row: np.ndarray, pair: np.ndarray, churn: list[list[Any]] | None,
           top: list[list[Any]] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"as_of": as_of.isoformat(), "segments": dict(zip(ALL_SEGMENTS, row.tolist(), strict=True)),
                            "members": int(row.sum()),
                            "repurchase": {"buyers": int(pair[0]), "repeat_buyers": int(pair[1]),
                                           "rate_permille": calc.permille(int(pair[1]), int(pair[0]))}}
    if churn is not None:
        body["churn"] = [{"member_id": c[0], "monetary": c[1], "lifetime_spend": c[2], "usual_gap_days": c[3],
                          "days_since_purchase": c[4], "tier": c[5]} for c in churn]
    if top is not None:
        body["top"] = [{"member_id": t[0], "monetary": t[1], "lifetime_spend": t[2], "frequency": t[3],
                        "recency_days": t[4], "segment": t[5], "tier": t[6]} for t in top]
    return body


def _top(rows: list[list[Any]], n: int) -> list[list[Any]]:
    """The churn and best-member lists' order: window spend, then lifetime spend, then member id (a stable
    tie-break). Rows: [member_id, window spend, lifetime spend, ...]."""
    return sorted(rows, key=lambda c: (-c[1], -c[2], c[0]))[:n]


def _rules(raw: Any) -> Any:
    if not raw:
        return None
    from ..domain.tags import TagRules

    return TagRules.model_validate_json(raw) if isinstance(raw, str) else TagRules.model_validate(raw)


def _tags(rules: Any, s: MemberState, segment: str, r: int, f: int, m: int, purchased: bool) -> tuple[str, ...]:
    if rules is None or not rules.rules:
        return ()
    from ..domain.tags import MemberFacts, evaluate

    spent = sum(v for v in s.categories.values() if v > 0)
    shares = {c: calc.permille(v, spent) for c, v in s.categories.items()} if spent else {}
    facts = MemberFacts(segment=segment, recency_days=r if purchased else None, frequency=f, monetary=m,
                        order_count=s.order_count, lifetime_spend=s.lifetime_spend, tier=s.tier,
                        category_shares=shares, coupon_order_share=calc.permille(s.coupon_orders, s.order_count))
    return tuple(evaluate(rules, facts))


def _dumps(body: dict[str, Any]) -> str:
    return json.dumps(body, ensure_ascii=False, separators=(",", ":"))


def _loads(text: str) -> dict[str, Any]:
    return json.loads(text)
