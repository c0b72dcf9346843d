"""The RFM segments' names and the brand's segmentation settings: no numpy here, so the API (member reads,
settings, the distribution) never loads it; the computation is domain/rfm.py, run by the nightly job."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, model_validator

from . import clock
from .purchase_days import day_number

if TYPE_CHECKING:  # domain/coupons.py (which the ledger imports) reads the names here: no import cycle
    from .ledger import MemberState

# Indexed by 4*R_high + 2*F_high + M_high.
SEGMENTS = ("一般挽留", "重要挽留", "一般保持", "重要保持", "一般发展", "重要发展", "一般价值", "重要价值")
NO_PURCHASE = "no_purchase"
ALL_SEGMENTS = (*SEGMENTS, NO_PURCHASE)
CUT_PERCENTS = (20, 40, 60, 80)
HIGH_SCORE = 4


class FixedThresholds(BaseModel):
    model_config = ConfigDict(extra="forbid")
    recency_days: StrictInt = Field(ge=0, le=3650, description="R is high when days since the last purchase <= this")
    frequency: StrictInt = Field(ge=1, le=10_000, description="F is high when orders in the window >= this")
    monetary: StrictInt = Field(ge=1, le=10**12, description="M is high when net spend in the window (fen) >= this")


class RfmSettings(BaseModel):
    """The brand's choices for the nightly segmentation (PUT /rfm-settings, HQ)."""

    model_config = ConfigDict(extra="forbid")
    mode: Literal["mean", "fixed", "quintile"] = "mean"
    fixed: FixedThresholds | None = None
    churn_factor_permille: StrictInt = Field(
        default=2000, ge=1000, le=20_000,
        description="warn when days since the last purchase exceed the member's usual gap times this / 1000")
    churn_list_size: StrictInt = Field(default=50, ge=1, le=200, description="per home store, ranked by spend")

    @model_validator(mode="after")
    def _fixed_given(self) -> RfmSettings:
        if self.mode == "fixed" and self.fixed is None:
            raise ValueError("mode 'fixed' needs the 'fixed' thresholds")
        return self


HISTORY_KEPT = 12


@dataclass(frozen=True)
class MemberRfm:
    """A member's nightly result, rewritten only when it changes (never because R grew by a day)."""

    member_id: str
    segment: str
    scores: tuple[int, int, int] | None  # R, F, M scores 1-5 (quintile mode only)
    tags: tuple[str, ...]  # the rule-based tags (staff tags are kept apart)
    churn_gap: str | None  # the usual gap in days while the churn warning is on ("6", "6.5")
    since: date  # the night the member entered this segment
    changed_on: date  # the night this result last changed
    history: list[tuple[str, str, str]] = field(default_factory=list)  # (segment, since, until), newest last

    def same_as(self, other: MemberRfm | None) -> bool:
        return other is not None and (self.segment, self.scores, self.tags, self.churn_gap) == (
            other.segment, other.scores, other.tags, other.churn_gap)

    def moved_from(self, previous: MemberRfm | None) -> str | None:
        """The segment the member left tonight, if any (a first classification moves from nowhere)."""
        if previous is None or previous.segment == self.segment:
            return None
        return previous.segment


def next_result(member_id: str, as_of: date, segment: str, scores: tuple[int, int, int] | None,
                tags: tuple[str, ...], churn_gap: str | None, previous: MemberRfm | None) -> MemberRfm:
    """Tonight's result, carrying the segment's start and the history forward from the last one."""
    if previous is None:
        return MemberRfm(member_id, segment, scores, tags, churn_gap, as_of, as_of)
    if previous.segment == segment:
        return MemberRfm(member_id, segment, scores, tags, churn_gap, previous.since, as_of, previous.history)
    history = [*previous.history, (previous.segment, previous.since.isoformat(), as_of.isoformat())]
    return MemberRfm(member_id, segment, scores, tags, churn_gap, as_of, as_of, history[-HISTORY_KEPT:])


@dataclass(frozen=True)
class Figures:
    """A member's R, F and M as of a day (docs/rfm.md), and their orders in that day's month."""

    recency_days: int | None  # None: never bought
    frequency: int
    monetary: int
    month_orders: int


class Window:
    """The as-of day's window, worked out once for a whole page of members."""

    def __init__(self, as_of: date) -> None:
        from .points import month_key, rolling_months  # here: points imports the ledger, which imports us

        self.as_of = as_of
        self.months = rolling_months(as_of, 12)
        self.this_month = month_key(as_of)
        self.day = day_number(as_of)

    def figures(self, state: MemberState) -> Figures:
        last = state.last_purchase_at
        r = max(0, self.day - day_number(clock.business_day(last))) if last else None
        orders, spend = state.orders_months, state.spend_months
        return Figures(r, sum(orders.get(k, 0) for k in self.months), sum(spend.get(k, 0) for k in self.months),
                       orders.get(self.this_month, 0))


def figures(state: MemberState, as_of: date) -> Figures:
    """The one definition of R, F and M, for the nightly job and the member view alike. An order posted after
    the as-of day (between midnight and the run) counts in its month's buckets; R never goes below 0."""
    return Window(as_of).figures(state)
