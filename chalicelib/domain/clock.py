"""Business time. The brand's business day is Asia/Shanghai; every time we answer carries its offset."""
from __future__ import annotations

from datetime import date, datetime
from zoneinfo import ZoneInfo

BUSINESS_TZ = ZoneInfo("Asia/Shanghai")


def now() -> datetime:
    return datetime.now(BUSINESS_TZ)


def business_day(at: datetime) -> date:
    return at.astimezone(BUSINESS_TZ).date()


def iso(at: datetime) -> str:
    """ISO 8601 with offset, millisecond precision: sortable as text within one offset."""
    return at.astimezone(BUSINESS_TZ).isoformat(timespec="milliseconds")


def to_ms(at: datetime) -> datetime:
    """`at` in business time, cut to the millisecond: what `iso` writes and a stored answer replays."""
    return datetime.fromisoformat(iso(at))
