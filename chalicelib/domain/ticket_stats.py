"""Ticket numbers for HQ: the daily rollups each ticket change adds to, and what a range of them says. Pure.

A rollup is a set of counters for one business day (Asia/Shanghai) and one group value of one dimension
(store, region, type, channel). Every counter only ever grows by addition, so the rows of many days (and of
the shards of one day) merge by adding them up, and the store writes them with DynamoDB's ADD inside the
ticket's own transaction: a change is counted exactly when it is recorded.

What each change adds, on the business day of the change:
  - opening: `opened` 1.
  - the first public reply by staff: one first-response time sample, in WALL seconds from `created_at` to the
    reply (not business time: HQ compares what members waited), into a log-bucket histogram.
  - the first-response clock stopping (that reply, or a resolve/close before any reply): `fr_met` or
    `fr_breached`, as the SLA clock decided. The same for the resolution clock (resolve, or a close of an
    unresolved ticket); a reopened ticket's next resolve decides again, so the rate is of resolutions.
  - a rating: its score into `rate_sum`, 1 into `rate_n`.

The histogram: bucket 0 holds 0 s; bucket k >= 1 holds [R^(k-1), R^k) seconds with R = 1.2. A quantile is the
midpoint of the bucket holding the nearest-rank sample, rounded to whole seconds. Every value v in a bucket
[lo, hi) is within (hi - lo) / 2 = lo * (R - 1) / 2 <= v * 10 % of its midpoint, so the estimate is within
10 % of the exact nearest-rank value, plus 0.5 s for the rounding (RELATIVE_ERROR, ROUNDING_SECONDS).
"""
from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from . import clock
from .sla import sla_from
from .tickets import Event, Ticket

RATIO = 1.2
RELATIVE_ERROR = (RATIO - 1) / 2  # 0.1: the quantile estimate's error, relative to the exact value
ROUNDING_SECONDS = 0.5  # plus this much: estimates are whole seconds
MAX_BUCKET = 150  # 1.2^150 s is far beyond any wait; longer ones share the last bucket (never seen)

DIMENSIONS = ("store", "region", "type", "channel")
NONE = "~"  # the group value of a ticket with no store (or a store with no region): sorts after every id
# Dimensions every ticket of the brand writes to a few items of: their day items are spread over this many
# shards (by ticket), so concurrent tickets rarely hold the same item in their transactions. A store's items
# only see that store's tickets, which already meet on the store queue's agents.
SHARDED = frozenset({"region", "type", "channel"})
SHARDS = 4
MAX_DAYS = 92  # a query's range, both ends included

OPENED = "opened"
FR_MET, FR_BREACHED = "fr_met", "fr_breached"
RES_MET, RES_BREACHED = "res_met", "res_breached"
RATE_SUM, RATE_N = "rate_sum", "rate_n"
BUCKET_PREFIX = "frh"  # frh<k>: first-response samples in bucket k


# ---- the histogram --------------------------------------------------------------------------------------------
def lower(k: int) -> float:
    return 0.0 if k <= 0 else RATIO ** (k - 1)


def upper(k: int) -> float:
    return 0.0 if k <= 0 else RATIO**k


def bucket(seconds: int) -> int:
    """The bucket of a sample: 0 for 0 s, else k with lower(k) <= seconds < upper(k)."""
    if seconds <= 0:
        return 0
    k = int(math.floor(math.log(seconds) / math.log(RATIO))) + 1
    while k > 1 and lower(k) > seconds:  # float logs may land one bucket off at a boundary: settle on the
        k -= 1  # bounds the midpoints are computed from
    while upper(k) <= seconds:
        k += 1
    return min(k, MAX_BUCKET)


def midpoint(k: int) -> float:
    return (lower(k) + upper(k)) / 2


Histogram = Mapping[int, int]  # bucket -> samples


def histogram(samples: Iterable[int]) -> dict[int, int]:
    out: dict[int, int] = {}
    for s in samples:
        k = bucket(s)
        out[k] = out.get(k, 0) + 1
    return out


def merge(*hists: Histogram) -> dict[int, int]:
    """Histograms add: the merge of days (or shards) is the histogram of all their samples."""
    out: dict[int, int] = {}
    for h in hists:
        for k, n in h.items():
            if n:
                out[k] = out.get(k, 0) + n
    return out


def quantile(h: Histogram, pct: int) -> int | None:
    """The pct-th percentile, nearest rank (the ceil(pct/100 * n)-th smallest sample), read from the bucket
    holding it: within RELATIVE_ERROR of the exact value, plus ROUNDING_SECONDS. None without samples."""
    n = sum(h.values())
    if n <= 0:
        return None
    rank = max(1, (pct * n + 99) // 100)
    seen = 0
    for k in sorted(h):
        seen += h[k]
        if seen >= rank:
            return round(midpoint(k))
    raise AssertionError("unreachable: the ranks add up to n")  # pragma: no cover


def nearest_rank(samples: list[int], pct: int) -> int:
    """The exact value the estimate is held to (tests compare the two)."""
    ordered = sorted(samples)
    return ordered[max(1, (pct * len(ordered) + 99) // 100) - 1]


# ---- what a change adds ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Rollup:
    """The counters one change adds, all on one business day."""

    day: date
    counts: dict[str, int] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return any(self.counts.values())


def on_open(ticket: Ticket) -> Rollup:
    return Rollup(clock.business_day(ticket.created_at), {OPENED: 1})


def _outcome(sla: dict[str, Any] | None, name: str) -> str | None:
    if sla is None:
        return None
    return getattr(sla_from(sla), name).outcome


def on_event(before: Ticket, after: Ticket, event: Event) -> Rollup:
    """What one recorded event adds (empty for most: comments, assigns, transfers, tasks, holds)."""
    counts: dict[str, int] = {}
    if before.first_response_at is None and after.first_response_at is not None:
        waited = int((after.first_response_at - after.created_at).total_seconds())
        counts[f"{BUCKET_PREFIX}{bucket(max(waited, 0))}"] = 1
    for name, met, breached in (("first_response", FR_MET, FR_BREACHED), ("resolution", RES_MET, RES_BREACHED)):
        was, now = _outcome(before.sla, name), _outcome(after.sla, name)
        if was is None and now is not None:
            counts[met if now == "met" else breached] = 1
    if before.rating is None and after.rating is not None:
        counts[RATE_SUM], counts[RATE_N] = after.rating, 1
    return Rollup(clock.business_day(event.at), counts)


def stat_shard(ticket_id: str) -> int:
    """Stable across processes (Python's hash() is salted per process)."""
    return int.from_bytes(hashlib.blake2b(ticket_id.encode(), digest_size=2).digest(), "big") % SHARDS


@dataclass(frozen=True)
class StatRow:
    """One item's share of a change: the rollup's counters added to (dim, day, value[, shard]). A store row
    also records the store's region then, so a region manager's store list needs no store lookups."""

    dim: str
    value: str
    day: date
    shard: int | None
    counts: dict[str, int]
    region: str | None = None


def rows(ticket: Ticket, rollup: Rollup, region_id: str | None) -> list[StatRow]:
    """The items a change adds to: one per dimension (none when it adds nothing)."""
    if not rollup:
        return []
    counts = {k: v for k, v in rollup.counts.items() if v}
    shard = stat_shard(ticket.ticket_id)
    values = {"store": ticket.store_id or NONE, "region": region_id or NONE, "type": ticket.type.value,
              "channel": ticket.channel.value}
    return [StatRow(dim=d, value=values[d], day=rollup.day, shard=shard if d in SHARDED else None, counts=counts,
                    region=(region_id or NONE) if d == "store" else None) for d in DIMENSIONS]


# ---- reading a range ------------------------------------------------------------------------------------------
COUNTERS = frozenset({OPENED, FR_MET, FR_BREACHED, RES_MET, RES_BREACHED, RATE_SUM, RATE_N})


def add_up(items: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    """The counters of many rows (days, shards) of one group, added."""
    out: dict[str, int] = {}
    for item in items:
        for name, n in item.items():
            if name in COUNTERS or name.startswith(BUCKET_PREFIX):
                out[name] = out.get(name, 0) + int(n)
    return out



def first_response_histogram(counts: Mapping[str, int]) -> dict[int, int]:
    return {int(name[len(BUCKET_PREFIX):]): n for name, n in counts.items()
            if name.startswith(BUCKET_PREFIX) and n}


def rate_bp(part: int, whole: int) -> int | None:
    """part / whole in basis points, rounded down; None when nothing was decided."""
    return part * 10_000 // whole if whole > 0 else None


@dataclass(frozen=True)
class GroupNumbers:
    value: str | None  # None: no store / no region
    opened: int
    first_response_count: int
    first_response_median_seconds: int | None
    first_response_p90_seconds: int | None
    first_response_met: int
    first_response_breached: int
    first_response_met_rate_bp: int | None
    resolution_met: int
    resolution_breached: int
    resolution_met_rate_bp: int | None
    satisfaction_count: int
    satisfaction_average_x100: int | None  # the average score x 100, rounded down


def numbers(value: str, counts: Mapping[str, int]) -> GroupNumbers:
    h = first_response_histogram(counts)
    fr_met, fr_breached = counts.get(FR_MET, 0), counts.get(FR_BREACHED, 0)
    res_met, res_breached = counts.get(RES_MET, 0), counts.get(RES_BREACHED, 0)
    rated = counts.get(RATE_N, 0)
    return GroupNumbers(
        value=None if value == NONE else value, opened=counts.get(OPENED, 0),
        first_response_count=sum(h.values()), first_response_median_seconds=quantile(h, 50),
        first_response_p90_seconds=quantile(h, 90), first_response_met=fr_met, first_response_breached=fr_breached,
        first_response_met_rate_bp=rate_bp(fr_met, fr_met + fr_breached), resolution_met=res_met,
        resolution_breached=res_breached, resolution_met_rate_bp=rate_bp(res_met, res_met + res_breached),
        satisfaction_count=rated,
        satisfaction_average_x100=counts.get(RATE_SUM, 0) * 100 // rated if rated > 0 else None)
