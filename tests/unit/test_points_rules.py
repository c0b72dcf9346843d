from datetime import date, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chalicelib.domain import clock
from chalicelib.domain.ledger import Lot, MemberState
from chalicelib.domain.points import (
    InsufficientPoints,
    LotState,
    LotView,
    earliest,
    earn,
    expires_on,
    fold_states,
    oldest_open,
    pay_debt,
    plan_consumption,
    points_to_reverse,
    reverse,
    rolling_total,
)
from chalicelib.domain.program import DEFAULT_TIERS, ExpiryRule, PointsRules, Promotions

RULES = PointsRules(promotions=Promotions(member_day=8, member_day_multiplier=2000, birthday_month_multiplier=1500))
REGULAR, GOLD = DEFAULT_TIERS.tiers[0], DEFAULT_TIERS.tiers[2]


def test_base_rate_times_tier_times_highest_promotion_rounded_once():
    assert earn(12_345, RULES, REGULAR, date(2026, 11, 7), None).points == 123
    # gold x1.5 on member day x2 (birthday month x1.5 also active: the highest wins, they do not stack)
    b = earn(10_050, RULES, GOLD, date(2026, 11, 8), birthday_month=11)
    assert (b.promotion, b.promotion_multiplier, b.points) == ("member_day", 2000, 301)  # 100.5*1.5*2 = 301.5
    assert b.unrounded == "301.5000"
    assert earn(10_000, RULES, REGULAR, date(2026, 3, 9), birthday_month=3).promotion == "birthday_month"


@pytest.mark.parametrize("mode,months,earned,last_day", [
    ("months_after", 12, date(2026, 1, 31), date(2027, 1, 30)),
    ("months_after", 1, date(2026, 1, 31), date(2026, 2, 27)),  # clamped to February's end, minus a day
    ("end_of_month", 12, date(2026, 11, 23), date(2027, 11, 30)),
    ("end_of_month", 1, date(2026, 1, 15), date(2026, 2, 28)),
])
def test_expiry_dates(mode, months, earned, last_day):
    assert expires_on(earned, PointsRules(expiry=ExpiryRule(mode=mode, months=months))) == last_day


def test_consumption_takes_soonest_expiring_valid_lots_first():
    lots = [LotView("b", date(2027, 3, 1), 50), LotView("a", date(2026, 12, 1), 30),
            LotView("old", date(2026, 1, 1), 999), LotView("c", date(2027, 3, 1), 10)]
    plan = plan_consumption(lots, 70, today=date(2026, 11, 23))
    assert [(lot.lot_id, take) for lot, take in plan] == [("a", 30), ("b", 40)]
    with pytest.raises(InsufficientPoints):
        plan_consumption(lots, 91, today=date(2026, 11, 23))  # the expired lot does not count


@given(points=st.integers(0, 10_000), amount=st.integers(1, 1_000_000), cuts=st.lists(st.floats(0, 1), max_size=6))
def test_reversal_in_any_split_is_exact(points, amount, cuts):
    marks = sorted({int(amount * c) for c in cuts} | {amount})
    refunded = reversed_total = 0
    for mark in marks:
        step = mark - refunded
        if step <= 0:
            continue
        reversed_total += points_to_reverse(points, amount, refunded, step, reversed_total)
        refunded = mark
    assert reversed_total == points


def test_reverse_removes_unspent_then_forgives_expired_then_owes():
    assert reverse(LotState(remaining=20), 100).__dict__ == {"removed": 20, "forgiven": 0, "owed": 80}
    expired = LotState(remaining=0, expired=30, expired_flag=True)
    assert reverse(expired, 100).__dict__ == {"removed": 0, "forgiven": 30, "owed": 70}
    assert reverse(LotState(remaining=0, expired=30, forgiven=30, expired_flag=True), 10).owed == 10


def test_debt_is_paid_first_and_rolling_window_is_twelve_months():
    assert pay_debt(50, 80) == (0, 50) and pay_debt(50, 20) == (30, 20)
    buckets = {"2025-11": 5, "2025-12": 7, "2026-11": 11}
    assert rolling_total(buckets, date(2026, 11, 23)) == 18  # Dec 2025 .. Nov 2026


def test_merge_keeps_the_higher_tier_and_adds_everything():
    a = MemberState(member_id="A", version=3, available=10, owed=2, tier="silver", spend_months={"2026-11": 5})
    b = MemberState(member_id="B", version=9, available=5, owed=1, tier="gold", spend_months={"2026-11": 7})
    folded = fold_states(a, b, DEFAULT_TIERS.index)
    assert (folded.member_id, folded.version, folded.available, folded.owed, folded.tier) == ("A", 4, 15, 3, "gold")
    assert folded.spend_months == {"2026-11": 12}


@pytest.mark.parametrize("field,value", [("points_per_yuan", "2"), ("points_per_yuan", 2.0),
                                         ("expiring_soon_days", True)])
def test_program_numbers_are_strict_integers(field, value):
    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        PointsRules.model_validate({field: value})


def _lot(lot_id: str, at: datetime, remaining: int) -> Lot:
    return Lot(lot_id=lot_id, member_id="m", at=at, source="order", ref=lot_id, earned_on=at.date(),
               expires_on=at.date(), original=10, remaining=remaining)


def test_the_open_lots_bound_is_the_oldest_lot_with_points_else_the_change_itself():
    t0 = datetime(2026, 1, 1, 9, tzinfo=clock.BUSINESS_TZ)
    now = t0 + timedelta(days=40)
    lots = [_lot("a", t0, 0), _lot("b", t0 + timedelta(days=3), 5), _lot("c", t0 + timedelta(days=1), 2)]
    assert oldest_open(lots, now) == t0 + timedelta(days=1)  # a is spent: not a reason to read from t0
    assert oldest_open([_lot("a", t0, 0)], now) == now  # nothing open: later credits lower it again
    assert earliest(None, now, t0) == t0 and earliest(None, None) is None
