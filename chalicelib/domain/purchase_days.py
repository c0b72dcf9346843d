"""Recent purchase days in a compact text: the last RECENT_DAYS distinct business days with a purchase,
oldest first, as day numbers since 2000-01-01 in base 36, the first absolute and the rest as gaps, joined by
'.': an active member's eleven days take about 30 bytes ("7ls.6.7.5.12...") where ISO dates would take 130.
It lives on the member's points state (domain/aggregates.py keeps it) for the churn warning (domain/rfm.py).
"""
from __future__ import annotations

from collections.abc import Iterable
from datetime import date

RECENT_DAYS = 11  # ten gaps: the churn warning's "usual gap" is the median of the last up-to-10
EPOCH = date(2000, 1, 1)
_DIGITS = "0123456789abcdefghijklmnopqrstuvwxyz"


def _b36(n: int) -> str:
    if n < 0:
        raise ValueError("day numbers before 2000-01-01 are not kept")
    out = ""
    while True:
        n, r = divmod(n, 36)
        out = _DIGITS[r] + out
        if not n:
            return out


def day_number(day: date) -> int:
    return (day - EPOCH).days


def decode_days(text: str) -> list[int]:
    """Day numbers (since 2000-01-01), oldest first."""
    if not text:
        return []
    days, total = [], 0
    for part in text.split("."):
        total += int(part, 36)
        days.append(total)
    return days


def encode_days(days: Iterable[int]) -> str:
    ordered = sorted(set(days))[-RECENT_DAYS:]
    if not ordered:
        return ""
    parts = [_b36(ordered[0])] + [_b36(b - a) for a, b in zip(ordered, ordered[1:], strict=False)]
    return ".".join(parts)


def with_day(text: str, day: date) -> str:
    """The recent days with one more purchase day (a day already there, or older than all kept, changes
    nothing beyond the cap: late-synced orders land in place)."""
    n = day_number(day)
    if n < 0:
        return text
    return encode_days([*decode_days(text), n])


def merged_days(a: str, b: str) -> str:
    return encode_days([*decode_days(a), *decode_days(b)])
