"""The segmentation's pure parts: cut points, scores, exact means, mergeable partials, the churn warning, the
recent-days encoding and the order fold (no AWS)."""
from __future__ import annotations

import random
from datetime import date, datetime, timedelta

import numpy as np
import pytest

from bench.capacity import item_size
from chalicelib.domain import rfm
from chalicelib.domain.aggregates import fold_order
from chalicelib.domain.clock import BUSINESS_TZ
from chalicelib.domain.ledger import MemberState
from chalicelib.domain.purchase_days import RECENT_DAYS, day_number, decode_days, encode_days, with_day
from chalicelib.domain.segments import NO_PURCHASE, SEGMENTS, FixedThresholds, RfmSettings, figures, next_result
from chalicelib.store.db import to_item
from chalicelib.store.ledger import state_item


def _arr(*v: int) -> np.ndarray:
    return np.array(v, dtype=np.int64)


def test_nearest_rank_cut_points():
    values, counts = np.unique(_arr(*range(1, 11)), return_counts=True)
    assert rfm.nearest_rank_cuts(values, counts) == (2, 4, 6, 8)
    # N = 7: ranks ceil(1.4)=2, ceil(2.8)=3, ceil(4.2)=5, ceil(5.6)=6
    values, counts = np.unique(_arr(10, 20, 30, 40, 50, 60, 70), return_counts=True)
    assert rfm.nearest_rank_cuts(values, counts) == (20, 30, 50, 60)
    assert rfm.nearest_rank_cuts(_arr(), _arr()) is None


def test_quintile_scores_equal_values_score_the_same_and_recent_scores_high():
    r, f, m = _arr(1, 1, 1, 1, 30), _arr(5, 5, 5, 5, 1), _arr(100, 200, 300, 400, 500)
    t = rfm.thresholds(RfmSettings(mode="quintile"), rfm.partial_of(r, f, m))
    out = rfm.classify(r, f, m, np.ones(5, bool), t)
    assert len(set(out.f_score[:4].tolist())) == 1 and len(set(out.r_score[:4].tolist())) == 1
    assert out.r_score[4] < out.r_score[0]  # 30 days ago scores lower than yesterday
    assert out.m_score.tolist() == [1, 2, 3, 4, 5]
    assert out.scores(0) == (int(out.r_score[0]), int(out.f_score[0]), 1)


def test_mean_is_compared_exactly_in_integers():
    # F mean 4/3: 2 is above it, 1 is not; a float mean of 1.3333333 would agree, but M mean below is exact too
    r, f, m = _arr(3, 3, 6), _arr(1, 1, 2), _arr(1, 1, 1)
    t = rfm.thresholds(RfmSettings(), rfm.partial_of(r, f, m))
    out = rfm.classify(r, f, m, np.ones(3, bool), t)
    # R mean 4: 3 is recent (high), 6 is not; M equal to the mean is not above it
    assert [out.segment(i) for i in range(3)] == ["一般发展", "一般发展", "一般保持"]
    assert out.scores(0) is None


def test_every_flag_combination_names_its_segment():
    r, f, m = _arr(1, 1, 1, 1, 9, 9, 9, 9), _arr(9, 9, 1, 1, 9, 9, 1, 1), _arr(9, 1, 9, 1, 9, 1, 9, 1)
    t = rfm.Thresholds("fixed", fixed=(5, 5, 5))
    out = rfm.classify(r, f, m, np.ones(8, bool), t)
    assert [out.segment(i) for i in range(8)] == ["重要价值", "一般价值", "重要发展", "一般发展",
                                                  "重要保持", "一般保持", "重要挽留", "一般挽留"]
    none = rfm.classify(_arr(0), _arr(0), _arr(0), np.zeros(1, bool), t)
    assert none.segment(0) == NO_PURCHASE and none.scores(0) is None
    assert len(set(SEGMENTS)) == 8


def test_partials_merge_to_the_single_pass_and_survive_encoding():
    rng = np.random.default_rng(5)
    r, f, m = rng.integers(0, 400, 5000), rng.integers(0, 12, 5000), rng.integers(-500, 90_000, 5000)
    whole = rfm.partial_of(r, f, m)
    parts = [rfm.partial_of(r[i:i + 700], f[i:i + 700], m[i:i + 700]) for i in range(0, 5000, 700)]
    merged = rfm.merge(rfm.Partial.decode(p.encode()) for p in parts)
    assert (merged.n, merged.sum_r, merged.sum_f, merged.sum_m) == (whole.n, whole.sum_r, whole.sum_f, whole.sum_m)
    for a, b in ((merged.r, whole.r), (merged.f, whole.f), (merged.m, whole.m)):
        assert a[0].tolist() == b[0].tolist() and a[1].tolist() == b[1].tolist()
    for mode in ("mean", "quintile"):
        s = RfmSettings(mode=mode)
        t = rfm.Thresholds.from_dict(rfm.thresholds(s, merged).as_dict())
        assert t == rfm.thresholds(s, whole)


def test_fixed_mode_needs_its_thresholds():
    with pytest.raises(ValueError, match="fixed"):
        RfmSettings(mode="fixed")
    t = rfm.thresholds(RfmSettings(mode="fixed", fixed=FixedThresholds(recency_days=7, frequency=2, monetary=100)),
                       None)
    assert t.fixed == (7, 2, 100)


def test_usual_gap_is_the_median_of_the_last_ten_and_needs_three_days():
    days = [[0, 5, 10], [0, 4], list(range(0, 120, 10)) + [200], [0, 1, 4, 9]]
    gaps = rfm.usual_gaps(days)
    assert gaps[0] == 5 and np.isnan(gaps[1]) and gaps[2] == 10 and gaps[3] == 3
    assert rfm.churning(_arr(11, 10, 20, 7), gaps, 2000).tolist() == [True, False, False, True]
    assert rfm.gap_text(3.0) == "3" and rfm.gap_text(6.5) == "6.5"
    texts = [encode_days(d) for d in days]
    assert np.array_equal(rfm.usual_gaps_of(texts), gaps, equal_nan=True)  # the fast path, the same answer


def test_recent_days_encoding_is_compact_ordered_and_capped():
    start = date(2026, 1, 1)
    text = ""
    for d in random.Random(1).sample(range(300), 40):
        text = with_day(text, start + timedelta(days=d))
    days = decode_days(text)
    assert len(days) == RECENT_DAYS and days == sorted(days)
    assert days[-1] == day_number(start + timedelta(days=299)) or days == sorted(days)[-RECENT_DAYS:]
    assert len(text) <= 40
    assert with_day(text, start + timedelta(days=days[-1] - day_number(start))) == text  # a day already there
    assert encode_days(decode_days(text)) == text


def test_the_fold_counts_an_order_and_keeps_its_day():
    s = MemberState(member_id="m")
    at = datetime(2026, 3, 31, 23, 59, tzinfo=BUSINESS_TZ)
    s = fold_order(s, paid_at=at, store_id="sh-001", net=1000, lines=[("tea", 600), ("cake", 400)], used_coupon=True)
    s = fold_order(s, paid_at=at + timedelta(minutes=2), store_id="sh-002", net=0, lines=[("tea", 500)],
                   counted=False)
    assert s.orders_months == {"2026-03": 1, "2026-04": 0} and s.spend_months == {"2026-03": 1000, "2026-04": 0}
    late = fold_order(s, paid_at=at - timedelta(days=60), store_id="sh-001", net=5, lines=[])  # backdated
    assert late.spend_months == {"2026-01": 5, "2026-03": 1000, "2026-04": 0}
    later = fold_order(late, paid_at=at + timedelta(days=366), store_id="sh-001", net=7, lines=[])
    assert later.spend_months == {"2026-04": 0, "2027-04": 7}  # 2026-04..2027-04: 13 months back from the newest
    assert s.order_count == 1 and s.coupon_orders == 1 and s.categories == {"tea": 1100, "cake": 400}
    assert len(decode_days(s.recent_days)) == 2 and s.stores == {"sh-001", "sh-002"}
    fig = figures(s, date(2026, 4, 30))
    assert (fig.recency_days, fig.frequency, fig.monetary, fig.month_orders) == (29, 1, 1000, 0)


def test_an_active_members_state_stays_under_one_kilobyte():
    s = MemberState(member_id="01JABCDEFGHJKMNPQRSTVWXYZ0", home_store_id="sh-001-flagship")
    at = datetime(2025, 12, 1, 12, 0, tzinfo=BUSINESS_TZ)
    for i in range(300):  # five orders a month for five years, eight categories, six stores, coupons
        s = fold_order(s, paid_at=at + timedelta(days=6 * i), store_id=f"sh-00{i % 6}", net=12_345 + i,
                       lines=[(f"category-{i % 8}", 12_345 + i)], used_coupon=i % 3 == 0)
    s = s.evolve(version=60, available=5_000, tier="gold", tier_base="gold", lifetime_earned=8_000,
                 first_purchase_at=at, open_lots_from=at)
    size = item_size(to_item(state_item(s)))
    assert size < 1024, size
    assert len(s.spend_months) == 13 and len(s.orders_months) == 13  # the window and one month, not five years


def test_next_result_carries_the_segment_start_and_history():
    d1, d2, d3 = date(2026, 1, 1), date(2026, 1, 2), date(2026, 1, 3)
    a = next_result("m", d1, "重要价值", None, (), None, None)
    b = next_result("m", d2, "重要价值", None, ("x",), None, a)
    c = next_result("m", d3, "重要挽留", None, ("x",), "6", b)
    assert (a.since, b.since, c.since) == (d1, d1, d3) and not b.same_as(a) and b.moved_from(a) is None
    assert c.history == [("重要价值", "2026-01-01", "2026-01-03")] and c.moved_from(b) == "重要价值"
