"""Calendars for business time: when a store or an office is open, and how much open time lies between two
instants. Pure: stdlib + pydantic, no AWS.

The facts, each kept once:
- a store's weekly hours: on the store (`Store.business_hours`, domain/stores.WeeklyHours: several windows a
  day, a window may run past midnight and belongs to the day it opens on);
- the brand calendar (`BrandCalendar`): public holidays (closed everywhere) and adjusted working days
  (调休: a date worked with a given weekday's hours);
- a store's own closures (`StoreClosures`: dates or date ranges);
- office calendars for HQ and region queues (`OfficeCalendar`: weekly windows, default 24/7; whether the brand
  calendar applies, default yes unless 24/7).

A date that is closed (holiday or closure) opens none of its own windows; a window opened the evening before
still runs past midnight into it. An adjusted working day opens the windows of the weekday it names instead
of its own.

Resolved, any of these is a `Calendar`: `open_windows`, `add_business` (a due time) and `business_between`
(open seconds), over aware datetimes answered in Asia/Shanghai (UTC+8, no daylight saving since 1991, so
local wall arithmetic is exact). `ALWAYS` is open all the time (wall-clock targets). A calendar with no open
time for SEARCH_DAYS running makes `add_business` raise `NoOpenTime`: the SLA code records "no deadline"
instead of searching forever.
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Annotated, Generic, Literal, Protocol, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from .clock import BUSINESS_TZ
from .stores import DAY_SECONDS, WEEKDAYS, WeeklyHours

SEARCH_DAYS = 400  # add_business gives up after this many days in a row without open time
SEARCH_LIMIT_DAYS = 3_660  # ... and after this many days in all (a target far longer than any SLA's)
_CHUNK = timedelta(days=7)  # add_business reads the calendar a week at a time
_SECOND = timedelta(seconds=1)

Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
MAX_SPAN_DAYS = 366


class NoOpenTime(ValueError):
    """The calendar opens for no time within SEARCH_DAYS (say, a store with no hours, or closed for a year), or
    has too little open time within SEARCH_LIMIT_DAYS for the target (a minute a week): the target has no due
    time. The SLA code turns this into "no deadline"."""

    def __init__(self, start: datetime, minutes: int, why: str = f"{SEARCH_DAYS} days without an opening") -> None:
        super().__init__(f"no open time to count {minutes} minutes from {start.isoformat()} ({why})")
        self.start = start
        self.minutes = minutes


# ---- the facts, as sent and stored -------------------------------------------------------------------------
def _text(value: str | None) -> str | None:
    if value is None:
        return None
    value = value.strip()
    return value or None


_Name = Annotated[str | None, Field(max_length=40), AfterValidator(_text)]


class DateSpan(BaseModel):
    """A date or an inclusive range of dates (`end` left out: the one day `start`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    start: date
    end: date | None = Field(default=None, description="the last day, inclusive (left out: the start day only)")
    name: _Name = None

    @model_validator(mode="after")
    def _ordered(self) -> DateSpan:
        if self.end is not None:
            if self.end < self.start:
                raise ValueError("end is before start")
            if (self.end - self.start).days >= MAX_SPAN_DAYS:
                raise ValueError(f"a span covers at most {MAX_SPAN_DAYS} days")
        return self

    def dates(self) -> Iterator[date]:
        last = self.end or self.start
        for n in range((last - self.start).days + 1):  # counted, so 9999-12-31 ends the loop without overflow
            yield self.start + timedelta(days=n)


class AdjustedDay(BaseModel):
    """调休: `date` is worked with the hours of the weekday `hours_of` (a Saturday worked as a Monday)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    date: date
    hours_of: Weekday
    name: _Name = None


class BrandCalendar(BaseModel):
    """PUT /calendars/brand: the whole brand calendar (PUT replaces). Holidays close every store and every
    office that honours the brand calendar; an adjusted working day opens them with another weekday's hours."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    holidays: list[DateSpan] = Field(default=[], max_length=100)
    workdays: list[AdjustedDay] = Field(default=[], max_length=100,
                                        description="adjusted working days (调休)")

    @model_validator(mode="after")
    def _consistent(self) -> BrandCalendar:
        seen: set[date] = set()
        for day in self.workdays:
            if day.date in seen:
                raise ValueError(f"{day.date} is listed twice as a working day")
            seen.add(day.date)
        for span in self.holidays:
            clash = sorted(seen.intersection(span.dates()))
            if clash:
                raise ValueError(f"{clash[0]} is both a holiday and an adjusted working day")
        return self

    def closed_dates(self) -> frozenset[date]:
        return frozenset(d for span in self.holidays for d in span.dates())

    def worked_as(self) -> dict[date, int]:
        return {d.date: WEEKDAYS.index(d.hours_of) for d in self.workdays}


class StoreClosures(BaseModel):
    """PUT /stores/{store_id}/closures: the store's own closed dates (renovation, a local event); PUT replaces.
    A closure wins over an adjusted working day."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    closures: list[DateSpan] = Field(default=[], max_length=100)

    def closed_dates(self) -> frozenset[date]:
        return frozenset(d for span in self.closures for d in span.dates())


class OfficeCalendar(BaseModel):
    """PUT /calendars/{calendar_id}: the hours of an office (HQ's service desk, a region's team)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: _Name = None
    hours: WeeklyHours | None = Field(default=None, description="weekly windows; left out: open 24/7")
    honours_brand_calendar: bool | None = Field(
        default=None, description="closed on the brand's holidays and open on its adjusted working days; "
                                  "left out: yes when hours are given, no for 24/7")

    @property
    def honours_brand(self) -> bool:
        if self.honours_brand_calendar is not None:
            return self.honours_brand_calendar
        return self.hours is not None


_T = TypeVar("_T", BrandCalendar, OfficeCalendar, StoreClosures)


@dataclass(frozen=True, eq=False)
class Saved(Generic[_T]):
    """One calendar fact as stored: the value, when and by whom it was last written."""

    value: _T
    updated_at: datetime
    updated_by: str


# ---- resolved calendars ------------------------------------------------------------------------------------
class Calendar(Protocol):
    def open_windows(self, start: datetime, until: datetime) -> Iterator[tuple[datetime, datetime]]:
        """The open windows meeting [start, until), cut to it, in order, touching windows joined."""
        ...

    def add_business(self, start: datetime, minutes: int) -> datetime:
        """The instant `minutes` of open time after `start` are used up: inside an open window, its end
        included. 0 minutes: `start`. No open time to use up (SEARCH_DAYS): NoOpenTime."""
        ...

    def business_between(self, start: datetime, end: datetime) -> int:
        """Whole seconds of open time in [start, end) (0 when end <= start)."""
        ...


def _local(at: datetime) -> datetime:
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError("calendar times must carry their offset")
    return at.astimezone(BUSINESS_TZ)


class AlwaysOpen:
    """Open all the time: wall-clock targets, and queues with no office calendar."""

    def open_windows(self, start: datetime, until: datetime) -> Iterator[tuple[datetime, datetime]]:
        start, until = _local(start), _local(until)
        if until > start:
            yield start, until

    def add_business(self, start: datetime, minutes: int) -> datetime:
        if minutes < 0:
            raise ValueError("minutes must not be negative")
        return _local(start) + timedelta(minutes=minutes)

    def business_between(self, start: datetime, end: datetime) -> int:
        return max(_local(end) - _local(start), timedelta(0)) // _SECOND

    def __repr__(self) -> str:
        return "ALWAYS"


ALWAYS = AlwaysOpen()


@dataclass(frozen=True, eq=False)
class WeeklyCalendar:
    """Weekly windows, with closed dates and dates worked as another weekday.

    `week[i]`: weekday i's windows (0 = Monday) as (open, close) seconds from that day's midnight, close >
    open, up to 48 h for a window past midnight."""

    week: tuple[tuple[tuple[int, int], ...], ...]
    closed: frozenset[date] = frozenset()
    worked_as: Mapping[date, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if len(self.week) != 7:
            raise ValueError("a week has seven days")

    @property
    def never_open(self) -> bool:
        """No window on any weekday, so no date ever opens (an adjusted day borrows a weekday's windows)."""
        return not any(self.week)

    def spans_on(self, day: date) -> tuple[tuple[int, int], ...]:
        if day in self.closed:
            return ()
        return self.week[self.worked_as.get(day, day.weekday())]

    def open_windows(self, start: datetime, until: datetime) -> Iterator[tuple[datetime, datetime]]:
        start, until = _local(start), _local(until)
        if until <= start or self.never_open:
            return
        # Windows open in date order and, within a date, in opening order; one opened the day before may
        # still run into `start`. Overlapping or touching windows are joined before they are given out.
        day, last = start.date() - timedelta(days=1), until.date()
        run: tuple[datetime, datetime] | None = None
        while day <= last:
            midnight = datetime.combine(day, time(0), BUSINESS_TZ)
            for open_s, close_s in sorted(self.spans_on(day)):
                a, b = midnight + timedelta(seconds=open_s), midnight + timedelta(seconds=close_s)
                if run is not None and a <= run[1]:
                    run = (run[0], max(run[1], b))
                    continue
                if run is not None and run[1] > start:
                    if run[0] >= until:
                        return
                    yield max(run[0], start), min(run[1], until)
                run = (a, b)
            day += timedelta(days=1)
        if run is not None and run[1] > start and run[0] < until:
            yield max(run[0], start), min(run[1], until)

    def add_business(self, start: datetime, minutes: int) -> datetime:
        return _add_business(self, start, minutes)

    def business_between(self, start: datetime, end: datetime) -> int:
        return _business_between(self, start, end)


def _add_business(cal: WeeklyCalendar, start: datetime, minutes: int) -> datetime:
    if minutes < 0:
        raise ValueError("minutes must not be negative")
    start = _local(start)
    if minutes == 0:
        return start
    if cal.never_open:
        raise NoOpenTime(start, minutes)
    left = timedelta(minutes=minutes)
    cursor, last_open = start, start
    limit = start + timedelta(days=SEARCH_LIMIT_DAYS)
    while cursor - last_open < timedelta(days=SEARCH_DAYS):
        if cursor >= limit:
            raise NoOpenTime(start, minutes, f"not enough open time in {SEARCH_LIMIT_DAYS} days")
        # A week at a time: a window cut at the chunk's end goes on in the next chunk (adding is the same).
        for a, b in cal.open_windows(cursor, cursor + _CHUNK):
            if b - a >= left:
                return a + left
            left -= b - a
            last_open = b
        cursor += _CHUNK
    raise NoOpenTime(start, minutes)


def _business_between(cal: WeeklyCalendar, start: datetime, end: datetime) -> int:
    total = timedelta(0)
    for a, b in cal.open_windows(start, end):
        total += b - a
    return total // _SECOND


# ---- building one -------------------------------------------------------------------------------------------
def weekly(hours: WeeklyHours | None) -> tuple[tuple[tuple[int, int], ...], ...]:
    """The week's windows in seconds; None: open all day every day."""
    if hours is None:
        return tuple(((0, DAY_SECONDS),) for _ in range(7))
    return tuple(hours.spans(i) for i in range(7))


def store_calendar(hours: WeeklyHours, brand: BrandCalendar | None = None,
                   closures: StoreClosures | Iterable[DateSpan] | None = None) -> WeeklyCalendar:
    """A store's calendar: its weekly hours, the brand's holidays (closed) and adjusted working days, its own
    closures (closed, also on an adjusted working day)."""
    brand = brand or BrandCalendar()
    spans = closures.closures if isinstance(closures, StoreClosures) else list(closures or ())
    closed = brand.closed_dates() | frozenset(d for span in spans for d in span.dates())
    return WeeklyCalendar(week=weekly(hours), closed=closed, worked_as=brand.worked_as())


def office_calendar(office: OfficeCalendar | None, brand: BrandCalendar | None = None) -> Calendar:
    """An office's calendar: no office calendar, or a 24/7 one that ignores the brand calendar, is ALWAYS."""
    if office is None or (office.hours is None and not office.honours_brand):
        return ALWAYS
    if not office.honours_brand or brand is None:
        return WeeklyCalendar(week=weekly(office.hours))
    return WeeklyCalendar(week=weekly(office.hours), closed=brand.closed_dates(), worked_as=brand.worked_as())
