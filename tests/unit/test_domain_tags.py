"""Tag rules and the nightly evaluator (chalicelib/domain/tags.py): every field and op against facts written by
hand, what a member with no purchase or no tier satisfies, the rule and tag validation, and the evaluator
against an independent reading of the rules (hypothesis)."""
from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from chalicelib.domain.tags import (
    EXAMPLE_RULES,
    MAX_RULES,
    NO_PURCHASE,
    SEGMENT_NAMES,
    SEGMENTS,
    ManualTag,
    MemberFacts,
    TagCondition,
    TagRule,
    TagRules,
    TagRulesInput,
    evaluate,
)

FACTS = MemberFacts(segment="重要价值", recency_days=12, frequency=6, monetary=88_000, order_count=20,
                    lifetime_spend=300_000, tier="gold", category_shares={"轻食": 650, "咖啡": 350},
                    coupon_order_share=400)
NEVER_BOUGHT = MemberFacts(segment=NO_PURCHASE, recency_days=None, frequency=0, monetary=0, order_count=0,
                           lifetime_spend=0, tier=None, category_shares={}, coupon_order_share=0)


def strict(model: Any, data: Any) -> Any:
    """As the API reads a body: JSON text in strict mode."""
    return model.model_validate_json(json.dumps(data, ensure_ascii=False), strict=True)


def rules(*rule_list: dict[str, Any]) -> TagRules:
    return strict(TagRules, {"rules": list(rule_list)})


def one(condition: dict[str, Any], tag: str = "T") -> TagRules:
    return rules({"tag": tag, "all": [condition]})


def holds(condition: dict[str, Any], facts: MemberFacts = FACTS) -> bool:
    return evaluate(one(condition), facts) == ("T",)


# ---- each field and op ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("field", "value"), [("monetary", 88_000), ("frequency", 6), ("recency_days", 12),
                                           ("order_count", 20), ("lifetime_spend", 300_000),
                                           ("coupon_order_share", 400)])
def test_numeric_fields_compare_gte_lte_eq_and_in_at_the_boundary(field, value):
    # FACTS holds exactly `value`: gte, lte and eq hold at it; one above it only lte, one below only gte.
    def check(op: str, v: Any) -> bool:
        return holds({"field": field, "op": op, "value": v})

    assert (check("gte", value), check("lte", value), check("eq", value)) == (True, True, True)
    assert (check("gte", value + 1), check("lte", value + 1), check("eq", value + 1)) == (False, True, False)
    assert (check("gte", value - 1), check("lte", value - 1), check("eq", value - 1)) == (True, False, False)
    assert check("in", [value - 1, value]) and not check("in", [value + 1, value + 2])


def test_category_share_reads_the_named_category_and_counts_an_unbought_one_as_zero():
    assert holds({"field": "category_share", "category": "轻食", "op": "gte", "value": 600})
    assert not holds({"field": "category_share", "category": "咖啡", "op": "gte", "value": 600})
    assert holds({"field": "category_share", "category": "咖啡", "op": "eq", "value": 350})
    assert holds({"field": "category_share", "category": "茶饮", "op": "eq", "value": 0})
    assert holds({"field": "category_share", "category": "茶饮", "op": "lte", "value": 100})
    assert not holds({"field": "category_share", "category": "茶饮", "op": "gte", "value": 1})
    assert holds({"field": "category_share", "category": "轻食", "op": "in", "value": [650, 1000]})


def test_tier_and_segment_take_eq_and_in():
    assert holds({"field": "tier", "op": "eq", "value": "gold"})
    assert not holds({"field": "tier", "op": "eq", "value": "silver"})
    assert holds({"field": "tier", "op": "in", "value": ["silver", "gold"]})
    assert holds({"field": "segment", "op": "eq", "value": "重要价值"})
    assert not holds({"field": "segment", "op": "eq", "value": "一般价值"})
    assert holds({"field": "segment", "op": "in", "value": ["一般挽留", "重要价值"]})
    assert holds({"field": "segment", "op": "eq", "value": NO_PURCHASE}, NEVER_BOUGHT)


def test_no_recency_and_no_tier_satisfy_no_condition_on_them():
    for op, value in (("gte", 0), ("lte", 10**6), ("eq", 0), ("in", [0, 1, 2])):
        assert not holds({"field": "recency_days", "op": op, "value": value}, NEVER_BOUGHT), op
    assert not holds({"field": "tier", "op": "in", "value": ["gold", "silver", "bronze"]}, NEVER_BOUGHT)
    # zeros are values, though: a member who never bought has spent 0 and holds no category
    assert holds({"field": "monetary", "op": "lte", "value": 0}, NEVER_BOUGHT)
    assert holds({"field": "category_share", "category": "轻食", "op": "eq", "value": 0}, NEVER_BOUGHT)
    assert holds({"field": "recency_days", "op": "eq", "value": 0}, replace(NEVER_BOUGHT, recency_days=0))


def test_every_condition_of_a_rule_must_hold_and_answers_are_sorted_and_unique():
    r = rules(
        {"tag": "甲", "all": [{"field": "monetary", "op": "gte", "value": 1},
                             {"field": "tier", "op": "eq", "value": "gold"}]},
        {"tag": "乙", "all": [{"field": "monetary", "op": "gte", "value": 1},
                             {"field": "tier", "op": "eq", "value": "silver"}]},
        {"tag": "B", "all": [{"field": "frequency", "op": "gte", "value": 1}]},
        {"tag": "A", "all": [{"field": "order_count", "op": "gte", "value": 1}]},
    )
    assert evaluate(r, FACTS) == ("A", "B", "甲")
    assert evaluate(r, NEVER_BOUGHT) == ()
    assert evaluate(TagRules(rules=[]), FACTS) == ()


def test_the_documented_examples_are_valid_and_tag_whom_they_describe():
    r = strict(TagRules, {"rules": EXAMPLE_RULES})
    healthy = replace(FACTS, category_shares={"轻食": 600}, coupon_order_share=0)
    thrifty = replace(FACTS, category_shares={}, coupon_order_share=500, order_count=3)
    sleeping = replace(FACTS, category_shares={}, segment="重要挽留", recency_days=90)
    assert evaluate(r, healthy) == ("健康饮食",)
    assert evaluate(r, thrifty) == ("价格敏感",)
    assert evaluate(r, replace(thrifty, order_count=2)) == ()
    assert evaluate(r, sleeping) == ("沉睡大客",)
    assert evaluate(r, replace(sleeping, recency_days=None)) == ()


def test_the_rules_survive_a_json_round_trip_unchanged():
    r = strict(TagRules, {"rules": EXAMPLE_RULES})
    again = TagRules.model_validate_json(r.model_dump_json(exclude_none=True))
    assert again == r and evaluate(again, FACTS) == evaluate(r, FACTS)


def test_segment_names_are_the_eight_classic_ones_and_no_purchase():
    assert len(SEGMENTS) == 8 == len(set(SEGMENTS))
    assert SEGMENT_NAMES == (*SEGMENTS, NO_PURCHASE)


# ---- validation -------------------------------------------------------------------------------------------------
def _locs(err: ValidationError) -> list[tuple[Any, ...]]:
    return [e["loc"] for e in err.errors()]


@pytest.mark.parametrize(("condition", "loc"), [
    pytest.param({"field": "visits", "op": "gte", "value": 1}, ("field",), id="unknown field"),
    pytest.param({"field": "monetary", "op": "gt", "value": 1}, ("op",), id="unknown op"),
    pytest.param({"field": "monetary", "op": "gte"}, ("value",), id="no value"),
    pytest.param({"field": "monetary", "op": "gte", "value": 1, "unit": "yuan"}, ("unit",), id="unknown key"),
    pytest.param({"field": "monetary", "op": "gte", "value": "1000"}, ("value",), id="number as text"),
    pytest.param({"field": "monetary", "op": "gte", "value": 1.5}, ("value",), id="fraction"),
    pytest.param({"field": "monetary", "op": "gte", "value": True}, ("value",), id="boolean"),
    pytest.param({"field": "monetary", "op": "gte", "value": -1}, ("value",), id="negative"),
    pytest.param({"field": "monetary", "op": "gte", "value": [1]}, ("value",), id="gte with a list"),
    pytest.param({"field": "monetary", "op": "in", "value": 1}, ("value",), id="in with one value"),
    pytest.param({"field": "monetary", "op": "in", "value": []}, ("value",), id="in with nothing"),
    pytest.param({"field": "monetary", "op": "in", "value": list(range(51))}, ("value",), id="in with 51"),
    pytest.param({"field": "monetary", "op": "in", "value": [1, "2"]}, ("value",), id="mixed list"),
    pytest.param({"field": "coupon_order_share", "op": "gte", "value": 1001}, ("value",), id="share over 1000"),
    pytest.param({"field": "category_share", "category": "轻食", "op": "in", "value": [500, 1001]}, ("value",),
                 id="category share over 1000"),
    pytest.param({"field": "category_share", "op": "gte", "value": 600}, ("category",), id="share without category"),
    pytest.param({"field": "category_share", "category": "", "op": "gte", "value": 600}, ("category",),
                 id="empty category"),
    pytest.param({"field": "monetary", "category": "轻食", "op": "gte", "value": 1}, ("category",),
                 id="category on another field"),
    pytest.param({"field": "tier", "op": "gte", "value": "gold"}, ("op",), id="tier gte"),
    pytest.param({"field": "segment", "op": "lte", "value": "重要价值"}, ("op",), id="segment lte"),
    pytest.param({"field": "tier", "op": "eq", "value": 3}, ("value",), id="tier as a number"),
    pytest.param({"field": "tier", "op": "eq", "value": "Gold!"}, ("value",), id="not a tier id"),
    pytest.param({"field": "segment", "op": "eq", "value": "VIP"}, ("value",), id="unknown segment"),
    pytest.param({"field": "segment", "op": "in", "value": ["重要价值", "VIP"]}, ("value",), id="unknown in list"),
    pytest.param({"field": "recency_days", "op": "eq", "value": None}, ("value",), id="null value"),
])
def test_a_condition_that_does_not_fit_its_field_is_refused_naming_the_key(condition, loc):
    with pytest.raises(ValidationError) as err:
        strict(TagCondition, condition)
    assert any(found[:len(loc)] == loc for found in _locs(err.value)), _locs(err.value)


CONTROL_TAGS = ["健\x00康", "健\n康", "健\t康", "\x1b[31m红\x1b[0m", "健\x7f康", "健\x85康", "abc\u202egnp",
                "\u200b\u200b"]


@pytest.mark.parametrize("tag", ["", " ", "\u3000\u3000", "一" * 21, "a" * 21, *CONTROL_TAGS, "50%折扣", "母婴/亲子",
                                 " " + "一" * 20])
def test_a_tag_must_be_1_to_20_visible_characters_without_controls_percent_or_slash(tag):
    with pytest.raises(ValidationError) as err:
        strict(ManualTag, {"tag": tag})
    assert _locs(err.value) == [("tag",)]
    with pytest.raises(ValidationError):
        strict(TagRule, {"tag": tag, "all": [{"field": "frequency", "op": "gte", "value": 1}]})


@pytest.mark.parametrize(("given_tag", "stored"), [
    ("健康饮食", "健康饮食"), ("  VIP ", "VIP"), ("一" * 20, "一" * 20), ("👨‍👩‍👧 家庭", "👨‍👩‍👧 家庭"),
    ("e\u0301te\u0301", "\u00e9t\u00e9"),  # NFC: one tag, however it was typed
])
def test_a_tag_is_kept_trimmed_and_in_nfc(given_tag, stored):
    assert strict(ManualTag, {"tag": given_tag}).tag == stored


@pytest.mark.parametrize(("body", "loc"), [
    pytest.param({"tag": "X", "all": []}, ("all",), id="no conditions"),
    pytest.param({"tag": "X", "all": [{"field": "frequency", "op": "gte", "value": 1}] * 11}, ("all",),
                 id="11 conditions"),
    pytest.param({"tag": "X"}, ("all",), id="conditions missing"),
    pytest.param({"tag": "X", "all": [{"field": "frequency", "op": "gte", "value": 1}], "description": "d" * 201},
                 ("description",), id="long description"),
    pytest.param({"tag": "X", "any": []}, ("any",), id="unknown key"),
])
def test_a_rule_needs_1_to_10_conditions(body, loc):
    with pytest.raises(ValidationError) as err:
        strict(TagRule, body)
    assert any(found[:len(loc)] == loc for found in _locs(err.value)), _locs(err.value)


def test_a_rule_list_holds_each_tag_once_and_at_most_100_rules():
    rule = {"tag": "X", "all": [{"field": "frequency", "op": "gte", "value": 1}]}
    with pytest.raises(ValidationError) as err:
        strict(TagRules, {"rules": [rule, {**rule, "tag": " X"}]})  # the same tag once trimmed
    assert _locs(err.value) == [("rules",)]
    many = [{**rule, "tag": f"t{n}"} for n in range(MAX_RULES)]
    assert len(strict(TagRules, {"rules": many}).rules) == MAX_RULES
    with pytest.raises(ValidationError):
        strict(TagRules, {"rules": [*many, {**rule, "tag": "one more"}]})


@pytest.mark.parametrize(("version", "ok"), [(None, True), (0, True), (7, True), (-1, False), ("1", False),
                                             (True, False)])
def test_the_put_body_names_the_version_read_as_a_whole_number(version, ok):
    body: dict[str, Any] = {"rules": EXAMPLE_RULES} | ({} if version is None else {"version": version})
    if ok:
        assert strict(TagRulesInput, body).version == version
    else:
        with pytest.raises(ValidationError) as err:
            strict(TagRulesInput, body)
        assert _locs(err.value)[0][0] == "version"


# ---- against an independent reading ---------------------------------------------------------------------------
CATEGORIES = ("轻食", "咖啡", "茶饮")
TIERS = ("bronze", "silver", "gold")
NUMERIC = ("monetary", "frequency", "recency_days", "order_count", "lifetime_spend", "coupon_order_share",
           "category_share")

facts_strategy = st.builds(
    MemberFacts, segment=st.sampled_from(SEGMENT_NAMES), recency_days=st.none() | st.integers(0, 400),
    frequency=st.integers(0, 30), monetary=st.integers(0, 200_000), order_count=st.integers(0, 60),
    lifetime_spend=st.integers(0, 900_000), tier=st.none() | st.sampled_from(TIERS),
    category_shares=st.dictionaries(st.sampled_from(CATEGORIES), st.integers(0, 1000)),
    coupon_order_share=st.integers(0, 1000))


@st.composite
def conditions(draw: Any) -> dict[str, Any]:
    field = draw(st.sampled_from((*NUMERIC, "tier", "segment")))
    if field in ("tier", "segment"):
        pool = TIERS if field == "tier" else SEGMENT_NAMES
        if draw(st.booleans()):
            return {"field": field, "op": "eq", "value": draw(st.sampled_from(pool))}
        return {"field": field, "op": "in", "value": draw(st.lists(st.sampled_from(pool), min_size=1, max_size=4))}
    top = 1000 if field.endswith("share") else 400
    out: dict[str, Any] = {"field": field, "op": draw(st.sampled_from(("gte", "lte", "eq", "in")))}
    out["value"] = draw(st.lists(st.integers(0, top), min_size=1, max_size=4)) if out["op"] == "in" \
        else draw(st.integers(0, top))
    if field == "category_share":
        out["category"] = draw(st.sampled_from(CATEGORIES))
    return out


def reference(rule_list: list[dict[str, Any]], f: MemberFacts) -> tuple[str, ...]:
    """The rules read plainly, condition by condition, without the evaluator's compiled tests."""
    def value_of(c: dict[str, Any]) -> Any:
        if c["field"] == "category_share":
            return f.category_shares.get(c["category"], 0)
        return getattr(f, c["field"])

    def ok(c: dict[str, Any]) -> bool:
        x = value_of(c)
        if x is None:
            return False
        return {"gte": lambda: x >= c["value"], "lte": lambda: x <= c["value"], "eq": lambda: x == c["value"],
                "in": lambda: x in c["value"]}[c["op"]]()

    return tuple(sorted(r["tag"] for r in rule_list if all(ok(c) for c in r["all"])))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.lists(conditions(), min_size=1, max_size=4), max_size=6), st.lists(facts_strategy, max_size=5))
def test_the_evaluator_agrees_with_a_plain_reading_of_the_rules(condition_lists, members):
    rule_list = [{"tag": f"标签{n}", "all": cs} for n, cs in enumerate(condition_lists)]
    compiled = strict(TagRules, {"rules": rule_list})
    for f in members:
        assert evaluate(compiled, f) == reference(rule_list, f)
