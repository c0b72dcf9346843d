"""The brand's organisation: stores grouped in regions."""
from __future__ import annotations

import re
from datetime import date, datetime, time
from enum import StrEnum
from typing import Annotated

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationInfo,
    WithJsonSchema,
    model_validator,
)


class StoreType(StrEnum):
    FLAGSHIP = "flagship"
    STANDARD = "standard"
    KIOSK = "kiosk"
    ONLINE = "online"


_LOCAL_TIME = re.compile(r"([01][0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9])?")


def _local_time(value: object, info: ValidationInfo) -> object:
    """Hours are local wall times, HH:MM or HH:MM:SS: no offset (what would 10:00Z mean for a store in
    Shanghai?), no fractions. Parsed here, so the strict JSON mode gets a time."""
    if isinstance(value, str):
        if _LOCAL_TIME.fullmatch(value):
            return time.fromisoformat(value)
        if not _stored(info):
            raise ValueError("a local time HH:MM or HH:MM:SS (Asia/Shanghai, no offset)")
    return value


LocalTime = Annotated[time, BeforeValidator(_local_time), WithJsonSchema({
    "type": "string", "pattern": f"^{_LOCAL_TIME.pattern}$",
    "description": "local time in Asia/Shanghai, HH:MM or HH:MM:SS (no offset)"})]


class OpeningHours(BaseModel):
    """One opening window in the store's local time (Asia/Shanghai). A close at or before the open runs past
    midnight: 18:00-02:00 closes at 02:00 the next day, and 00:00-00:00 is the whole day. Any other equal
    open and close is refused (empty or 24 hours? say 00:00-00:00)."""

    model_config = ConfigDict(extra="forbid")
    open: LocalTime
    close: LocalTime

    @model_validator(mode="after")
    def _clear(self, info: ValidationInfo) -> OpeningHours:
        if self.open.tzinfo is not None or self.close.tzinfo is not None:
            raise ValueError("hours are local times (Asia/Shanghai), without an offset")
        if self.open.microsecond or self.close.microsecond:
            raise ValueError("hours are to the second at most")
        if self.open == self.close and self.open != time(0) and not _stored(info):
            raise ValueError("open and close are the same time: write 00:00-00:00 for a whole day")
        return self

    def span(self) -> tuple[int, int]:
        """Seconds from the opening day's midnight: (open, close), close > open (up to 48 h for past midnight)."""
        start = _seconds(self.open)
        end = _seconds(self.close)
        return start, end if end > start else end + DAY_SECONDS


DAY_SECONDS = 86_400
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")  # index = date.weekday()
MAX_WINDOWS_PER_DAY = 6


def _seconds(t: time) -> int:
    return t.hour * 3600 + t.minute * 60 + t.second


def _stored(info: ValidationInfo) -> bool:
    """Validating an item written before today's rules (context {"stored": True}): load what was accepted then."""
    return bool(info.context and info.context.get("stored"))


def _as_list(value: list[OpeningHours] | OpeningHours | None) -> list[OpeningHours] | None:
    """A day is sent as one window (the old shape) or a list; it is kept as a list in opening order, and a
    day with no window is a closed day (None, left out of answers)."""
    if value is None:
        return None
    windows = value if isinstance(value, list) else [value]
    return sorted(windows, key=lambda w: _seconds(w.open)) or None


Day = Annotated[
    Annotated[list[OpeningHours], Field(max_length=MAX_WINDOWS_PER_DAY)] | OpeningHours | None,
    Field(description="one window {open, close} or a list of them (answers always give the list); none: closed"),
    AfterValidator(_as_list),
]


class WeeklyHours(BaseModel):
    """Opening windows per weekday; a missing day means closed that day. A window belongs to the day it opens
    on; windows must not overlap, also where one runs past midnight into the next day's (Sunday's into
    Monday's)."""

    model_config = ConfigDict(extra="forbid")
    mon: Day = None
    tue: Day = None
    wed: Day = None
    thu: Day = None
    fri: Day = None
    sat: Day = None
    sun: Day = None

    @model_validator(mode="after")
    def _no_overlap(self, info: ValidationInfo) -> WeeklyHours:
        if _stored(info):
            return self
        week = 7 * DAY_SECONDS
        spans = [(i * DAY_SECONDS + a, i * DAY_SECONDS + b, name)
                 for i, name in enumerate(WEEKDAYS) for a, b in self.spans(i)]
        # Each window again a week later, so Sunday's past-midnight window meets Monday's first.
        spans = sorted(spans + [(a + week, b + week, name) for a, b, name in spans])
        for (_, end, first), (start, _, second) in zip(spans, spans[1:], strict=False):
            if start < end:
                raise ValueError(f"opening windows overlap ({first} and {second})")
        return self

    def windows(self, weekday: int) -> list[OpeningHours]:
        """The day's windows in opening order (weekday as date.weekday(): 0 is Monday)."""
        day = getattr(self, WEEKDAYS[weekday])
        return list(day) if isinstance(day, list) else [day] if day else []

    def spans(self, weekday: int) -> tuple[tuple[int, int], ...]:
        """The day's windows as seconds from its midnight, (open, close) with close > open."""
        return tuple(w.span() for w in self.windows(weekday))


def _trimmed(value: str) -> str:
    """Trim after the documented length is checked on what was sent; nothing but blanks is no text."""
    value = value.strip()
    if not value:
        raise ValueError("must contain text")
    return value


_Id = Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,40}$")]
_Text = Annotated[str, Field(min_length=1, max_length=80), AfterValidator(_trimmed)]


class StoreInput(BaseModel):
    """PUT /stores/{store_id}: the whole store description (PUT replaces)."""

    model_config = ConfigDict(extra="forbid")
    name: _Text
    region_id: _Id
    city: _Text
    store_type: StoreType
    opened_on: date | None = None
    business_hours: WeeklyHours = Field(default_factory=WeeklyHours)
    rollup_shards: int = Field(default=1, ge=1, le=16, description=(
        "how many items each day's report figures are spread over: raise it for a store that posts many orders "
        "a second (each order adds to one of them; a report reads them all)"))


class Store(StoreInput):
    model_config = ConfigDict(frozen=True, extra="forbid")

    store_id: str
    updated_at: datetime
