"""Business calendars (chalicelib/domain/calendars.py) and store hours (domain/stores.WeeklyHours).

Every expected due time and duration below was worked out by hand from the hours in the test (the weekday of
each date is noted beside it: 2026-10-01 and 2026-12-03 are Thursdays), never by asking the code under test.
The hypothesis properties then hold the arithmetic on generated calendars: business time never exceeds wall
time, what add_business spends business_between counts back, a due time lies in an open window, and more
minutes never give an earlier due time.
"""
from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from chalicelib.domain.calendars import (
    ALWAYS,
    SEARCH_DAYS,
    SEARCH_LIMIT_DAYS,
    BrandCalendar,
    DateSpan,
    NoOpenTime,
    OfficeCalendar,
    StoreClosures,
    WeeklyCalendar,
    office_calendar,
    store_calendar,
)
from chalicelib.domain.clock import BUSINESS_TZ
from chalicelib.domain.stores import Store, WeeklyHours

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def at(y: int, mo: int, d: int, h: int = 0, mi: int = 0, s: int = 0) -> datetime:
    return datetime(y, mo, d, h, mi, s, tzinfo=BUSINESS_TZ)


def hours(**days: object) -> WeeklyHours:
    return WeeklyHours.model_validate(days)


def every_day(open_: str, close: str) -> WeeklyHours:
    return hours(**{d: {"open": open_, "close": close} for d in DAYS})


TEN_TO_TEN = every_day("10:00", "22:00")
NATIONAL_DAY = BrandCalendar.model_validate({
    "holidays": [{"start": "2026-10-01", "end": "2026-10-07", "name": "国庆节"}],
    "workdays": [{"date": "2026-10-10", "hours_of": "mon"}],  # a Saturday worked as a Monday
})


# ---- the cases of the issue, by hand ---------------------------------------------------------------------
def test_opened_just_before_closing_is_due_the_next_opening_morning():
    """Given a store open 10:00-22:00, When a 30-minute target starts at 21:55 (Thu), Then 5 minutes are used
    that evening and the other 25 the next morning: due Fri 10:25."""
    cal = store_calendar(TEN_TO_TEN)
    assert cal.add_business(at(2026, 12, 3, 21, 55), 30) == at(2026, 12, 4, 10, 25)
    assert cal.business_between(at(2026, 12, 3, 21, 55), at(2026, 12, 4, 10, 25)) == 30 * 60


def test_the_next_opening_day_skips_a_closed_weekday():
    """Closed on Sundays: opened Sat 2026-12-05 21:55 -> 5 min Saturday, Sunday closed, due Mon 12-07 10:25."""
    cal = store_calendar(hours(**{d: {"open": "10:00", "close": "22:00"} for d in DAYS if d != "sun"}))
    assert cal.add_business(at(2026, 12, 5, 21, 55), 30) == at(2026, 12, 7, 10, 25)


def test_a_target_used_up_at_closing_time_is_due_at_closing():
    """End inclusive: 30 minutes from 21:30 end at 22:00 that evening, not at the next opening."""
    assert store_calendar(TEN_TO_TEN).add_business(at(2026, 12, 3, 21, 30), 30) == at(2026, 12, 3, 22, 0)


def test_opened_before_opening_counts_from_the_opening():
    assert store_calendar(TEN_TO_TEN).add_business(at(2026, 12, 3, 7, 0), 30) == at(2026, 12, 3, 10, 30)


def test_across_national_day():
    """Open Mon-Fri 10:00-22:00. Opened Wed 2026-09-30 21:55 with 30 minutes: 5 minutes that evening; Oct 1-7
    are holidays (closed, although Thu/Fri/Mon-Wed are working weekdays): due Thu 10-08 10:25."""
    weekdays = hours(**{d: {"open": "10:00", "close": "22:00"} for d in DAYS[:5]})
    cal = store_calendar(weekdays, NATIONAL_DAY)
    assert cal.add_business(at(2026, 9, 30, 21, 55), 30) == at(2026, 10, 8, 10, 25)
    assert cal.business_between(at(2026, 9, 30, 12, 0), at(2026, 10, 8, 12, 0)) == (10 + 2) * 3600
    # without the brand calendar, Thursday Oct 1 is a normal day
    assert store_calendar(weekdays).add_business(at(2026, 9, 30, 21, 55), 30) == at(2026, 10, 1, 10, 25)


def test_an_adjusted_working_saturday_opens_with_mondays_hours():
    """Mon 08:00-12:00, Tue-Fri 09:00-18:00, weekends closed; Sat 2026-10-10 is worked as a Monday. Opened
    Fri 10-09 17:50 with 30 minutes: 10 minutes Friday, 20 on Saturday from Monday's 08:00: due 08:20."""
    week = hours(mon={"open": "08:00", "close": "12:00"},
                 **{d: {"open": "09:00", "close": "18:00"} for d in ("tue", "wed", "thu", "fri")})
    cal = store_calendar(week, NATIONAL_DAY)
    assert cal.add_business(at(2026, 10, 9, 17, 50), 30) == at(2026, 10, 10, 8, 20)
    assert cal.business_between(at(2026, 10, 10, 0, 0), at(2026, 10, 11, 0, 0)) == 4 * 3600
    # the same Saturday without the adjustment is closed: due Mon 10-12 08:20
    assert store_calendar(week).add_business(at(2026, 10, 9, 17, 50), 30) == at(2026, 10, 12, 8, 20)


def test_split_windows():
    """10:00-14:00 and 16:00-22:00: opened 13:50 with 30 minutes -> 10 before the break, due 16:20."""
    cal = store_calendar(hours(**{d: [{"open": "10:00", "close": "14:00"}, {"open": "16:00", "close": "22:00"}]
                                  for d in DAYS}))
    assert cal.add_business(at(2026, 12, 3, 13, 50), 30) == at(2026, 12, 3, 16, 20)
    assert cal.business_between(at(2026, 12, 3, 0, 0), at(2026, 12, 4, 0, 0)) == 10 * 3600


def test_split_windows_sent_as_a_list():
    week = hours(thu=[{"open": "16:00", "close": "22:00"}, {"open": "10:00", "close": "14:00"}])
    assert store_calendar(week).add_business(at(2026, 12, 3, 13, 50), 30) == at(2026, 12, 3, 16, 20)


def test_a_window_past_midnight():
    """Fri and Sat 18:00-02:00 (until 02:00 the next day), else closed."""
    cal = store_calendar(hours(fri={"open": "18:00", "close": "02:00"}, sat={"open": "18:00", "close": "02:00"}))
    # Fri 12-04 23:50 + 30 min: 10 before midnight, 20 after -> Sat 00:20
    assert cal.add_business(at(2026, 12, 4, 23, 50), 30) == at(2026, 12, 5, 0, 20)
    # Sat 01:50 (still Friday's window) + 30: 10 until 02:00, then Saturday's 18:00 -> 18:20
    assert cal.add_business(at(2026, 12, 5, 1, 50), 30) == at(2026, 12, 5, 18, 20)
    # From Sat 12:00 to Sun 12:00: Friday's window ended at 02:00; Saturday's runs 18:00 to Sun 02:00 = 8 h
    assert cal.business_between(at(2026, 12, 5, 12, 0), at(2026, 12, 6, 12, 0)) == 8 * 3600


def test_a_window_past_midnight_runs_into_a_holiday():
    """Wed 2026-09-30 18:00-02:00; Oct 1 is a holiday: the window opened on the 30th still runs to 02:00."""
    cal = store_calendar(every_day("18:00", "02:00"), NATIONAL_DAY)
    assert cal.business_between(at(2026, 10, 1, 0, 0), at(2026, 10, 2, 0, 0)) == 2 * 3600
    assert cal.add_business(at(2026, 10, 1, 1, 30), 60) == at(2026, 10, 8, 18, 30)  # 30 min, then Oct 8


def test_a_whole_day_window():
    cal = store_calendar(hours(thu={"open": "00:00", "close": "00:00"}))
    assert cal.business_between(at(2026, 12, 3), at(2026, 12, 4)) == 24 * 3600
    assert cal.add_business(at(2026, 12, 3, 23, 0), 120) == at(2026, 12, 10, 1, 0)  # 60 min, then next Thursday


def test_a_hold_across_closing_time_counts_nothing_while_closed():
    cal = store_calendar(TEN_TO_TEN)
    assert cal.business_between(at(2026, 12, 3, 22, 0), at(2026, 12, 4, 10, 0)) == 0
    assert cal.business_between(at(2026, 12, 3, 21, 0), at(2026, 12, 4, 11, 0)) == 2 * 3600
    assert cal.business_between(at(2026, 12, 4, 11, 0), at(2026, 12, 3, 21, 0)) == 0  # backwards: nothing


def test_a_store_closure_is_skipped():
    """Closed Fri 2026-12-04 (its own closure): opened Thu 21:55 -> due Sat 12-05 10:25."""
    closures = StoreClosures.model_validate({"closures": [{"start": "2026-12-04"}]})
    assert store_calendar(TEN_TO_TEN, None, closures).add_business(at(2026, 12, 3, 21, 55), 30) == \
        at(2026, 12, 5, 10, 25)


def test_a_closure_wins_over_an_adjusted_working_day():
    week = hours(mon={"open": "08:00", "close": "12:00"})
    closures = StoreClosures.model_validate({"closures": [{"start": "2026-10-10"}]})
    # Fri 10-09 17:50: Saturday is closed by the store, so the next Monday 10-12 08:00-08:30
    assert store_calendar(week, NATIONAL_DAY, closures).add_business(at(2026, 10, 9, 17, 50), 30) == \
        at(2026, 10, 12, 8, 30)


def test_a_24_7_calendar_is_wall_time():
    start = at(2026, 12, 3, 21, 55)
    assert ALWAYS.add_business(start, 30) == at(2026, 12, 3, 22, 25)
    assert ALWAYS.add_business(start, 24 * 60) == at(2026, 12, 4, 21, 55)
    assert ALWAYS.business_between(start, at(2026, 12, 5, 21, 55)) == 2 * 86_400
    assert list(ALWAYS.open_windows(start, at(2026, 12, 4))) == [(start, at(2026, 12, 4))]


def test_times_in_another_offset_are_read_in_shanghai():
    """13:55 UTC is 21:55 in Shanghai."""
    due = store_calendar(TEN_TO_TEN).add_business(datetime(2026, 12, 3, 13, 55, tzinfo=UTC), 30)
    assert due == at(2026, 12, 4, 10, 25) and due.utcoffset() == timedelta(hours=8)


def test_a_naive_time_is_refused():
    with pytest.raises(ValueError, match="offset"):
        store_calendar(TEN_TO_TEN).add_business(datetime(2026, 12, 3, 21, 55), 30)


# ---- office calendars -------------------------------------------------------------------------------------
def test_an_office_calendar_defaults_to_24_7_without_holidays():
    assert office_calendar(None, NATIONAL_DAY) is ALWAYS
    assert office_calendar(OfficeCalendar(), NATIONAL_DAY) is ALWAYS


def test_a_24_7_office_may_honour_the_holidays():
    cal = office_calendar(OfficeCalendar(honours_brand_calendar=True), NATIONAL_DAY)
    # Wed 09-30 23:00 + 120 min: 60 until midnight, Oct 1-7 closed, 60 from Oct 8 00:00
    assert cal.add_business(at(2026, 9, 30, 23, 0), 120) == at(2026, 10, 8, 1, 0)


def test_an_office_with_hours_honours_the_brand_calendar_unless_told_not_to():
    office = OfficeCalendar.model_validate({"hours": {d: {"open": "09:00", "close": "18:00"} for d in DAYS[:5]}})
    assert office.honours_brand
    # Wed 09-30 17:45 + 30: 15 min, holidays, Thu 10-08 09:15
    assert office_calendar(office, NATIONAL_DAY).add_business(at(2026, 9, 30, 17, 45), 30) == at(2026, 10, 8, 9, 15)
    # Sat 10-10 worked as a Monday: Fri 10-09 17:45 + 30 -> Sat 09:15
    assert office_calendar(office, NATIONAL_DAY).add_business(at(2026, 10, 9, 17, 45), 30) == at(2026, 10, 10, 9, 15)
    ignoring = office.model_copy(update={"honours_brand_calendar": False})
    assert office_calendar(ignoring, NATIONAL_DAY).add_business(at(2026, 9, 30, 17, 45), 30) == at(2026, 10, 1, 9, 15)


# ---- no open time -----------------------------------------------------------------------------------------
def test_a_calendar_with_no_open_time_raises_instead_of_looping():
    with pytest.raises(NoOpenTime):
        store_calendar(WeeklyHours()).add_business(at(2026, 12, 3, 21, 55), 30)
    assert store_calendar(WeeklyHours()).business_between(at(2026, 12, 3), at(2027, 12, 3)) == 0


def test_closed_longer_than_the_search_gives_no_due_time():
    """Closures cover 2026-12-04 .. 2028-01-31 (more than SEARCH_DAYS=400 days): no due time is searched for
    beyond them; a store closed for less is due after the closure."""
    assert SEARCH_DAYS == 400
    long = StoreClosures.model_validate({"closures": [
        {"start": "2026-12-04", "end": "2027-12-03"}, {"start": "2027-12-04", "end": "2028-01-31"}]})
    with pytest.raises(NoOpenTime):
        store_calendar(TEN_TO_TEN, None, long).add_business(at(2026, 12, 3, 21, 55), 30)
    short = StoreClosures.model_validate({"closures": [{"start": "2026-12-04", "end": "2027-10-31"}]})
    assert store_calendar(TEN_TO_TEN, None, short).add_business(at(2026, 12, 3, 21, 55), 30) == at(2027, 11, 1, 10, 25)


def test_too_little_open_time_within_the_search_limit_gives_no_due_time():
    """One minute a week (Sun 00:00-00:01; Sun 2026-12-06 is the first): 500 minutes end at the 500th such
    minute, 499 weeks after the first; 600 would take 600 weeks, past SEARCH_LIMIT_DAYS (3,660 days = 522 weeks)."""
    cal = store_calendar(hours(sun={"open": "00:00", "close": "00:01"}))
    assert cal.add_business(at(2026, 12, 3), 500) == at(2026, 12, 6, 0, 1) + timedelta(weeks=499)
    with pytest.raises(NoOpenTime, match="not enough open time"):
        cal.add_business(at(2026, 12, 3), 600)


def test_a_long_target_in_a_sparse_calendar_is_still_found():
    """Open one hour a week (Thu 10:00-11:00): 30 hours of business time take 30 Thursdays (more than the
    ~200 days, under the 400 without an opening)."""
    cal = store_calendar(hours(thu={"open": "10:00", "close": "11:00"}))
    assert cal.add_business(at(2026, 12, 3, 11, 0), 30 * 60) == at(2026, 12, 3, 11) + timedelta(weeks=30)


# ---- store hours: the shapes and the rules --------------------------------------------------------------
def test_the_old_single_window_shape_still_validates_and_answers_as_a_list():
    week = WeeklyHours.model_validate_json('{"mon": {"open": "09:00", "close": "21:00"}}', strict=True)
    assert week.model_dump(mode="json", exclude_none=True) == {"mon": [{"open": "09:00:00", "close": "21:00:00"}]}


def test_a_stored_store_in_the_old_shape_loads():
    item = {"store_id": "s1", "name": "店", "region_id": "east", "city": "上海", "store_type": "standard",
            "business_hours": {"mon": {"open": "09:00", "close": "09:00"}, "tue": {"open": "20:00", "close": "12:00"},
                               "wed": {"open": "10:00", "close": "22:00"}},
            "updated_at": "2026-01-01T00:00:00+08:00"}
    store = Store.model_validate(item, context={"stored": True})  # open == close and an overlap: accepted then
    cal = store_calendar(store.business_hours)
    assert cal.business_between(at(2026, 11, 30, 9, 0), at(2026, 12, 1, 9, 0)) == 24 * 3600  # Mon 09:00 for 24 h


@pytest.mark.parametrize("days,why", [
    ({"mon": [{"open": "10:00", "close": "14:00"}, {"open": "13:00", "close": "18:00"}]}, "overlap"),
    ({"mon": {"open": "18:00", "close": "11:00"}, "tue": {"open": "10:00", "close": "22:00"}}, "overlap"),
    ({"sun": {"open": "18:00", "close": "02:00"}, "mon": {"open": "01:00", "close": "05:00"}}, "overlap"),
    ({"mon": {"open": "10:00", "close": "10:00"}}, "same time"),
    ({"mon": {"open": "10:00+08:00", "close": "12:00"}}, "no offset"),
    ({"mon": [{"open": f"{h:02d}:00", "close": f"{h:02d}:30"} for h in range(7)]}, "at most 6"),
    ({"mon": {"open": "10:00:00.5", "close": "10:00:00.7"}}, "HH:MM:SS"),
    ({"mon": {"open": "24:00", "close": "10:00"}}, "HH:MM"),
    ({"mon": {"open": "10:00Z", "close": "11:00"}}, "no offset"),
])
def test_bad_hours_are_refused(days, why):
    with pytest.raises(ValidationError, match=why):
        WeeklyHours.model_validate(days)


def test_touching_windows_are_allowed_and_counted_once():
    week = hours(mon={"open": "18:00", "close": "00:00"}, tue=[{"open": "00:00", "close": "02:00"}])
    cal = store_calendar(week)
    assert list(cal.open_windows(at(2026, 11, 30), at(2026, 12, 2))) == [(at(2026, 11, 30, 18), at(2026, 12, 1, 2))]


def test_a_brand_calendar_refuses_a_day_both_holiday_and_workday():
    with pytest.raises(ValidationError, match="both"):
        BrandCalendar.model_validate({"holidays": [{"start": "2026-10-01", "end": "2026-10-07"}],
                                      "workdays": [{"date": "2026-10-03", "hours_of": "mon"}]})
    with pytest.raises(ValidationError, match="twice"):
        BrandCalendar.model_validate({"workdays": [{"date": "2026-10-10", "hours_of": "mon"},
                                                   {"date": "2026-10-10", "hours_of": "tue"}]})
    with pytest.raises(ValidationError, match="before"):
        DateSpan.model_validate({"start": "2026-10-07", "end": "2026-10-01"})


def test_spans_at_the_end_of_the_calendar_do_not_overflow():
    span = DateSpan.model_validate({"start": "9999-12-30", "end": "9999-12-31"})
    assert list(span.dates()) == [date(9999, 12, 30), date(9999, 12, 31)]
    assert BrandCalendar.model_validate({"holidays": [{"start": "9999-12-31"}],
                                         "workdays": [{"date": "9999-12-30", "hours_of": "sun"}]})


# ---- properties -------------------------------------------------------------------------------------------
BASE = date(2026, 9, 1)

window = st.tuples(st.integers(0, 24 * 60 - 1), st.integers(1, 20 * 60)).map(
    lambda w: (w[0] * 60, (w[0] + w[1]) * 60))  # open minute of the day, length: may run past midnight
day_windows = st.lists(window, max_size=3).map(lambda ws: tuple(sorted(ws)))


@st.composite
def calendars(draw: st.DrawFn) -> WeeklyCalendar:
    """Any week (windows may overlap and run past midnight: the calendar joins them), some closed dates and
    some dates worked as another weekday, near the start times drawn below."""
    week = tuple(draw(day_windows) for _ in range(7))
    assume(any(week))
    offsets = st.integers(-2, 40)
    closed = frozenset(BASE + timedelta(days=o) for o in draw(st.lists(offsets, max_size=8)))
    worked = {BASE + timedelta(days=o): draw(st.integers(0, 6)) for o in draw(st.lists(offsets, max_size=4))}
    return WeeklyCalendar(week=week, closed=closed, worked_as=worked)


starts = st.datetimes(datetime(2026, 9, 1), datetime(2026, 10, 10)).map(lambda d: d.replace(tzinfo=BUSINESS_TZ))
second_starts = starts.map(lambda d: d.replace(microsecond=0))
minutes = st.integers(1, 5_000)


def due(cal: WeeklyCalendar, start: datetime, m: int) -> datetime:
    """add_business, or (hypothesis drops the example) NoOpenTime where it is right: the drawn calendars have no
    closures of 400 days, so only a target larger than all the open time within the search limit (a minute a
    week) may go without a due time."""
    try:
        return cal.add_business(start, m)
    except NoOpenTime:
        assert cal.business_between(start, start + timedelta(days=SEARCH_LIMIT_DAYS)) < m * 60
        assume(False)
        raise


@settings(max_examples=300, deadline=None)
@given(calendars(), starts, st.integers(0, 30 * 24 * 3600))
def test_business_time_never_exceeds_wall_time(cal, start, seconds):
    end = start + timedelta(seconds=seconds)
    assert 0 <= cal.business_between(start, end) <= seconds


@settings(max_examples=300, deadline=None)
@given(calendars(), starts, minutes)
def test_what_add_business_spends_business_between_counts_back(cal, start, m):
    at = due(cal, start, m)
    assert at > start
    assert cal.business_between(start, at) == m * 60


@settings(max_examples=300, deadline=None)
@given(calendars(), starts, minutes)
def test_a_due_time_is_inside_an_open_window(cal, start, m):
    at = due(cal, start, m)
    around = list(cal.open_windows(at - timedelta(days=3), at + timedelta(days=1)))
    assert any(a < at <= b for a, b in around), (at, around)


@settings(max_examples=300, deadline=None)
@given(calendars(), starts, minutes, minutes)
def test_add_business_is_monotone_in_minutes(cal, start, m1, m2):
    m1, m2 = sorted((m1, m2))
    first, second = due(cal, start, m1), due(cal, start, m2)
    assert first <= second
    if m1 < m2:
        assert first < second


@settings(max_examples=200, deadline=None)
@given(calendars(), second_starts, st.integers(0, 20 * 24 * 3600), st.integers(0, 20 * 24 * 3600))
def test_business_time_adds_up_over_consecutive_spans(cal, start, x, y):
    mid, end = start + timedelta(seconds=x), start + timedelta(seconds=x + y)
    assert cal.business_between(start, mid) + cal.business_between(mid, end) == cal.business_between(start, end)


@settings(max_examples=200, deadline=None)
@given(calendars(), starts, st.integers(1, 20 * 24 * 3600))
def test_open_windows_are_ordered_apart_and_inside_the_range(cal, start, seconds):
    until = start + timedelta(seconds=seconds)
    windows = list(cal.open_windows(start, until))
    for a, b in windows:
        assert start <= a < b <= until
    for (_, b1), (a2, _) in zip(windows, windows[1:], strict=False):
        assert b1 < a2  # touching windows are given as one


@settings(max_examples=100, deadline=None)
@given(starts, st.integers(0, 30 * 24 * 3600), minutes)
def test_the_24_7_calendar_is_the_wall_clock(start, seconds, m):
    assert ALWAYS.business_between(start, start + timedelta(seconds=seconds)) == seconds
    assert ALWAYS.add_business(start, m) == start + timedelta(minutes=m)
