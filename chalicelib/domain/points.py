"""The points ledger's arithmetic. Pure functions over small value objects; the store persists the result.

Invariants (tested with hypothesis against DynamoDB Local):
  available == sum(lot.remaining);  balance == available - owed;  a redemption never makes balance < 0;
  a full refund, in any number of steps, reverses exactly what the order earned.
"""
from __future__ import annotations

import calendar
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal

from .ledger import Lot, MemberState
from .program import PointsRules, Tier, TierProgram
from .purchase_days import merged_days


# ---- earning ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class EarnBreakdown:
    amount_fen: int
    points_per_yuan: int
    tier_id: str
    tier_multiplier: int
    promotion: str | None
    promotion_multiplier: int
    unrounded: str
    points: int

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def active_promotion(rules: PointsRules, day: date, birthday_month: int | None) -> tuple[str | None, int]:
    """The highest active promotion on this business day (they do not stack)."""
    candidates: list[tuple[int, str]] = []
    p = rules.promotions
    if p.member_day is not None and day.day == p.member_day:
        candidates.append((p.member_day_multiplier, "member_day"))
    if birthday_month is not None and day.month == birthday_month:
        candidates.append((p.birthday_month_multiplier, "birthday_month"))
    best = max(candidates, default=(1000, None))
    return (best[1], best[0]) if best[0] > 1000 else (None, 1000)


def earn(amount_fen: int, rules: PointsRules, tier: Tier, day: date, birthday_month: int | None) -> EarnBreakdown:
    """base rate × multiplier of the tier held before this order × highest promotion, rounded down once."""
    promo, promo_mult = active_promotion(rules, day, birthday_month)
    numerator = amount_fen * rules.points_per_yuan * tier.benefits.points_multiplier * promo_mult
    denominator = 100 * 1000 * 1000
    return EarnBreakdown(
        amount_fen=amount_fen, points_per_yuan=rules.points_per_yuan, tier_id=tier.tier_id,
        tier_multiplier=tier.benefits.points_multiplier, promotion=promo, promotion_multiplier=promo_mult,
        unrounded=str((Decimal(numerator) / denominator).quantize(Decimal("0.0001"))),
        points=numerator // denominator)


def add_months(day: date, months: int) -> date:
    month0 = day.month - 1 + months
    year, month = day.year + month0 // 12, month0 % 12 + 1
    return date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


def expires_on(earned: date, rules: PointsRules) -> date:
    """The last business day on which the lot's points may be spent."""
    if rules.expiry.mode == "months_after":
        return add_months(earned, rules.expiry.months) - timedelta(days=1)
    end = add_months(earned.replace(day=1), rules.expiry.months)
    return end.replace(day=calendar.monthrange(end.year, end.month)[1])


def pay_debt(points: int, owed: int) -> tuple[int, int]:
    """Later earnings pay owed points first: (points left for the new lot, owed points paid)."""
    paid = min(points, owed)
    return points - paid, paid


# ---- spending ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LotView:
    lot_id: str
    expires_on: date
    remaining: int


class InsufficientPoints(Exception):
    def __init__(self, available: int, wanted: int) -> None:
        super().__init__(f"{available} < {wanted}")
        self.available, self.wanted = available, wanted


def plan_consumption(lots: list[LotView], points: int, today: date) -> list[tuple[LotView, int]]:
    """Take `points` from the valid lots, soonest-expiring first. Raises InsufficientPoints."""
    usable = sorted((lot for lot in lots if lot.remaining > 0 and lot.expires_on >= today),
                    key=lambda lot: (lot.expires_on, lot.lot_id))
    plan: list[tuple[LotView, int]] = []
    need = points
    for lot in usable:
        if need == 0:
            break
        take = min(lot.remaining, need)
        plan.append((lot, take))
        need -= take
    if need > 0:
        raise InsufficientPoints(points - need, points)
    return plan


def oldest_open(lots: Iterable[Lot], now: datetime) -> datetime:
    """Where the search for spendable lots may start after a change (made at `now`) that saw every open
    lot: the credit time of the oldest lot still holding points, else `now` (any later credit lowers the
    bound to its own time, so a lot credited by a slower clock is never left below it)."""
    return min((lot.at for lot in lots if lot.remaining > 0), default=now)


def earliest(*moments: datetime | None) -> datetime | None:
    return min((m for m in moments if m is not None), default=None)


# ---- refunds ----------------------------------------------------------------------------------------------
def points_to_reverse(points_earned: int, order_amount: int, refunded_before: int, refunding: int,
                      reversed_before: int) -> int:
    """floor(points × refunded so far ÷ amount) − what earlier refunds reversed: exact over any split."""
    total = (points_earned * (refunded_before + refunding)) // order_amount if order_amount else 0
    return total - reversed_before


@dataclass(frozen=True)
class LotState:
    """An earn lot as refunds see it. `expired` and `forgiven` are points that expired, and how many of
    them refunds have already matched (not clawed back)."""

    remaining: int
    expired: int = 0
    forgiven: int = 0
    expired_flag: bool = False


@dataclass(frozen=True)
class Reversal:
    removed: int  # taken from the lot's remaining (unspent) points
    forgiven: int  # matched against points that had expired: not clawed back
    owed: int  # already spent: becomes a debt on the member

    @property
    def total(self) -> int:
        return self.removed + self.forgiven + self.owed


def reverse(lot: LotState, points: int) -> Reversal:
    """Unspent points are removed first, then expired ones are forgiven, the rest becomes owed. A lot past
    its last day has nothing unspent: what it still holds has expired (swept or not), so it is forgiven."""
    removed = 0 if lot.expired_flag else min(points, lot.remaining)
    lapsed = lot.expired + (lot.remaining if lot.expired_flag else 0)
    forgiven = min(points - removed, lapsed - lot.forgiven)
    return Reversal(removed=removed, forgiven=forgiven, owed=points - removed - forgiven)


# ---- tiers ------------------------------------------------------------------------------------------------
def month_key(day: date) -> str:
    return f"{day.year:04d}-{day.month:02d}"


def rolling_months(day: date, months: int = 12) -> list[str]:
    """The month keys of the rolling window ending with `day`'s month (spend is bucketed by month)."""
    first = add_months(day.replace(day=1), -(months - 1))
    return [month_key(add_months(first, i)) for i in range(months)]


def rolling_total(buckets: dict[str, int], day: date) -> int:
    return sum(buckets.get(m, 0) for m in rolling_months(day))


def prune_buckets(buckets: dict[str, int], day: date, keep: int = 13) -> dict[str, int]:
    """Keep the window plus one month (what the next re-evaluation still needs): the item stays small."""
    window = set(rolling_months(day, keep))
    return {m: v for m, v in buckets.items() if m in window}


def fold_states(target: MemberState, source: MemberState, tier_rank: Callable[[str | None], int]) -> MemberState:
    """A merge adds the duplicate's points, debt and history to the survivor; the higher tier is kept."""
    def add(a: dict[str, int], b: dict[str, int]) -> dict[str, int]:
        return {k: a.get(k, 0) + b.get(k, 0) for k in a.keys() | b.keys()}

    tier = max((target.tier, source.tier), key=tier_rank)
    base = max((target.tier_base, source.tier_base), key=tier_rank)
    firsts = [d for d in (target.first_purchase_at, source.first_purchase_at) if d]
    lasts = [d for d in (target.last_purchase_at, source.last_purchase_at) if d]
    return target.evolve(
        version=target.version + 1, available=target.available + source.available, owed=target.owed + source.owed,
        tier=tier, tier_base=base, spend_months=add(target.spend_months, source.spend_months),
        orders_months=add(target.orders_months, source.orders_months),
        order_count=target.order_count + source.order_count,
        lifetime_spend=target.lifetime_spend + source.lifetime_spend,
        lifetime_earned=target.lifetime_earned + source.lifetime_earned,
        first_purchase_at=min(firsts) if firsts else None, last_purchase_at=max(lasts) if lasts else None,
        stores=target.stores | source.stores, categories=add(target.categories, source.categories),
        open_lots_from=earliest(target.open_lots_from, source.open_lots_from),
        recent_days=merged_days(target.recent_days, source.recent_days),
        coupon_orders=target.coupon_orders + source.coupon_orders)


def tier_progress(state: MemberState, tiers: TierProgram, day: date) -> int:
    """Tier progress on `day`: rolling-12-month spend (or order count), never the points balance."""
    buckets = state.spend_months if tiers.basis == "spend" else state.orders_months
    return rolling_total(buckets, day)


def less_categories(categories: dict[str, int], lines: list[tuple[str, str, int]], order_amount: int,
                    refunded: int, by_sku: dict[str, int] | None) -> dict[str, int]:
    """Refunded spend leaves the favourite-category tally. `lines` are the order's (sku, category, amount);
    `by_sku` the refunded amount per sku when the refund named its lines, else the refund is spread over
    the lines in proportion (the last line takes the rounding)."""
    result = dict(categories)
    category = {sku: cat for sku, cat, _ in lines}
    if by_sku:
        for sku, amount in by_sku.items():
            result[category[sku]] = result.get(category[sku], 0) - amount
        return result
    left = refunded
    for i, (_, cat, amount) in enumerate(lines):
        share = left if i == len(lines) - 1 else (refunded * amount) // order_amount
        result[cat] = result.get(cat, 0) - share
        left -= share
    return result


def tier_after_refund(current: int, floor: int, qualified_before: int, qualified_after: int) -> int:
    """The tier (as an index) a refund leaves, given what the member qualified for just before and just after
    it under today's program. A refund takes back only the levels it crosses itself: a member holding a
    tier above what they now qualify for (the program was raised; nobody is demoted before the review)
    keeps that grace. Never below `floor` (the tier confirmed at the last review), never above `current`."""
    grace = max(0, current - qualified_before)
    return min(current, max(floor, qualified_after + grace))
