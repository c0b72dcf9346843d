"""Business time (chalicelib/domain/clock.py): the brand's day is the Asia/Shanghai day (UTC+8, no daylight
saving since 1991), whatever offset a time arrives in. Member day, birthday months, spend buckets and
expiry all hang on it, so a time a minute either side of midnight must land on the right day and month.
"""
from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chalicelib.domain import clock
from chalicelib.domain.points import month_key

EIGHT_HOURS = timedelta(hours=8)
NEW_YORK_WINTER = timezone(timedelta(hours=-5))


@pytest.mark.parametrize("at,day", [
    (datetime(2026, 11, 22, 15, 59, 59, 999_999, tzinfo=UTC), date(2026, 11, 22)),  # 23:59:59.999999 in Shanghai
    (datetime(2026, 11, 22, 16, 0, tzinfo=UTC), date(2026, 11, 23)),  # 00:00 in Shanghai: the next day
    (datetime(2026, 11, 23, 0, 0, tzinfo=clock.BUSINESS_TZ), date(2026, 11, 23)),
    (datetime(2026, 11, 22, 23, 59, 59, tzinfo=clock.BUSINESS_TZ), date(2026, 11, 22)),
    (datetime(2026, 11, 22, 11, 30, tzinfo=NEW_YORK_WINTER), date(2026, 11, 23)),  # 16:30 UTC = 00:30 Shanghai
    (datetime(2026, 11, 23, 7, 59, tzinfo=timezone(timedelta(hours=9))), date(2026, 11, 23)),  # Tokyo 07:59 = 06:59
])
def test_the_business_day_turns_at_shanghai_midnight(at, day):
    """Given a moment in any offset, When its business day is taken, Then it is the calendar day in Shanghai."""
    # Given / When / Then
    assert clock.business_day(at) == day


@pytest.mark.parametrize("at,day,month", [
    (datetime(2026, 12, 31, 15, 59, tzinfo=UTC), date(2026, 12, 31), "2026-12"),
    (datetime(2026, 12, 31, 16, 0, tzinfo=UTC), date(2027, 1, 1), "2027-01"),  # still 2026 in UTC: a new year
    (datetime(2026, 2, 28, 16, 0, tzinfo=UTC), date(2026, 3, 1), "2026-03"),  # 2026 is not a leap year
    (datetime(2028, 2, 28, 16, 0, tzinfo=UTC), date(2028, 2, 29), "2028-02"),  # 2028 is
    (datetime(2026, 10, 31, 20, 0, tzinfo=UTC), date(2026, 11, 1), "2026-11"),
])
def test_a_purchase_just_after_midnight_counts_in_the_new_month(at, day, month):
    """Given a purchase late on a UTC month's last day, When its business day and month key are taken,
    Then both follow Shanghai (so the spend goes to the right monthly bucket)."""
    # Given / When
    business_day = clock.business_day(at)
    # Then
    assert (business_day, month_key(business_day)) == (day, month)


@pytest.mark.parametrize("day", [date(2026, 1, 15), date(2026, 7, 15)])
def test_business_time_is_utc_plus_eight_all_year(day):
    """Given a winter and a summer day, When business time's offset is read, Then it is +08:00 both times."""
    at = datetime(day.year, day.month, day.day, 12, tzinfo=clock.BUSINESS_TZ)
    assert at.utcoffset() == EIGHT_HOURS


def test_now_is_in_business_time():
    """Given the system clock, When `now` is read, Then it carries the +08:00 offset and is within a minute of
    the UTC time read beside it."""
    # Given / When
    before = datetime.now(UTC)
    now = clock.now()
    # Then
    assert now.tzinfo is clock.BUSINESS_TZ and now.utcoffset() == EIGHT_HOURS
    assert timedelta(0) <= now - before < timedelta(minutes=1)


@pytest.mark.parametrize("at,text", [
    (datetime(2026, 11, 22, 16, 0, 0, 999_999, tzinfo=UTC), "2026-11-23T00:00:00.999+08:00"),  # truncated
    (datetime(2026, 11, 23, 9, 5, 7, 1_000, tzinfo=clock.BUSINESS_TZ), "2026-11-23T09:05:07.001+08:00"),
    (datetime(2026, 11, 22, 11, 30, tzinfo=NEW_YORK_WINTER), "2026-11-23T00:30:00.000+08:00"),
])
def test_iso_text_is_business_time_to_the_millisecond(at, text):
    """Given a moment in any offset, When written as ISO text, Then it is Shanghai time, milliseconds (never
    rounded up into the next second), with the +08:00 offset."""
    # Given / When / Then
    assert clock.iso(at) == text


_moments = st.datetimes(datetime(1992, 1, 1), datetime(2100, 1, 1), timezones=st.sampled_from(
    [UTC, clock.BUSINESS_TZ, NEW_YORK_WINTER, timezone(timedelta(hours=5, minutes=45))]))


@given(at=_moments)
def test_the_business_day_is_the_utc_time_plus_eight_hours(at):
    """Given any moment since 1992 in any offset, When its business day is taken, Then it is the date of the
    UTC time plus eight hours (no daylight saving to account for)."""
    # Given
    expected = (at.astimezone(UTC).replace(tzinfo=None) + EIGHT_HOURS).date()
    # When / Then
    assert clock.business_day(at) == expected


@given(a=_moments, b=_moments)
def test_iso_text_sorts_like_the_moments_it_writes(a, b):
    """Given any two moments, When both are written as ISO text, Then comparing the texts orders them as the
    moments are ordered, to the millisecond (the ledger's sort keys rely on it)."""
    # Given
    ms_a = (a - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1)
    ms_b = (b - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1)
    # When
    text_a, text_b = clock.iso(a), clock.iso(b)
    # Then
    assert (text_a < text_b) == (ms_a < ms_b)
    assert (text_a == text_b) == (ms_a == ms_b)
