"""The loyalty program's configuration (chalicelib/domain/program.py): tier programs and points rules.

HQ edits both through the API, so validation is the only guard between a typo and every member's tier.
test_points_rules.py already checks that points_per_yuan / expiring_soon_days reject "2", 2.0 and True.
"""
from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from chalicelib.domain.program import DEFAULT_TIERS, Benefits, PointsRules, Tier, TierProgram


def _program(*thresholds: int, basis: str = "spend") -> TierProgram:
    return TierProgram(basis=basis, tiers=[Tier(tier_id=f"t{i}", name=f"T{i}", threshold=t)
                                           for i, t in enumerate(thresholds)])


def _tiers(*thresholds: int) -> list[dict]:
    return [{"tier_id": f"t{i}", "name": f"T{i}", "threshold": t} for i, t in enumerate(thresholds)]


# ==== which tier a member qualifies for ========================================================================
@pytest.mark.parametrize("spend_fen,tier_id", [
    (0, "regular"),
    (-5_000, "regular"),  # refunds booked after the window's purchases can make the window negative
    (99_999, "regular"),  # ¥999.99: one fen short of silver
    (100_000, "silver"),  # exactly ¥1,000
    (299_999, "silver"),
    (300_000, "gold"),
    (799_999, "gold"),
    (800_000, "diamond"),
    (10**12, "diamond"),  # beyond the top tier stays on it
])
def test_the_default_program_qualifies_at_each_threshold_inclusive(spend_fen, tier_id):
    """Given the default program (0 / ¥1,000 / ¥3,000 / ¥8,000), When a rolling spend is evaluated,
    Then the member qualifies for the highest tier whose threshold the spend reaches."""
    # Given / When
    tier = DEFAULT_TIERS.qualified(spend_fen)
    # Then
    assert tier.tier_id == tier_id


@pytest.mark.parametrize("orders,tier_id", [(0, "t0"), (4, "t0"), (5, "t1"), (19, "t1"), (20, "t2"), (21, "t2")])
def test_an_order_count_program_qualifies_on_the_count(orders, tier_id):
    """Given a program on order counts (0 / 5 / 20 orders), When a count is evaluated, Then the tier follows it."""
    # Given
    program = _program(0, 5, 20, basis="orders")
    # When / Then
    assert program.qualified(orders).tier_id == tier_id


def test_a_single_tier_program_qualifies_everyone():
    """Given a program with one tier at 0, When any progress is evaluated, Then that tier is the answer."""
    program = _program(0)
    assert [program.qualified(p).tier_id for p in (-1, 0, 10**9)] == ["t0", "t0", "t0"]


@given(thresholds=st.sets(st.integers(1, 10**7), max_size=19), progress=st.integers(-10**3, 2 * 10**7))
def test_the_qualified_tier_is_reached_and_the_next_one_is_not(thresholds, progress):
    """Given any valid program, When any progress is evaluated, Then the tier's threshold is reached (or it is
    the lowest tier) and the next tier's threshold, if any, is not."""
    # Given
    program = _program(0, *sorted(thresholds))
    # When
    tier = program.qualified(progress)
    # Then
    position = [t.tier_id for t in program.tiers].index(tier.tier_id)
    assert tier.threshold <= progress or position == 0
    if position + 1 < len(program.tiers):
        assert program.tiers[position + 1].threshold > progress


# ==== looking tiers up ========================================================================================
@pytest.mark.parametrize("tier_id,position,name", [
    ("regular", 0, "普通"), ("silver", 1, "白银"), ("gold", 2, "黄金"), ("diamond", 3, "钻石"),
    (None, 0, "普通"),  # a member who never bought holds the lowest tier
    ("platinum", 0, "普通"),  # a tier removed from the program counts as the lowest
    ("GOLD", 0, "普通"),  # ids are exact: no case folding
])
def test_index_and_get_find_a_tier_or_fall_back_to_the_lowest(tier_id, position, name):
    """Given the default program, When a tier id is looked up, Then its position and tier are found, and an
    unknown or missing id falls back to the lowest tier."""
    # Given / When / Then
    assert DEFAULT_TIERS.index(tier_id) == position
    assert DEFAULT_TIERS.get(tier_id).name == name


def test_the_default_program_is_itself_a_valid_program():
    """Given the shipped default program, When it is validated again from its JSON form, Then it is accepted
    unchanged, with thresholds 0 < 100,000 < 300,000 < 800,000 and multipliers x1 / x1.2 / x1.5 / x2."""
    # Given
    document = DEFAULT_TIERS.model_dump_json()
    # When
    again = TierProgram.model_validate_json(document)
    # Then
    assert again == DEFAULT_TIERS
    assert [t.threshold for t in again.tiers] == [0, 100_000, 300_000, 800_000]
    assert [t.benefits.points_multiplier for t in again.tiers] == [1000, 1200, 1500, 2000]
    assert [t.benefits.discount_permille for t in again.tiers] == [1000, 980, 950, 900]


# ==== validating a program ====================================================================================
@pytest.mark.parametrize("tiers,message", [
    (_tiers(100, 200), "the first tier must have threshold 0"),
    (_tiers(0, 100, 100), "tier thresholds must strictly increase"),
    (_tiers(0, 300, 200), "tier thresholds must strictly increase"),
    (_tiers(0, 0), "tier thresholds must strictly increase"),
    ([{"tier_id": "a", "name": "A", "threshold": 0}, {"tier_id": "a", "name": "B", "threshold": 5}],
     "tier ids must be unique"),
    ([], "at least 1 item"),
    (_tiers(*range(21)), "at most 20 items"),
])
def test_a_program_breaking_the_ordering_rules_is_rejected(tiers, message):
    """Given tiers out of order, duplicated, missing or too many, When HQ submits the program, Then it is
    rejected with the rule it breaks."""
    # Given
    document = {"basis": "spend", "tiers": tiers}
    # When / Then
    with pytest.raises(ValidationError, match=message):
        TierProgram.model_validate(document)


def test_twenty_tiers_starting_at_zero_are_accepted():
    """Given 20 tiers with thresholds 0..19, When validated, Then the program is accepted (20 is the limit)."""
    program = TierProgram.model_validate({"tiers": _tiers(*range(20))})
    assert (len(program.tiers), program.basis) == (20, "spend")


@pytest.mark.parametrize("change", [
    {"tier_id": "Gold"},  # ids are lower case
    {"tier_id": "gold tier"},
    {"tier_id": ""},
    {"tier_id": "x" * 31},  # at most 30 characters
    {"name": ""},
    {"name": "名" * 31},  # at most 30 characters
    {"threshold": -1},
    {"threshold": "100"},  # strict integers: no text
    {"threshold": 100.0},  # nor floats
    {"threshold": True},  # nor booleans
    {"colour": "gold"},  # unknown fields are refused, not ignored
])
def test_a_malformed_tier_is_rejected(change):
    """Given a program whose second tier has one malformed field, When validated, Then it is rejected."""
    # Given
    tiers = _tiers(0, 100)
    tiers[1] = {**tiers[1], **change}
    # When / Then
    with pytest.raises(ValidationError):
        TierProgram.model_validate({"tiers": tiers})


@pytest.mark.parametrize("document", [
    {"basis": "visits", "tiers": _tiers(0)},
    {"basis": "orders", "tiers": _tiers(0), "review": "monthly"},
])
def test_an_unknown_basis_or_program_field_is_rejected(document):
    """Given a program on an unknown basis or with an unknown field, When validated, Then it is rejected."""
    with pytest.raises(ValidationError):
        TierProgram.model_validate(document)


@pytest.mark.parametrize("benefits", [
    {"discount_permille": -1},
    {"discount_permille": 100_001},
    {"points_multiplier": 1500.0},
    {"points_multiplier": "1500"},
    {"birthday_benefit": "x" * 201},
    {"perks": [""]},
    {"perks": ["x" * 101]},
    {"perks": [f"perk {i}" for i in range(21)]},
    {"free_delivery": "sometimes"},
    {"cashback": 5},
])
def test_malformed_benefits_are_rejected(benefits):
    """Given a tier whose benefits break a bound, When validated, Then it is rejected."""
    with pytest.raises(ValidationError):
        Benefits.model_validate(benefits)


def test_benefits_at_their_bounds_are_accepted():
    """Given benefits at the edges (free, x100, 200-character benefit, 20 perks of 100), When validated,
    Then they are accepted as given."""
    # Given
    document = {"discount_permille": 0, "points_multiplier": 100_000, "birthday_benefit": "x" * 200,
                "perks": ["p" * 100] * 20}
    # When
    benefits = Benefits.model_validate(document)
    # Then
    assert (benefits.discount_permille, benefits.points_multiplier, len(benefits.perks)) == (0, 100_000, 20)


def test_benefits_default_to_no_advantage():
    """Given a tier without benefits, When read, Then it pays full price (1000‰) and earns x1, nothing extra."""
    benefits = Tier(tier_id="plain", name="Plain", threshold=0).benefits
    assert benefits.model_dump() == {"discount_permille": 1000, "points_multiplier": 1000, "birthday_benefit": None,
                                     "free_delivery": False, "perks": []}


# ==== points rules ============================================================================================
def test_points_rules_defaults():
    """Given no configuration, When the rules are read, Then: 1 point per ¥1, points last until the end of the
    12th month after earning, member day on the 8th at x2, birthday month x1.5, warned 30 days ahead."""
    rules = PointsRules()
    assert rules.model_dump() == {
        "points_per_yuan": 1, "expiry": {"mode": "end_of_month", "months": 12},
        "promotions": {"member_day": 8, "member_day_multiplier": 2000, "birthday_month_multiplier": 1500},
        "expiring_soon_days": 30}


@pytest.mark.parametrize("document", [
    {"points_per_yuan": 0},
    {"points_per_yuan": 100},
    {"expiry": {"mode": "months_after", "months": 1}},
    {"expiry": {"mode": "end_of_month", "months": 120}},
    {"promotions": {"member_day": None}},
    {"promotions": {"member_day": 1}},
    {"promotions": {"member_day": 28}},
    {"promotions": {"member_day_multiplier": 0, "birthday_month_multiplier": 100_000}},
    {"expiring_soon_days": 1},
    {"expiring_soon_days": 365},
])
def test_points_rules_at_their_bounds_are_accepted(document):
    """Given rules at the edge of each bound, When validated, Then they are accepted."""
    PointsRules.model_validate(document)


@pytest.mark.parametrize("document", [
    {"points_per_yuan": -1},
    {"points_per_yuan": 101},
    {"expiry": {"mode": "weekly"}},
    {"expiry": {"months": 0}},
    {"expiry": {"months": 121}},
    {"expiry": {"months": "12"}},
    {"expiry": {"months": 12, "grace_days": 3}},
    {"promotions": {"member_day": 0}},
    {"promotions": {"member_day": 29}},  # not every month has a 29th: member day would skip February
    {"promotions": {"member_day": 31}},
    {"promotions": {"member_day": 8.0}},
    {"promotions": {"member_day_multiplier": -1}},
    {"promotions": {"birthday_month_multiplier": 100_001}},
    {"promotions": {"birthday_month_multiplier": 1.5}},  # permille integers, never a float factor
    {"promotions": {"stacking": True}},
    {"expiring_soon_days": 0},
    {"expiring_soon_days": 366},
    {"points_expire": False},
])
def test_points_rules_out_of_bounds_are_rejected(document):
    """Given rules with one value out of bounds, of the wrong type or unknown, When validated, Then rejected."""
    with pytest.raises(ValidationError):
        PointsRules.model_validate(document)
