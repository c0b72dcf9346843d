"""The points ledger's arithmetic (chalicelib/domain/points.py), one rule at a time.

Extends test_points_rules.py (which holds one example per rule) with the edges and with properties.
Every expected number is worked out by hand in the test; properties compare against an independent
recomputation (fractions, month arithmetic), never against the code under test.
"""
from __future__ import annotations

import calendar
import math
from datetime import UTC, date, datetime, timedelta
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chalicelib.domain import clock
from chalicelib.domain.ledger import Lot, MemberState
from chalicelib.domain.points import (
    InsufficientPoints,
    LotState,
    LotView,
    Reversal,
    add_months,
    earliest,
    earn,
    expires_on,
    fold_states,
    month_key,
    oldest_open,
    pay_debt,
    plan_consumption,
    points_to_reverse,
    prune_buckets,
    reverse,
    rolling_months,
    rolling_total,
)
from chalicelib.domain.program import DEFAULT_TIERS, Benefits, ExpiryRule, PointsRules, Promotions, Tier

SH = clock.BUSINESS_TZ
RULES = PointsRules(points_per_yuan=1, promotions=Promotions(member_day=8, member_day_multiplier=2000,
                                                             birthday_month_multiplier=1500))
REGULAR, SILVER, GOLD, DIAMOND = DEFAULT_TIERS.tiers  # x1, x1.2, x1.5, x2
PLAIN_DAY = date(2026, 11, 7)  # not the member day (8th); used with no birthday month: no promotion


def _tier(multiplier: int) -> Tier:
    return Tier(tier_id="t", name="t", threshold=0, benefits=Benefits(points_multiplier=multiplier))


# ==== earning ================================================================================================
@pytest.mark.parametrize("amount_fen,points", [
    (0, 0),
    (99, 0),  # ¥0.99 -> 0.99 points -> 0
    (100, 1),  # ¥1.00 -> 1
    (199, 1),  # ¥1.99 -> 1.99 -> 1 (down, never to nearest)
    (12_399, 123),  # ¥123.99 -> 123
])
def test_base_rate_rounds_partial_yuan_down(amount_fen, points):
    """Given a regular member on a day without promotions, When they pay, Then each whole yuan earns one point."""
    # Given / When
    breakdown = earn(amount_fen, RULES, REGULAR, PLAIN_DAY, birthday_month=None)
    # Then
    assert breakdown.points == points
    assert (breakdown.promotion, breakdown.promotion_multiplier) == (None, 1000)


def test_the_tier_multiplier_applies_to_the_base_rate():
    """Given a silver member (x1.2), When they pay ¥123.45, Then they earn floor(123.45 x 1.2) points."""
    # Given
    amount = 12_345
    # When
    breakdown = earn(amount, RULES, SILVER, PLAIN_DAY, birthday_month=None)
    # Then: 123.45 x 1.2 = 148.14 -> 148
    assert (breakdown.tier_id, breakdown.tier_multiplier, breakdown.points) == ("silver", 1200, 148)
    assert breakdown.unrounded == "148.1400"


def test_a_higher_base_rate_is_still_rounded_down_not_to_nearest():
    """Given 3 points per yuan, When a member pays ¥33.33, Then 99.99 points round down to 99."""
    # Given
    rules = RULES.model_copy(update={"points_per_yuan": 3})
    # When
    breakdown = earn(3_333, rules, REGULAR, PLAIN_DAY, birthday_month=None)
    # Then: 33.33 x 3 = 99.99
    assert (breakdown.points_per_yuan, breakdown.unrounded, breakdown.points) == (3, "99.9900", 99)


def test_rounding_happens_once_over_the_whole_product():
    """Given silver (x1.2) in the birthday month (x1.5), When a member pays ¥2.50, Then the product is floored
    once: 2.5 x 1.2 x 1.5 = 4.5 -> 4 (flooring each step would give floor(floor(2.5 x 1.2) x 1.5) = 3)."""
    # Given
    day = date(2026, 3, 9)
    # When
    breakdown = earn(250, RULES, SILVER, day, birthday_month=3)
    # Then
    assert (breakdown.unrounded, breakdown.points) == ("4.5000", 4)


def test_the_breakdown_records_every_factor():
    """Given a gold member (x1.5) in their birthday month (x1.5), When they pay ¥100, Then the breakdown
    shows each factor and 100 x 1.5 x 1.5 = 225 points."""
    # Given
    day = date(2026, 3, 9)
    # When
    breakdown = earn(10_000, RULES, GOLD, day, birthday_month=3)
    # Then
    assert breakdown.as_dict() == {
        "amount_fen": 10_000, "points_per_yuan": 1, "tier_id": "gold", "tier_multiplier": 1500,
        "promotion": "birthday_month", "promotion_multiplier": 1500, "unrounded": "225.0000", "points": 225}


@pytest.mark.parametrize("day", [date(2026, 3, 1), date(2026, 3, 8), date(2026, 3, 31)])
def test_the_birthday_promotion_lasts_the_whole_month(day):
    """Given a member born in March and a birthday promotion of x1.5 beaten only by member day (x2),
    When they pay ¥10 on any day of March, Then a promotion applies (member day on the 8th, else birthday)."""
    # Given / When
    breakdown = earn(1_000, RULES, REGULAR, day, birthday_month=3)
    # Then: 10 x 2 = 20 on the 8th, 10 x 1.5 = 15 otherwise
    expected = ("member_day", 2000, 20) if day.day == 8 else ("birthday_month", 1500, 15)
    assert (breakdown.promotion, breakdown.promotion_multiplier, breakdown.points) == expected


@pytest.mark.parametrize("day,birthday_month", [(date(2026, 2, 28), 3), (date(2026, 4, 1), 3), (PLAIN_DAY, None)])
def test_no_promotion_outside_the_birthday_month_or_without_a_birthday(day, birthday_month):
    """Given a day that is neither member day nor in the member's birthday month, When they pay ¥10,
    Then no promotion applies and they earn 10 points."""
    # Given / When
    breakdown = earn(1_000, RULES, REGULAR, day, birthday_month)
    # Then
    assert (breakdown.promotion, breakdown.promotion_multiplier, breakdown.points) == (None, 1000, 10)


def test_member_day_is_only_the_configured_day_and_can_be_switched_off():
    """Given member day on the 8th, When a member pays ¥10 on the 8th, 7th and 9th, or with member day
    switched off, Then only the 8th with member day on doubles the points."""
    # Given
    off = RULES.model_copy(update={"promotions": Promotions(member_day=None)})
    # When
    on_day, before, after = (earn(1_000, RULES, REGULAR, date(2026, 11, d), None).points for d in (8, 7, 9))
    switched_off = earn(1_000, off, REGULAR, date(2026, 11, 8), None)
    # Then: 10 x 2 = 20; otherwise 10
    assert (on_day, before, after) == (20, 10, 10)
    assert (switched_off.promotion, switched_off.points) == (None, 10)


def test_the_higher_promotion_wins_even_when_it_is_the_birthday():
    """Given a birthday multiplier (x2.5) higher than member day's (x2), When a member born in November pays
    ¥10 on member day, Then the birthday promotion applies alone: 10 x 2.5 = 25 (not 10 x 2 x 2.5 = 50)."""
    # Given
    rules = RULES.model_copy(update={"promotions": Promotions(member_day=8, member_day_multiplier=2000,
                                                               birthday_month_multiplier=2500)})
    # When
    breakdown = earn(1_000, rules, REGULAR, date(2026, 11, 8), birthday_month=11)
    # Then
    assert (breakdown.promotion, breakdown.promotion_multiplier, breakdown.points) == ("birthday_month", 2500, 25)


@pytest.mark.parametrize("multiplier", [0, 800, 1000])
def test_a_promotion_of_at_most_x1_never_applies(multiplier):
    """Given member day configured at x1 or less, When a member pays ¥10 on member day, Then no promotion is
    recorded and the points are not reduced: 10 points."""
    # Given
    rules = RULES.model_copy(update={"promotions": Promotions(member_day=8, member_day_multiplier=multiplier)})
    # When
    breakdown = earn(1_000, rules, REGULAR, date(2026, 11, 8), birthday_month=None)
    # Then
    assert (breakdown.promotion, breakdown.promotion_multiplier, breakdown.points) == (None, 1000, 10)


def test_a_zero_base_rate_earns_nothing_whatever_the_multipliers():
    """Given 0 points per yuan, When a diamond member pays ¥1,000 on member day, Then they earn 0 points."""
    # Given
    rules = RULES.model_copy(update={"points_per_yuan": 0})
    # When
    breakdown = earn(100_000, rules, DIAMOND, date(2026, 11, 8), birthday_month=11)
    # Then
    assert (breakdown.unrounded, breakdown.points) == ("0.0000", 0)


@given(amount=st.integers(0, 10_000_000_000), rate=st.integers(0, 100), tier=st.integers(0, 100_000),
       member_day=st.integers(0, 100_000), birthday=st.integers(0, 100_000), day=st.integers(1, 28))
def test_earned_points_are_the_floor_of_the_exact_product(amount, rate, tier, member_day, birthday, day):
    """Given any amount, rate, tier and promotion multipliers, When points are earned, Then they are the floor
    of yuan x rate x tier x (the highest promotion above x1, else x1), computed exactly."""
    # Given
    rules = PointsRules(points_per_yuan=rate, promotions=Promotions(
        member_day=8, member_day_multiplier=member_day, birthday_month_multiplier=birthday))
    on = date(2026, 5, day)
    # When
    breakdown = earn(amount, rules, _tier(tier), on, birthday_month=5)
    # Then: every day of May is in the birthday month; the 8th is also member day
    active = [birthday] + ([member_day] if day == 8 else [])
    promo = max([m for m in active if m > 1000], default=1000)
    exact = Fraction(amount, 100) * rate * Fraction(tier, 1000) * Fraction(promo, 1000)
    assert breakdown.points == exact.numerator // exact.denominator
    assert breakdown.promotion_multiplier == promo


# ==== debt =====================================================================================================
@pytest.mark.parametrize("points,owed,left,paid", [
    (50, 0, 50, 0),  # no debt: all 50 go to the new lot
    (50, 50, 0, 50),  # exactly the debt: nothing left for a lot
    (0, 30, 0, 0),  # nothing earned pays nothing
    (120, 45, 75, 45),  # 120 - 45 = 75 left
])
def test_new_points_pay_the_debt_first(points, owed, left, paid):
    """Given a member owing points, When they earn, Then the debt is paid first and the rest makes the lot."""
    # Given / When
    result = pay_debt(points, owed)
    # Then
    assert result == (left, paid)


@given(points=st.integers(0, 10**9), owed=st.integers(0, 10**9))
def test_paying_debt_neither_creates_nor_loses_points(points, owed):
    """Given any earning and debt, When the debt is paid, Then left + paid == earned, the debt is never
    overpaid, and points are left for a lot only once the debt is cleared."""
    # Given / When
    left, paid = pay_debt(points, owed)
    # Then
    assert left + paid == points
    assert 0 <= paid <= owed
    assert left == 0 or paid == owed


# ==== refunds: how many points ==================================================================================
def test_three_equal_refunds_reverse_the_order_points_exactly():
    """Given an order of ¥100.50 that earned 301 points, When it is refunded in three parts of ¥33.50,
    Then the parts reverse 100, 100 and 101 points (the cumulative floor), 301 in total."""
    # Given
    points, amount = 301, 10_050
    # When
    first = points_to_reverse(points, amount, refunded_before=0, refunding=3_350, reversed_before=0)
    second = points_to_reverse(points, amount, refunded_before=3_350, refunding=3_350, reversed_before=first)
    third = points_to_reverse(points, amount, refunded_before=6_700, refunding=3_350, reversed_before=first + second)
    # Then: floor(301 x 3350 / 10050) = floor(100.33) = 100; floor(301 x 6700 / 10050) = floor(200.67) = 200
    assert (first, second, third) == (100, 200 - 100, 301 - 200)


def test_a_tiny_refund_reverses_nothing_until_the_total_crosses_a_point():
    """Given 301 points earned on ¥100.50, When 1 fen is refunded, Then floor(301 x 1 / 10050) = 0 points are
    reversed; and a later refund of 33 fen (34 in all) reverses floor(301 x 34 / 10050) = floor(1.018) = 1."""
    # Given / When
    first = points_to_reverse(301, 10_050, refunded_before=0, refunding=1, reversed_before=0)
    second = points_to_reverse(301, 10_050, refunded_before=1, refunding=33, reversed_before=0)
    # Then
    assert (first, second) == (0, 1)


@pytest.mark.parametrize("points,amount", [(0, 10_000), (0, 0), (7, 0)])
def test_nothing_is_reversed_for_an_order_without_points_or_amount(points, amount):
    """Given an order that earned nothing (or was free), When it is refunded, Then no points are reversed."""
    # Given / When
    reversed_now = points_to_reverse(points, amount, refunded_before=0, refunding=amount, reversed_before=0)
    # Then
    assert reversed_now == 0


@st.composite
def _order_and_refund_split(draw):
    amount = draw(st.integers(1, 1_000_000))
    points = draw(st.integers(0, 100_000))
    parts: list[int] = []
    left = amount
    while left and len(parts) < 8:
        part = draw(st.integers(1, left))
        parts.append(part)
        left -= part
    if left:
        parts.append(left)
    return points, amount, parts


@given(_order_and_refund_split())
def test_refunds_in_any_split_never_overshoot_and_add_up_to_the_points_earned(case):
    """Given an order refunded in any integer split of its amount, When each part is reversed, Then every
    part is >= 0, the running total is floor(points x refunded / amount), and the whole reverses exactly
    what the order earned."""
    # Given
    points, amount, parts = case
    refunded = reversed_total = 0
    for part in parts:
        # When
        step = points_to_reverse(points, amount, refunded, part, reversed_total)
        refunded += part
        reversed_total += step
        # Then
        assert step >= 0
        assert reversed_total == math.floor(Fraction(points * refunded, amount))
    assert (refunded, reversed_total) == (amount, points)


# ==== refunds: where the points come from ======================================================================
@pytest.mark.parametrize("lot,points,removed,forgiven,owed", [
    (LotState(remaining=40), 30, 30, 0, 0),  # enough unspent: 30 removed
    (LotState(remaining=40), 50, 40, 0, 10),  # 60 of 100 spent: 40 removed, 50 - 40 = 10 owed
    (LotState(remaining=0), 25, 0, 0, 25),  # all spent: everything owed
    (LotState(remaining=0, expired=40, expired_flag=True), 100, 0, 40, 60),  # 40 expired: forgiven; 60 owed
    (LotState(remaining=0, expired=40, forgiven=25, expired_flag=True), 30, 0, 15, 15),  # 40 - 25 = 15 forgivable
    (LotState(remaining=0, expired=40, forgiven=40, expired_flag=True), 30, 0, 0, 30),  # nothing left to forgive
    (LotState(remaining=40), 0, 0, 0, 0),  # nothing to reverse
])
def test_reversal_takes_unspent_then_forgives_expired_then_owes(lot, points, removed, forgiven, owed):
    """Given an earn lot in some state, When points are reversed from it, Then unspent points go first,
    then points that expired are forgiven (not clawed back), and only the rest becomes debt."""
    # Given / When
    result = reverse(lot, points)
    # Then
    assert (result.removed, result.forgiven, result.owed) == (removed, forgiven, owed)
    assert result.total == points


def test_a_reversal_total_adds_its_three_parts():
    """Given a reversal of 3 removed, 5 forgiven and 7 owed, When its total is read, Then it is 3 + 5 + 7 = 15."""
    assert Reversal(removed=3, forgiven=5, owed=7).total == 15


def test_a_refund_of_an_expired_lot_does_not_depend_on_whether_the_sweep_ran():
    """Given an unspent lot of 100 points whose last day was yesterday, When the whole order is refunded
    before the daily expiry sweep reaches the lot, Then no debt arises, exactly as when the refund comes
    after the sweep (remaining 100 -> expired 100, all forgiven)."""
    # Given
    not_yet_swept = LotState(remaining=100, expired=0, forgiven=0, expired_flag=True)
    swept = LotState(remaining=0, expired=100, forgiven=0, expired_flag=True)
    # When
    before_sweep, after_sweep = reverse(not_yet_swept, 100), reverse(swept, 100)
    # Then
    assert after_sweep.owed == 0
    assert before_sweep.owed == 0  # today: Reversal(removed=0, forgiven=0, owed=100)


_lot_states = st.builds(
    lambda remaining, expired, forgiven_share, is_expired: LotState(
        remaining=0 if is_expired else remaining, expired=expired if is_expired else 0,
        forgiven=(expired * forgiven_share) // 100 if is_expired else 0, expired_flag=is_expired),
    st.integers(0, 10_000), st.integers(0, 10_000), st.integers(0, 100), st.booleans())


@given(lot=_lot_states, points=st.integers(0, 20_000))
def test_every_reversed_point_is_removed_owed_or_forgiven_exactly_once(lot, points):
    """Given any swept lot state, When any number of points is reversed, Then removed + owed + forgiven ==
    reversed, no part is negative, none exceeds what the lot holds, and debt arises only when nothing
    unspent or forgivable is left."""
    # Given / When
    result = reverse(lot, points)
    # Then
    assert result.removed + result.owed + result.forgiven == points
    assert min(result.removed, result.owed, result.forgiven) >= 0
    assert result.removed <= lot.remaining
    assert result.forgiven <= lot.expired - lot.forgiven
    if result.owed:
        assert result.removed == lot.remaining and result.forgiven == lot.expired - lot.forgiven


@given(original=st.integers(1, 5_000), spent_share=st.integers(0, 100), expire=st.booleans(),
       refunds=st.lists(st.integers(0, 2_000), min_size=1, max_size=6))
def test_successive_refunds_never_take_or_forgive_a_point_twice(original, spent_share, expire, refunds):
    """Given a lot of which some points were spent (and the rest possibly expired), When several refunds each
    reverse points and the lot is updated as the refund service does, Then across all refunds at most the
    unspent points are removed, at most the expired points are forgiven, and the rest is owed."""
    # Given
    spent = original * spent_share // 100
    unspent = original - spent
    lot = LotState(remaining=0, expired=unspent, expired_flag=True) if expire else LotState(remaining=unspent)
    removed = forgiven = owed = 0
    for points in refunds:
        # When
        step = reverse(lot, points)
        lot = LotState(remaining=lot.remaining - step.removed, expired=lot.expired,
                       forgiven=lot.forgiven + step.forgiven, expired_flag=lot.expired_flag)
        removed, forgiven, owed = removed + step.removed, forgiven + step.forgiven, owed + step.owed
    # Then
    total = sum(refunds)
    assert removed + forgiven + owed == total
    assert removed == (0 if expire else min(total, unspent))
    assert forgiven == (min(total, unspent) if expire else 0)
    assert owed == total - min(total, unspent)


# ==== spending =================================================================================================
TODAY = date(2026, 11, 23)


def _plan(lots: list[LotView], points: int) -> list[tuple[str, int]]:
    return [(lot.lot_id, take) for lot, take in plan_consumption(lots, points, TODAY)]


def test_a_lot_is_spendable_on_its_last_day_but_not_the_day_after():
    """Given a lot whose last day is today and one whose last day was yesterday, When 15 points are spent,
    Then they come from today's lot only."""
    # Given
    lots = [LotView("yesterday", TODAY - timedelta(days=1), 100), LotView("today", TODAY, 20)]
    # When / Then
    assert _plan(lots, 15) == [("today", 15)]


def test_lots_expiring_the_same_day_are_spent_in_lot_id_order_and_empty_lots_are_skipped():
    """Given two lots with the same last day (ids sort by credit time) and an empty lot expiring sooner,
    When 35 points are spent, Then the empty lot is not in the plan and the lot with the smaller id goes
    first: 30 from "01A", 35 - 30 = 5 from "01B"."""
    # Given
    lots = [LotView("01B", date(2027, 1, 31), 30), LotView("00Z", date(2026, 12, 31), 0),
            LotView("01A", date(2027, 1, 31), 30)]
    # When / Then
    assert _plan(lots, 35) == [("01A", 30), ("01B", 5)]


def test_spending_exactly_the_first_lot_leaves_the_others_out_of_the_plan():
    """Given lots of 30 and 50 points, When exactly 30 are spent, Then only the soonest lot appears."""
    # Given
    lots = [LotView("later", date(2027, 6, 30), 50), LotView("sooner", date(2027, 1, 31), 30)]
    # When / Then
    assert _plan(lots, 30) == [("sooner", 30)]
    assert _plan(lots, 0) == []


def test_not_enough_valid_points_reports_what_is_available():
    """Given valid lots of 30 + 50 = 80 points and an expired lot of 999, When 100 are asked for, Then
    InsufficientPoints says 80 are available of the 100 wanted."""
    # Given
    lots = [LotView("a", date(2027, 1, 31), 30), LotView("b", date(2027, 6, 30), 50),
            LotView("old", date(2026, 10, 31), 999)]
    # When
    with pytest.raises(InsufficientPoints) as err:
        plan_consumption(lots, 100, TODAY)
    # Then
    assert (err.value.available, err.value.wanted, str(err.value)) == (80, 100, "80 < 100")


_lot_views = st.lists(
    st.builds(LotView, lot_id=st.text("0123456789ABC", min_size=1, max_size=4),
              expires_on=st.dates(TODAY - timedelta(days=40), TODAY + timedelta(days=400)),
              remaining=st.integers(0, 500)),
    max_size=8, unique_by=lambda lot: lot.lot_id)


@given(lots=_lot_views, points=st.integers(0, 3_000))
def test_a_plan_takes_exactly_the_points_soonest_expiring_first(lots, points):
    """Given any lots, When points are spent, Then either the plan takes exactly the points asked for from
    valid lots (never more than a lot holds, soonest-expiring first, every lot but the last emptied, no
    valid lot skipped for a later one), or InsufficientPoints reports the valid total."""
    # Given
    valid = [lot for lot in lots if lot.expires_on >= TODAY and lot.remaining > 0]
    usable = sum(lot.remaining for lot in valid)
    # When
    if points > usable:
        with pytest.raises(InsufficientPoints) as err:
            plan_consumption(lots, points, TODAY)
        # Then
        assert (err.value.available, err.value.wanted) == (usable, points)
        return
    plan = plan_consumption(lots, points, TODAY)
    # Then
    assert sum(take for _, take in plan) == points
    assert all(lot in valid and 0 < take <= lot.remaining for lot, take in plan)
    assert all(take == lot.remaining for lot, take in plan[:-1])
    order = [(lot.expires_on, lot.lot_id) for lot, _ in plan]
    assert order == sorted(order) and len(set(order)) == len(order)
    if plan:
        last = order[-1]
        assert all(lot in [p for p, _ in plan] for lot in valid if (lot.expires_on, lot.lot_id) < last)


# ==== where open lots start ====================================================================================
def _lot(lot_id: str, at: datetime, remaining: int) -> Lot:
    return Lot(lot_id=lot_id, member_id="m", at=at, source="order", ref=lot_id, earned_on=at.date(),
               expires_on=at.date() + timedelta(days=365), original=100, remaining=remaining)


def test_with_no_lots_at_all_the_bound_is_the_change_itself():
    """Given a member with no lots, When a change at `now` records where open lots start, Then it is `now`."""
    now = datetime(2026, 11, 23, 10, tzinfo=SH)
    assert oldest_open([], now) == now


def test_the_open_lots_bound_compares_instants_not_wall_clock_text():
    """Given an open lot credited at 08:30 Shanghai (00:30 UTC) and one at 01:00 UTC (09:00 Shanghai), When the
    bound is computed, Then it is the Shanghai lot's time, the earlier instant."""
    # Given
    shanghai = datetime(2026, 11, 23, 8, 30, tzinfo=SH)
    utc = datetime(2026, 11, 23, 1, 0, tzinfo=UTC)
    # When
    bound = oldest_open([_lot("utc", utc, 5), _lot("sh", shanghai, 5)], now=datetime(2026, 11, 24, tzinfo=SH))
    # Then
    assert bound == shanghai
    assert earliest(utc, None, shanghai) == shanghai
    assert earliest() is None


# ==== expiry dates =============================================================================================
@pytest.mark.parametrize("mode,months,earned,last_day", [
    ("months_after", 3, date(2026, 11, 15), date(2027, 2, 14)),  # Feb 15 2027 minus a day, across the year
    ("months_after", 12, date(2028, 2, 29), date(2029, 2, 27)),  # Feb 29 -> Feb 28 (clamped) minus a day
    ("months_after", 120, date(2026, 5, 10), date(2036, 5, 9)),  # the longest rule: ten years
    ("end_of_month", 12, date(2027, 2, 10), date(2028, 2, 29)),  # into a leap February
    ("end_of_month", 1, date(2026, 1, 31), date(2026, 2, 28)),  # earned on a month's last day
    ("end_of_month", 2, date(2026, 12, 1), date(2027, 2, 28)),  # across the year
])
def test_more_expiry_dates(mode, months, earned, last_day):
    """Given an expiry rule, When a lot is earned on a day, Then its last spendable day is as worked out."""
    # Given
    rules = PointsRules(expiry=ExpiryRule(mode=mode, months=months))
    # When / Then
    assert expires_on(earned, rules) == last_day


@given(earned=st.dates(date(2000, 1, 1), date(2090, 12, 31)), months=st.integers(1, 120))
def test_a_lot_lasts_the_configured_months(earned, months):
    """Given any earning day and rule length, When the last day is computed, Then end_of_month gives the last
    day of the Nth month after the earning month, months_after gives the day before the same day N months
    later (clamped to that month's length), and either way the lot is spendable on the day it was earned."""
    # Given
    index = earned.year * 12 + earned.month - 1 + months
    year, month = divmod(index, 12)
    month += 1
    month_days = calendar.monthrange(year, month)[1]
    # When
    end_of_month = expires_on(earned, PointsRules(expiry=ExpiryRule(mode="end_of_month", months=months)))
    months_after = expires_on(earned, PointsRules(expiry=ExpiryRule(mode="months_after", months=months)))
    # Then
    assert end_of_month == date(year, month, month_days)
    assert months_after == date(year, month, min(earned.day, month_days)) - timedelta(days=1)
    assert earned <= months_after <= end_of_month


@pytest.mark.parametrize("day,months,expected", [
    (date(2026, 1, 31), -1, date(2025, 12, 31)),  # back across the year
    (date(2026, 3, 31), -1, date(2026, 2, 28)),  # clamped
    (date(2026, 3, 15), -15, date(2024, 12, 15)),  # 15 months back
    (date(2026, 11, 30), 0, date(2026, 11, 30)),
])
def test_month_arithmetic_goes_both_ways_and_clamps(day, months, expected):
    """Given a day, When months are added (or taken), Then the day of month is kept unless the month is shorter."""
    assert add_months(day, months) == expected


# ==== tier progress windows ====================================================================================
def test_the_rolling_window_is_the_twelve_months_ending_with_this_month():
    """Given a day in March 2026, When the window is listed, Then it runs April 2025 .. March 2026, in order."""
    assert rolling_months(date(2026, 3, 15)) == [
        "2025-04", "2025-05", "2025-06", "2025-07", "2025-08", "2025-09",
        "2025-10", "2025-11", "2025-12", "2026-01", "2026-02", "2026-03"]


def test_a_january_window_reaches_back_into_the_previous_year():
    """Given buckets around a January, When the rolling total is taken on 31 Jan 2026, Then Feb 2025 .. Jan 2026
    count (20 + 300 + 4,000 = 4,320) and Jan 2025 and the future Feb 2026 do not."""
    # Given
    buckets = {"2025-01": 1_000, "2025-02": 20, "2025-12": 300, "2026-01": 4_000, "2026-02": 50_000}
    # When / Then
    assert rolling_total(buckets, date(2026, 1, 31)) == 4_320


def test_refunds_recorded_as_negative_buckets_lower_the_total():
    """Given ¥100 spent in March and a refund of ¥25 booked in April, When the total is taken in April,
    Then it is 10,000 - 2,500 = 7,500 fen; with no buckets it is 0."""
    assert rolling_total({"2026-03": 10_000, "2026-04": -2_500}, date(2026, 4, 30)) == 7_500
    assert rolling_total({}, date(2026, 4, 30)) == 0


def test_pruning_keeps_the_window_plus_one_month():
    """Given buckets from Oct 2025 to Nov 2026, When pruned on 23 Nov 2026, Then Nov 2025 .. Nov 2026 stay
    (13 months: next month's re-evaluation still needs Dec 2025) and Oct 2025 goes."""
    # Given
    buckets = {"2025-10": 1, "2025-11": 2, "2025-12": 3, "2026-06": 4, "2026-11": 5}
    # When / Then
    assert prune_buckets(buckets, date(2026, 11, 23)) == {"2025-11": 2, "2025-12": 3, "2026-06": 4, "2026-11": 5}


@given(buckets=st.dictionaries(st.tuples(st.integers(2020, 2030), st.integers(1, 12)), st.integers(-10**6, 10**6),
                               max_size=30),
       day=st.dates(date(2021, 1, 1), date(2029, 12, 31)))
def test_the_rolling_total_sums_exactly_the_last_twelve_months(buckets, day):
    """Given any monthly buckets, When the rolling total is taken on any day, Then it is the sum of the buckets
    whose month is 0..11 months before the day's month."""
    # Given
    keyed = {f"{y:04d}-{m:02d}": v for (y, m), v in buckets.items()}
    now = day.year * 12 + day.month
    expected = sum(v for (y, m), v in buckets.items() if 0 <= now - (y * 12 + m) <= 11)
    # When / Then
    assert rolling_total(keyed, day) == expected


@pytest.mark.parametrize("day,key", [(date(2026, 1, 5), "2026-01"), (date(2026, 12, 31), "2026-12"),
                                     (date(999, 9, 9), "0999-09")])
def test_month_keys_are_zero_padded_so_they_sort_as_text(day, key):
    """Given a day, When its month key is taken, Then it is YYYY-MM with zero padding."""
    assert month_key(day) == key


# ==== merges ===================================================================================================
T1 = datetime(2026, 9, 1, 12, tzinfo=SH)
T2 = datetime(2026, 10, 2, 12, tzinfo=SH)
T3 = datetime(2026, 11, 1, 12, tzinfo=SH)
T4 = datetime(2026, 11, 20, 12, tzinfo=SH)


def test_a_merge_adds_every_counter_and_keeps_the_higher_tier_and_base_separately():
    """Given a survivor (gold, base regular) and a duplicate (silver, base silver) with overlapping months,
    stores and categories, When they are folded, Then counters add up, dates take the extremes, sets unite,
    the higher tier and the higher base are kept independently, and the survivor's version goes up by one."""
    # Given
    target = MemberState(
        member_id="A", version=3, available=10, owed=2, tier="gold", tier_base="regular",
        spend_months={"2026-10": 5_000, "2026-11": 1_000}, orders_months={"2026-10": 1, "2026-11": 1}, order_count=2,
        lifetime_spend=6_000, lifetime_earned=60, first_purchase_at=T2, last_purchase_at=T4,
        stores=frozenset({"sh-001"}), categories={"coffee": 6_000}, open_lots_from=T2,
        reviewed_on=date(2026, 11, 1), tier_since=T2)
    source = MemberState(
        member_id="B", version=9, available=5, owed=0, tier="silver", tier_base="silver",
        spend_months={"2026-09": 700, "2026-11": 2_000}, orders_months={"2026-09": 1, "2026-11": 1}, order_count=2,
        lifetime_spend=2_700, lifetime_earned=40, first_purchase_at=T1, last_purchase_at=T3,
        stores=frozenset({"sh-001", "sh-002"}), categories={"coffee": 700, "tea": 2_000}, open_lots_from=T1)
    # When
    folded = fold_states(target, source, DEFAULT_TIERS.index)
    # Then
    assert (folded.member_id, folded.version) == ("A", 3 + 1)
    assert (folded.available, folded.owed, folded.balance) == (10 + 5, 2 + 0, 15 - 2)
    assert (folded.tier, folded.tier_base) == ("gold", "silver")  # the tier from A, the base from B
    assert folded.spend_months == {"2026-09": 700, "2026-10": 5_000, "2026-11": 1_000 + 2_000}
    assert folded.orders_months == {"2026-09": 1, "2026-10": 1, "2026-11": 2}
    assert (folded.order_count, folded.lifetime_spend, folded.lifetime_earned) == (4, 6_000 + 2_700, 60 + 40)
    assert (folded.first_purchase_at, folded.last_purchase_at) == (T1, T4)
    assert folded.stores == {"sh-001", "sh-002"}
    assert folded.categories == {"coffee": 6_000 + 700, "tea": 2_000}
    assert folded.open_lots_from == T1  # the duplicate's lots are older: redemptions must read from there
    assert (folded.reviewed_on, folded.tier_since) == (date(2026, 11, 1), T2)  # the survivor's own record


def test_a_merge_with_a_member_who_never_bought_keeps_the_other_dates():
    """Given a survivor who never bought and a duplicate who did, When folded, Then the duplicate's first and
    last purchase and open-lots bound are kept; folding two who never bought leaves them empty."""
    # Given
    never = MemberState(member_id="A")
    bought = MemberState(member_id="B", first_purchase_at=T1, last_purchase_at=T2, open_lots_from=T1)
    # When
    folded = fold_states(never, bought, DEFAULT_TIERS.index)
    empty = fold_states(never, MemberState(member_id="C"), DEFAULT_TIERS.index)
    # Then
    assert (folded.first_purchase_at, folded.last_purchase_at, folded.open_lots_from) == (T1, T2, T1)
    assert (empty.first_purchase_at, empty.last_purchase_at, empty.open_lots_from) == (None, None, None)


def test_a_tier_removed_from_the_program_ranks_lowest_in_a_merge():
    """Given a survivor on a tier no longer in the program and a silver duplicate, When folded, Then silver is
    kept; two members on equal ranks keep the survivor's tier."""
    # Given
    removed = MemberState(member_id="A", tier="platinum")
    # When / Then
    assert fold_states(removed, MemberState(member_id="B", tier="silver"), DEFAULT_TIERS.index).tier == "silver"
    assert fold_states(removed, MemberState(member_id="B", tier=None), DEFAULT_TIERS.index).tier == "platinum"


@given(a=st.tuples(st.integers(0, 10**6), st.integers(0, 10**6)), b=st.tuples(st.integers(0, 10**6),
                                                                                st.integers(0, 10**6)))
def test_a_merge_keeps_the_sum_of_both_balances(a, b):
    """Given any two members' available and owed points, When merged, Then the survivor's balance is the sum."""
    # Given
    target = MemberState(member_id="A", available=a[0], owed=a[1])
    source = MemberState(member_id="B", available=b[0], owed=b[1])
    # When
    folded = fold_states(target, source, DEFAULT_TIERS.index)
    # Then
    assert folded.balance == (a[0] - a[1]) + (b[0] - b[1])
