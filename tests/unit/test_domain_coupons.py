"""The coupon rules (chalicelib/domain/coupons.py), each worked out by hand; properties checked against an
independent recomputation (exact fractions), never against the code under test."""
from __future__ import annotations

from datetime import datetime, timedelta
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from chalicelib.domain import clock
from chalicelib.domain.coupons import (
    CODE_ALPHABET,
    CODE_LENGTH,
    Basket,
    Coupon,
    CouponState,
    Refusal,
    TemplateInput,
    Terms,
    check_use,
    discount_for,
    looks_like_code,
    new_code,
    normalize_code,
    split,
)

TZ = clock.BUSINESS_TZ
NOON = datetime(2026, 12, 1, 12, 0, tzinfo=TZ)


def terms(**kw) -> Terms:
    base = {"name": "t", "kind": "cash", "value": 500}
    base.update(kw)
    return Terms.model_validate(base)


def coupon(t: Terms | None = None, **kw) -> Coupon:
    base = dict(code=new_code(), template_id="t", member_id="M", terms=t or terms(),
                valid_from=NOON - timedelta(days=1), valid_to=NOON + timedelta(days=1), state=CouponState.AVAILABLE,
                source="issue:i", issued_at=NOON)
    base.update(kw)
    return Coupon(**base)


def use(c: Coupon, amount: int = 10_000, basket: Basket | None = None, store: str = "sh-001",
        region: str | None = "east", owner: bool = True, now: datetime = NOON) -> int:
    return check_use(c, owner_matches=owner, store_id=store, region_id=region, basket=basket, order_amount=amount,
                     now=now)


def refusal(c: Coupon, **kw) -> str:
    with pytest.raises(Refusal) as why:
        use(c, **kw)
    return why.value.code


# ---- codes
def test_codes_are_long_unambiguous_and_normalised():
    codes = {new_code() for _ in range(2_000)}
    assert len(codes) == 2_000
    assert all(len(c) == CODE_LENGTH and looks_like_code(c) for c in codes)
    assert not set(CODE_ALPHABET) & set("01OI")
    assert CODE_LENGTH * __import__("math").log2(len(CODE_ALPHABET)) >= 60
    assert normalize_code("abcd-efgh 2345") == "ABCDEFGH2345"


# ---- the discount
@pytest.mark.parametrize(("kind", "extra", "left", "expected"), [
    ("cash", {"value": 500}, 10_000, 500),
    ("cash", {"value": 500}, 300, 300),  # never more than is left to pay
    ("threshold", {"value": 3_000, "min_spend": 20_000}, 25_000, 3_000),
    ("discount", {"pct": 85, "cap": 2_000}, 10_000, 1_500),  # pay 85 %: 10_000 - 8_500
    ("discount", {"pct": 85, "cap": 2_000}, 20_000, 2_000),  # 3_000 off, capped
    ("discount", {"pct": 85, "cap": 9_999}, 999, 150),  # 999 - floor(849.15) = 999 - 849
    ("gift", {"gift": {"name": "小蛋糕", "cost": 800}}, 10_000, 0),
])
def test_discount_by_kind(kind, extra, left, expected):
    assert discount_for(terms(kind=kind, **({"value": None} if kind != "cash" and "value" not in extra else {}),
                              **extra), left) == expected


def test_terms_must_fit_their_kind():
    with pytest.raises(ValidationError):
        terms(kind="discount", value=None, pct=85)  # no cap
    with pytest.raises(ValidationError):
        terms(kind="threshold", value=3_000, min_spend=1_000)  # min_spend below the value
    with pytest.raises(ValidationError):
        terms(kind="cash", value=500, pct=80)
    with pytest.raises(ValidationError):
        terms(store_scope="stores")  # lists nothing


def test_n_days_validity_ends_at_business_midnight():
    t = TemplateInput(name="t", kind="cash", value=1, valid_days=7)
    issued = datetime(2026, 12, 1, 1, 30, tzinfo=TZ)  # 1 Dec, Shanghai
    start, end = t.window(issued)
    assert start == issued and end == datetime(2026, 12, 8, 23, 59, 59, 999000, tzinfo=TZ)
    late_utc = datetime(2026, 11, 30, 17, 0, tzinfo=clock.BUSINESS_TZ).astimezone(clock.BUSINESS_TZ)
    assert t.window(late_utc)[1].date().isoformat() == "2026-12-07"
    with pytest.raises(ValidationError):
        TemplateInput(name="t", kind="cash", value=1)  # neither a window nor days


# ---- the counter, in the order a cashier explains
def test_refusals_in_order():
    assert refusal(coupon(), owner=False) == "not_your_coupon"
    assert refusal(coupon(state=CouponState.USED)) == "already_redeemed"
    assert refusal(coupon(), now=NOON + timedelta(days=2)) == "coupon_expired"
    assert refusal(coupon(valid_from=NOON + timedelta(hours=1))) == "not_yet_valid"
    assert refusal(coupon(terms(store_scope="stores", store_ids=["gz-001"]))) == "store_not_in_scope"
    assert refusal(coupon(terms(store_scope="regions", region_ids=["south"]))) == "store_not_in_scope"
    assert use(coupon(terms(store_scope="regions", region_ids=["east"]))) == 500
    assert refusal(coupon(terms(kind="threshold", value=3_000, min_spend=20_000)), amount=19_999) == \
        "below_minimum_spend"


def test_stacking_rules_and_amount_left():
    held = Basket(order_id="o", order_amount=10_000, coupons=[{"code": "A", "discount": 500, "stackable": True}])
    assert use(coupon(terms(stackable=True, kind="discount", value=None, pct=85, cap=5_000)), basket=held) == \
        9_500 - 9_500 * 85 // 100  # computed on what is left after the first
    assert refusal(coupon(terms(stackable=False)), basket=held) == "not_stackable"
    lone = Basket(order_id="o", order_amount=10_000, coupons=[{"code": "A", "discount": 500, "stackable": False}])
    assert refusal(coupon(terms(stackable=True)), basket=lone) == "not_stackable"
    assert refusal(coupon(terms(stackable=True)), basket=held, amount=9_000) == "order_amount_changed"
    assert use(coupon(terms(stackable=True)), basket=Basket(order_id="o", order_amount=10_000)) == 500


def test_expired_by_time_before_the_sweep():
    c = coupon()
    assert c.state_at(NOON + timedelta(days=2)) is CouponState.EXPIRED
    assert c.record(NOON).state is CouponState.AVAILABLE


# ---- the split over the lines
def test_split_by_largest_remainder():
    assert split(3_000, [12_500, 12_500]) == [1_500, 1_500]
    assert split(3, [1, 1, 1]) == [1, 1, 1]  # the whole order off: every line to 0
    assert split(10, [3, 3, 3]) == [4, 3, 3]  # 3.33 each: the spare fen to the earliest
    assert split(7, [50, 30, 20]) == [4, 2, 1]  # 3.5, 2.1, 1.4 -> 3, 2, 1 + the largest remainder (.5)
    assert split(0, [5, 5]) == [0, 0]


@given(st.lists(st.integers(0, 100_000), min_size=1, max_size=30), st.data())
def test_split_adds_up_and_stays_within_each_line(amounts, data):
    total = sum(amounts)
    discount = data.draw(st.integers(0, total))
    shares = split(discount, amounts)
    assert sum(shares) == discount
    for share, amount in zip(shares, amounts, strict=True):
        assert 0 <= share <= amount
        assert abs(Fraction(share) - Fraction(discount * amount, total or 1)) < 1  # within a fen of exact


def test_an_orders_sales_count_once_per_template():
    from chalicelib.domain.pool import carries_sales

    same = {"t1": ["BBBB", "AAAA"], "t2": ["CCCC"]}
    assert [carries_sales(same, t, c) for t, c in (("t1", "BBBB"), ("t1", "AAAA"), ("t2", "CCCC"))] == \
        [False, True, True]
