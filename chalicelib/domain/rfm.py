"""RFM segmentation: the definitions (docs/rfm.md), as pure, vectorised functions over arrays of members.

As-of day: the business day (Asia/Shanghai) that just ended. Window: its month and the 11 months before it,
the monthly buckets the tier rule reads (refunds come off the month of the order they refund).
  R = days from the business day of the last purchase to the as-of day (a later refund does not change it)
  F = orders in the window (a wholly refunded order no longer counts)
  M = net spend in the window, in fen
A member with a purchase ever is classified (none in the window: F = 0, M = 0); one who never bought is
`no_purchase`. The population that sets the thresholds: members with F >= 1.

"High" (per brand, RfmSettings.mode):
  mean      above the population's mean, compared exactly in integers (F*n > sum F; R "high" = recent:
            R*n < sum R)
  fixed     R <= recency_days, F >= frequency, M >= monetary
  quintile  scores 1-5 from exact nearest-rank cut points P20, P40, P60, P80 of the population's values
            (P_k = the value at rank ceil(k/100 * N) in ascending order): score = 1 + the number of cut points
            the value is above, so equal values always score the same; R is scored on -R (recent scores high);
            "high" = score >= 4.

The thresholds come from mergeable partial results (counts, sums and exact value counts per segment of the
parallel read), so the fan-out gives the same answer as one pass.
"""
from __future__ import annotations

import io
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date

import numpy as np

from .points import rolling_months
from .segments import ALL_SEGMENTS, CUT_PERCENTS, HIGH_SCORE, NO_PURCHASE, SEGMENTS, RfmSettings


def window_months(as_of: date) -> list[str]:
    return rolling_months(as_of, 12)


# ---- partial results (the measuring pass) -------------------------------------------------------------------
def _value_counts(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    uniq, counts = np.unique(values.astype(np.int64), return_counts=True)
    return uniq, counts.astype(np.int64)


def _merge_counts(pairs: Iterable[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    pairs = [p for p in pairs if len(p[0])]
    if not pairs:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    values = np.concatenate([v for v, _ in pairs])
    counts = np.concatenate([c for _, c in pairs])
    uniq, inverse = np.unique(values, return_inverse=True)
    return uniq, np.bincount(inverse, weights=counts, minlength=len(uniq)).astype(np.int64)


@dataclass
class Partial:
    """What a slice of members adds to the thresholds: the population's size, sums, and value counts."""

    n: int = 0
    sum_r: int = 0
    sum_f: int = 0
    sum_m: int = 0
    r: tuple[np.ndarray, np.ndarray] = field(default_factory=lambda: _merge_counts([]))
    f: tuple[np.ndarray, np.ndarray] = field(default_factory=lambda: _merge_counts([]))
    m: tuple[np.ndarray, np.ndarray] = field(default_factory=lambda: _merge_counts([]))

    def encode(self) -> bytes:
        buf = io.BytesIO()
        np.savez_compressed(buf, head=np.array([self.n, self.sum_r, self.sum_f, self.sum_m], dtype=np.int64),
                            rv=self.r[0], rc=self.r[1], fv=self.f[0], fc=self.f[1], mv=self.m[0], mc=self.m[1])
        return buf.getvalue()

    @staticmethod
    def decode(blob: bytes) -> Partial:
        with np.load(io.BytesIO(blob), allow_pickle=False) as z:
            n, sr, sf, sm = (int(x) for x in z["head"])
            return Partial(n, sr, sf, sm, (z["rv"], z["rc"]), (z["fv"], z["fc"]), (z["mv"], z["mc"]))


def partial_of(r: np.ndarray, f: np.ndarray, m: np.ndarray) -> Partial:
    """The members with F >= 1 among these (r, f, m columns of one page)."""
    pop = f >= 1
    r, f, m = r[pop], f[pop], m[pop]
    return Partial(int(pop.sum()), int(r.sum()), int(f.sum()), int(m.sum()),
                   _value_counts(r), _value_counts(f), _value_counts(m))


def merge(parts: Iterable[Partial]) -> Partial:
    parts = list(parts)
    return Partial(sum(p.n for p in parts), sum(p.sum_r for p in parts), sum(p.sum_f for p in parts),
                   sum(p.sum_m for p in parts), _merge_counts(p.r for p in parts),
                   _merge_counts(p.f for p in parts), _merge_counts(p.m for p in parts))


# ---- thresholds -----------------------------------------------------------------------------------------------
def nearest_rank_cuts(values: np.ndarray, counts: np.ndarray) -> tuple[int, ...] | None:
    """P20, P40, P60, P80 by nearest rank: the value at rank ceil(k/100 * N), 1-based, ascending."""
    total = int(counts.sum())
    if total == 0:
        return None
    cumulative = np.cumsum(counts)
    cuts = []
    for k in CUT_PERCENTS:
        rank = -(-k * total // 100)  # ceil in integers
        cuts.append(int(values[int(np.searchsorted(cumulative, rank, side="left"))]))
    return tuple(cuts)


@dataclass(frozen=True)
class Thresholds:
    mode: str
    n: int = 0
    sum_r: int = 0
    sum_f: int = 0
    sum_m: int = 0
    fixed: tuple[int, int, int] | None = None  # recency_days, frequency, monetary
    cuts_r: tuple[int, ...] | None = None  # on -R
    cuts_f: tuple[int, ...] | None = None
    cuts_m: tuple[int, ...] | None = None

    def as_dict(self) -> dict:
        out: dict = {"mode": self.mode, "population": self.n}
        if self.mode == "mean":
            out.update(sum_r=self.sum_r, sum_f=self.sum_f, sum_m=self.sum_m)
            if self.n:
                out["means"] = {"r": round(self.sum_r / self.n, 2), "f": round(self.sum_f / self.n, 2),
                                "m": round(self.sum_m / self.n, 2)}
        if self.fixed:
            out["fixed"] = list(self.fixed)
        if self.mode == "quintile":
            out["cuts"] = {"r": [-c for c in self.cuts_r] if self.cuts_r else None,
                           "f": list(self.cuts_f) if self.cuts_f else None,
                           "m": list(self.cuts_m) if self.cuts_m else None}
        return out

    @staticmethod
    def from_dict(d: dict) -> Thresholds:
        cuts = d.get("cuts") or {}
        return Thresholds(
            mode=d["mode"], n=d.get("population", 0), sum_r=d.get("sum_r", 0), sum_f=d.get("sum_f", 0),
            sum_m=d.get("sum_m", 0), fixed=tuple(d["fixed"]) if d.get("fixed") else None,  # type: ignore[arg-type]
            cuts_r=tuple(-c for c in cuts["r"]) if cuts.get("r") else None,
            cuts_f=tuple(cuts["f"]) if cuts.get("f") else None, cuts_m=tuple(cuts["m"]) if cuts.get("m") else None)


def thresholds(settings: RfmSettings, whole: Partial | None) -> Thresholds:
    if settings.mode == "fixed":
        fx = settings.fixed
        assert fx is not None
        return Thresholds("fixed", fixed=(fx.recency_days, fx.frequency, fx.monetary))
    whole = whole or Partial()
    if settings.mode == "mean":
        return Thresholds("mean", whole.n, whole.sum_r, whole.sum_f, whole.sum_m)
    neg_r = (-whole.r[0][::-1], whole.r[1][::-1])
    return Thresholds("quintile", whole.n, cuts_r=nearest_rank_cuts(*neg_r),
                      cuts_f=nearest_rank_cuts(*whole.f), cuts_m=nearest_rank_cuts(*whole.m))


# ---- classification -------------------------------------------------------------------------------------------
def _scores(values: np.ndarray, cuts: tuple[int, ...] | None) -> np.ndarray:
    if cuts is None:
        return np.ones(len(values), np.int8)
    return (1 + (values[:, None] > np.array(cuts, dtype=np.int64)[None, :]).sum(axis=1)).astype(np.int8)


@dataclass
class Classified:
    codes: np.ndarray  # segment index into SEGMENTS, -1 for no purchase
    r_score: np.ndarray  # 1..5 in quintile mode, 0 otherwise
    f_score: np.ndarray
    m_score: np.ndarray

    def segment(self, i: int) -> str:
        code = int(self.codes[i])
        return NO_PURCHASE if code < 0 else SEGMENTS[code]

    def scores(self, i: int) -> tuple[int, int, int] | None:
        if not self.r_score[i]:
            return None
        return int(self.r_score[i]), int(self.f_score[i]), int(self.m_score[i])


def classify(r: np.ndarray, f: np.ndarray, m: np.ndarray, purchased: np.ndarray, t: Thresholds) -> Classified:
    r, f, m = (np.asarray(x, dtype=np.int64) for x in (r, f, m))
    zeros = np.zeros(len(r), np.int8)
    rs = fs = ms = zeros
    if t.mode == "mean":
        n = t.n
        rh, fh, mh = r * n < t.sum_r, f * n > t.sum_f, m * n > t.sum_m
    elif t.mode == "fixed":
        assert t.fixed is not None
        rh, fh, mh = r <= t.fixed[0], f >= t.fixed[1], m >= t.fixed[2]
    else:
        rs, fs, ms = _scores(-r, t.cuts_r), _scores(f, t.cuts_f), _scores(m, t.cuts_m)
        rh, fh, mh = rs >= HIGH_SCORE, fs >= HIGH_SCORE, ms >= HIGH_SCORE
    codes = (4 * rh.astype(np.int8) + 2 * fh.astype(np.int8) + mh.astype(np.int8)).astype(np.int8)
    codes = np.where(purchased, codes, np.int8(-1)).astype(np.int8)
    keep = purchased.astype(np.int8)
    return Classified(codes, rs * keep, fs * keep, ms * keep)


# ---- the churn warning ----------------------------------------------------------------------------------------
MAX_GAPS = 10
MIN_PURCHASE_DAYS = 3


def usual_gaps(days: Sequence[Sequence[int]]) -> np.ndarray:
    """The median of each member's last up-to-10 gaps between purchase days (NaN with fewer than 3 days)."""
    gaps = np.full((len(days), MAX_GAPS), np.nan)
    enough = np.zeros(len(days), bool)
    for i, d in enumerate(days):
        if len(d) >= MIN_PURCHASE_DAYS:
            g = np.diff(np.asarray(d[-(MAX_GAPS + 1):], dtype=np.int64))
            gaps[i, :len(g)] = g
            enough[i] = True
    out = np.full(len(days), np.nan)
    if enough.any():
        out[enough] = np.nanmedian(gaps[enough], axis=1)
    return out


def usual_gaps_of(texts: Sequence[str]) -> np.ndarray:
    """usual_gaps straight from the recent-days texts, whose parts after the first ARE the gaps (the last ten):
    no day list is rebuilt, and the matrix is filled in one vectorised assignment."""
    rows, cols, values = [], [], []
    for i, text in enumerate(texts):
        parts = text.split(".")[1:] if text else []
        if len(parts) >= MIN_PURCHASE_DAYS - 1:
            parts = parts[-MAX_GAPS:]
            rows.extend([i] * len(parts))
            cols.extend(range(len(parts)))
            values.extend(int(p, 36) for p in parts)
    gaps = np.full((len(texts), MAX_GAPS), np.nan)
    gaps[np.array(rows, np.int64), np.array(cols, np.int64)] = np.array(values, np.float64)
    out = np.full(len(texts), np.nan)
    enough = ~np.isnan(gaps[:, 0])
    if enough.any():
        out[enough] = np.nanmedian(gaps[enough], axis=1)
    return out


def churning(r: np.ndarray, gaps: np.ndarray, factor_permille: int) -> np.ndarray:
    """Days since the last purchase beyond the usual gap times the factor (no usual gap: never)."""
    with np.errstate(invalid="ignore"):
        return np.where(np.isnan(gaps), False, np.asarray(r) * 1000 > gaps * factor_permille)


def gap_text(gap: float) -> str:
    return str(int(gap)) if float(gap).is_integer() else f"{gap:.1f}"


# ---- per-store figures ------------------------------------------------------------------------------------------
def counts_by_group(groups: np.ndarray, codes: np.ndarray, n_groups: int) -> np.ndarray:
    """(n_groups, 9) counts: the eight segments then no_purchase."""
    idx = np.where(codes < 0, len(SEGMENTS), codes).astype(np.int64)
    flat = np.bincount(groups.astype(np.int64) * len(ALL_SEGMENTS) + idx, minlength=n_groups * len(ALL_SEGMENTS))
    return flat.reshape(n_groups, len(ALL_SEGMENTS))


def repurchase(groups: np.ndarray, month_orders: np.ndarray, n_groups: int) -> tuple[np.ndarray, np.ndarray]:
    """Per group: members buying in the month, and those with two or more orders that month."""
    g = groups.astype(np.int64)
    return (np.bincount(g, weights=month_orders >= 1, minlength=n_groups).astype(np.int64),
            np.bincount(g, weights=month_orders >= 2, minlength=n_groups).astype(np.int64))


def permille(part: int, whole: int) -> int:
    return 0 if whole <= 0 else math.floor(part * 1000 / whole)
