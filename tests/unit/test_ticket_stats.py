"""Ticket numbers (chalicelib/domain/ticket_stats.py): what each change adds to the day rollups, worked out by
hand here; the histogram's buckets, merge and quantiles, held by hypothesis to the stated error against the
exact nearest-rank value of the samples."""
from __future__ import annotations

from datetime import date, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from chalicelib.domain import clock
from chalicelib.domain.sla import ALWAYS, SlaPolicy, on_event, open_sla, sla_body, sla_from
from chalicelib.domain.ticket_stats import (
    DIMENSIONS,
    MAX_BUCKET,
    NONE,
    RATIO,
    RELATIVE_ERROR,
    ROUNDING_SECONDS,
    SHARDED,
    Rollup,
    add_up,
    bucket,
    histogram,
    lower,
    merge,
    midpoint,
    nearest_rank,
    numbers,
    on_open,
    quantile,
    rows,
    stat_shard,
    upper,
)
from chalicelib.domain.ticket_stats import on_event as stats_on_event
from chalicelib.domain.tickets import ActionType, Channel, Event, Priority, Ticket, TicketType, apply

TZ = clock.BUSINESS_TZ


def at(day: int, hh: int, mm: int = 0, ss: int = 0) -> datetime:
    return datetime(2026, 12, day, hh, mm, ss, tzinfo=TZ)


def cals(_key: str):
    return ALWAYS  # wall time everywhere: the outcomes below are worked out by the minute


def opened(when: datetime, **kw) -> Ticket:
    base = dict(ticket_id="t1", channel=Channel.HOTLINE, type=TicketType.COMPLAINT, subject="s", description="",
                store_id="sh-001", member_id=None, order_id=None, queue_id="store-sh-001",
                priority=Priority.NORMAL, created_at=when, created_by="clerk")
    base.update(kw)
    t = Ticket(**base)
    return t.evolve(sla=sla_body(open_sla(SlaPolicy(), t, cals)))  # 30 min first response, 24 h resolution


def step(t: Ticket, kind: str, when: datetime, role: str = "staff", **data) -> tuple[Ticket, Rollup]:
    e = Event(action_id=f"{kind}-{when.isoformat()}", type=ActionType(kind), by="x", by_role=role, at=when, data=data)
    after = apply(t, e)
    after = after.evolve(sla=sla_body(on_event(sla_from(t.sla), t, after, e, cals)))
    return after, stats_on_event(t, after, e)


# ---- what each change adds ----------------------------------------------------------------------------------
def test_opening_counts_one_on_the_business_day_of_shanghai():
    # 23:30 UTC on Dec 1 is 07:30 on Dec 2 in Shanghai: the business day is the 2nd
    t = opened(datetime(2026, 12, 1, 23, 30, tzinfo=clock.ZoneInfo("UTC")))
    assert on_open(t) == Rollup(date(2026, 12, 2), {"opened": 1})


def test_first_reply_samples_wall_seconds_and_the_clocks_outcomes():
    t = opened(at(3, 10, 0))
    t, r = step(t, "comment", at(3, 10, 5), body="internal")
    assert not r  # a comment adds nothing
    t, r = step(t, "reply", at(3, 10, 7), role="member", body="anyone there?")
    assert not r  # the member's own reply is no response
    t, r = step(t, "reply", at(3, 10, 12, 30), body="on it")
    # 12 min 30 s = 750 s: 1.2^36 = 708.8 <= 750 < 1.2^37 = 850.6, so bucket 37; 30-minute target met
    assert r == Rollup(date(2026, 12, 3), {"frh37": 1, "fr_met": 1})
    t, r = step(t, "reply", at(3, 11, 0), body="again")
    assert not r  # only the first reply counts
    t, r = step(t, "resolve", at(4, 9, 0))
    assert r == Rollup(date(2026, 12, 4), {"res_met": 1})  # 23 h of a 24 h target
    t, r = step(t, "rate", at(4, 12, 0), role="member", score=4)
    assert r == Rollup(date(2026, 12, 4), {"rate_sum": 4, "rate_n": 1})


def test_breaches_a_resolve_before_any_reply_and_a_reopened_ticket_deciding_again():
    t = opened(at(3, 10, 0))
    t, r = step(t, "resolve", at(3, 11, 0))
    # no reply: no time sample, but the first-response clock stopped late (60 min of 30) and resolution in time
    assert r == Rollup(date(2026, 12, 3), {"fr_breached": 1, "res_met": 1})
    t, r = step(t, "reopen", at(3, 12, 0))
    assert not r
    t, r = step(t, "reply", at(3, 12, 5), body="sorry")
    # 2 h 5 min = 7500 s (1.2^48 = 6319.7 <= 7500 < 1.2^49 = 7583.7): the sample only, its clock was decided
    assert r == Rollup(date(2026, 12, 3), {"frh49": 1})
    t, r = step(t, "resolve", at(5, 10, 0))  # 2 days on: past 24 h, decided again
    assert r == Rollup(date(2026, 12, 5), {"res_breached": 1})
    t, r = step(t, "close", at(5, 11, 0))
    assert not r  # closing a resolved ticket decides nothing new


def test_closing_an_unresolved_ticket_decides_its_clocks():
    t = opened(at(3, 10, 0))
    t, _ = step(t, "reply", at(3, 10, 40), body="hi")
    t, r = step(t, "close", at(5, 10, 0))
    assert r == Rollup(date(2026, 12, 5), {"res_breached": 1})


def test_a_ticket_without_clocks_counts_samples_but_no_outcomes():
    t = opened(at(3, 10, 0)).evolve(sla=None)
    e = Event(action_id="r", type=ActionType.REPLY, by="x", by_role="staff", at=at(3, 10, 0, 0), data={"body": "b"})
    assert stats_on_event(t, apply(t, e), e) == Rollup(date(2026, 12, 3), {"frh0": 1})


def test_rows_one_per_dimension_sharded_where_the_whole_brand_writes():
    t = opened(at(3, 10, 0))
    found = rows(t, on_open(t), "east")
    assert [(r.dim, r.value) for r in found] == [("store", "sh-001"), ("region", "east"), ("type", "complaint"),
                                                 ("channel", "hotline")]
    assert [r.shard for r in found] == [None] + [stat_shard("t1")] * 3 and SHARDED == set(DIMENSIONS[1:])
    assert found[0].region == "east" and {r.region for r in found[1:]} == {None}
    nowhere = opened(at(3, 10, 0), store_id=None)
    assert [r.value for r in rows(nowhere, on_open(nowhere), None)][:2] == [NONE, NONE]
    assert rows(t, Rollup(date(2026, 12, 3), {}), "east") == []


def test_numbers_of_added_rows_by_hand():
    # three days of one store: samples 60 s, 600 s, 6000 s; 2 of 3 first responses met; 1 resolution of 1
    # breached; ratings 5 and 2
    days = [{"opened": 2, f"frh{bucket(60)}": 1, "fr_met": 1, "rate_sum": 5, "rate_n": 1},
            {"opened": 1, f"frh{bucket(600)}": 1, "fr_met": 1, "res_breached": 1, "sk": "ignored"},
            {f"frh{bucket(6000)}": 1, "fr_breached": 1, "rate_sum": 2, "rate_n": 1}]
    n = numbers("sh-001", add_up(days))
    assert (n.opened, n.first_response_count) == (3, 3)
    assert n.first_response_met_rate_bp == 6666 and n.resolution_met_rate_bp == 0
    assert (n.satisfaction_count, n.satisfaction_average_x100) == (2, 350)
    assert abs(n.first_response_median_seconds - 600) <= 60.5 and abs(n.first_response_p90_seconds - 6000) <= 600.5
    empty = numbers(NONE, {})
    assert empty.value is None and empty.first_response_median_seconds is None
    assert empty.first_response_met_rate_bp is None and empty.satisfaction_average_x100 is None


# ---- the histogram ---------------------------------------------------------------------------------------------
def test_bucket_bounds_by_hand():
    assert bucket(0) == 0 and bucket(1) == 1  # [1, 1.2)
    assert bucket(2) == 4  # 1.2^3 = 1.728 <= 2 < 1.2^4 = 2.0736
    assert bucket(3600) == 45  # 1.2^44 = 3047.7 <= 3600 < 1.2^45 = 3657.3
    assert midpoint(1) == 1.1 and RELATIVE_ERROR == (RATIO - 1) / 2


@given(st.integers(min_value=0, max_value=10**9))
def test_every_sample_sits_in_its_bucket_and_within_the_error_of_its_midpoint(v):
    k = bucket(v)
    assert k <= MAX_BUCKET
    if v == 0:
        assert k == 0 and midpoint(k) == 0
    else:
        assert lower(k) <= v < upper(k)
        assert abs(midpoint(k) - v) <= RELATIVE_ERROR * v + 1e-9


samples = st.lists(st.one_of(st.integers(0, 120), st.integers(0, 3 * 86_400), st.integers(0, 10**8)),
                   min_size=1, max_size=300)


@settings(max_examples=300)
@given(samples, st.sampled_from([50, 90, 1, 99, 100]))
def test_quantile_within_the_stated_error_of_the_exact_nearest_rank(xs, pct):
    exact = nearest_rank(xs, pct)
    estimate = quantile(histogram(xs), pct)
    assert abs(estimate - exact) <= RELATIVE_ERROR * exact + ROUNDING_SECONDS


@given(samples, samples)
def test_merging_histograms_is_adding_them(a, b):
    assert merge(histogram(a), histogram(b)) == histogram(a + b)
    for pct in (50, 90):  # so the quantile of merged days is the quantile of all their samples
        assert quantile(merge(histogram(a), histogram(b)), pct) == quantile(histogram(a + b), pct)
        exact = nearest_rank(a + b, pct)
        assert abs(quantile(merge(histogram(a), histogram(b)), pct) - exact) <= RELATIVE_ERROR * exact + 0.5


def test_no_samples_no_quantile():
    assert quantile({}, 50) is None and quantile({3: 0}, 90) is None
