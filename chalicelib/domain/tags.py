"""Member tags: HQ's rules as data, the pure evaluator the nightly job runs for every member, and staff's
manual tags.

A rule names a tag and up to 10 conditions on what the nightly pass knows of a member (`MemberFacts`); the
member gets the tag when every condition holds. Rules are data (`PUT /tag-rules`), checked here once and
compiled once per rule list, so evaluating a member is a few attribute reads and comparisons per rule.

Examples (`EXAMPLE_RULES`, also in the OpenAPI document; never set, the rule list is empty: categories are the
brand's own words, so no category rule can be a default):
  健康饮食  category_share of category 轻食 >= 600 (at least 60 % of the member's spend is in that category)
  价格敏感  coupon_order_share >= 500 and order_count >= 3 (half their orders used a coupon, over 3+ orders)
  沉睡大客  segment in [重要保持, 重要挽留] and recency_days >= 90
"""
from __future__ import annotations

import operator
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    StrictInt,
    StrictStr,
    ValidationInfo,
    field_validator,
)

from .members import _BIDI_CONTROLS, _INVISIBLE
from .segments import ALL_SEGMENTS
from .segments import NO_PURCHASE as NO_PURCHASE  # re-exported: the segment a rule may name for "never bought"
from .segments import SEGMENTS as SEGMENTS

# The eight classic RFM segments and the members who never bought (domain/segments: one list for both).
SEGMENT_NAMES = ALL_SEGMENTS

MAX_RULES = 100
MAX_CONDITIONS = 10
MAX_MANUAL_TAGS = 50  # per member
TAG_MAX_CHARS = 20
PERMILLE = 1000

NUMERIC_FIELDS = ("category_share", "coupon_order_share", "monetary", "frequency", "recency_days", "order_count",
                  "lifetime_spend")
TEXT_FIELDS = ("tier", "segment")
SHARE_FIELDS = frozenset({"category_share", "coupon_order_share"})  # permille, 0..1000
NULLABLE_FIELDS = frozenset({"recency_days", "tier"})  # None (never bought / no tier) satisfies no condition
ConditionField = Literal["category_share", "coupon_order_share", "monetary", "frequency", "recency_days",
                         "order_count", "lifetime_spend", "tier", "segment"]
Op = Literal["gte", "lte", "eq", "in"]
_TIER_ID_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_-")  # domain/program.Tier.tier_id


# ---- the tag text ---------------------------------------------------------------------------------------------
def clean_tag(value: str) -> str:
    """A tag as shown and stored: NFC, trimmed, visible text, no control characters (as names, see
    domain/members), at most 20 characters. No '%' or '/': a tag is a path segment of DELETE
    /members/{id}/tags/{tag}, which must decode to exactly one tag whatever decoded it before us."""
    value = unicodedata.normalize("NFC", value).strip()
    if any(unicodedata.category(c) == "Cc" or c in _BIDI_CONTROLS for c in value):
        raise ValueError("tag must not contain control characters")
    if not value or all(unicodedata.category(c) in _INVISIBLE for c in value):
        raise ValueError("tag must contain visible text")
    if "%" in value or "/" in value:
        raise ValueError("tag must not contain '%' or '/'")
    if len(value) > TAG_MAX_CHARS:
        raise ValueError(f"tag must be at most {TAG_MAX_CHARS} characters")
    return value


Tag = Annotated[str, Field(min_length=1, max_length=TAG_MAX_CHARS,
                           description="1-20 characters of visible text; no control characters, '%' or '/'",
                           examples=["健康饮食"]),
                AfterValidator(clean_tag)]


@dataclass(frozen=True)
class TagChange:
    """What a manual change found: `changed` (written, with its audit entry), `held` (an add: there already; a
    remove: not there; nothing written), or `full` (an add refused: the member holds 50 manual tags already).
    `tags`: the member's manual tags after it, sorted."""

    outcome: Literal["changed", "held", "full"]
    tags: tuple[str, ...]


class ManualTag(BaseModel):
    """POST /members/{member_id}/tags: a tag staff give a member by hand (at most 50 per member)."""

    model_config = ConfigDict(extra="forbid")
    tag: Tag


# ---- rules ------------------------------------------------------------------------------------------------------
Number = Annotated[StrictInt, Field(ge=0, le=10**13)]
Text = Annotated[StrictStr, Field(min_length=1, max_length=50)]


class TagCondition(BaseModel):
    """One test of a member's facts. Numbers for the numeric fields (shares in permille 0..1000, money in fen,
    recency in days), text for `tier` (a tier id) and `segment` (an RFM segment name or no_purchase);
    gte/lte only on numbers; `in` takes a list (1..50 values). A member with no purchase has no recency and
    one with no tier no tier: conditions on them do not hold for that member."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    field: ConditionField = Field(description=(
        "category_share: permille of the member's spend in `category`; coupon_order_share: permille of the "
        "member's orders that used a coupon; monetary: net spend in the 12-month window (fen); frequency: orders "
        "in the window; recency_days: days since the last purchase; order_count: orders ever; lifetime_spend: "
        "fen ever; tier: tier id; segment: one of " + ", ".join(SEGMENT_NAMES)))
    op: Op
    category: str | None = Field(default=None, min_length=1, max_length=50, validate_default=True,
                                 description="category_share only: the order lines' category")
    value: Number | Text | Annotated[list[Number], Field(min_length=1, max_length=50)] | \
        Annotated[list[Text], Field(min_length=1, max_length=50)]

    @field_validator("op")
    @classmethod
    def _op_fits_field(cls, op: str, info: ValidationInfo) -> str:
        if info.data.get("field") in TEXT_FIELDS and op in ("gte", "lte"):
            raise ValueError("tier and segment take eq or in")
        return op

    @field_validator("category")
    @classmethod
    def _category_for_shares(cls, category: str | None, info: ValidationInfo) -> str | None:
        field = info.data.get("field")
        if field == "category_share" and category is None:
            raise ValueError("category_share needs the category")
        if field is not None and field != "category_share" and category is not None:
            raise ValueError("only category_share takes a category")
        return category

    @field_validator("value")
    @classmethod
    def _value_fits(cls, value: Any, info: ValidationInfo) -> Any:
        field, op = info.data.get("field"), info.data.get("op")
        if field is None or op is None:
            return value  # refused already; nothing to say about the value
        values = value if isinstance(value, list) else [value]
        if (op == "in") != isinstance(value, list):
            raise ValueError("`in` takes a list of values; gte, lte and eq one value")
        if field in TEXT_FIELDS:
            if not all(isinstance(v, str) for v in values):
                raise ValueError(f"{field} is compared with text")
            if field == "segment" and not set(values) <= set(SEGMENT_NAMES):
                raise ValueError("segment is one of " + ", ".join(SEGMENT_NAMES))
            if field == "tier" and not all(len(v) <= 30 and set(v) <= _TIER_ID_CHARS for v in values):
                raise ValueError("a tier id is 1-30 of a-z, 0-9, _ and -")
        else:
            if not all(isinstance(v, int) for v in values):
                raise ValueError(f"{field} is compared with a whole number")
            if field in SHARE_FIELDS and max(values) > PERMILLE:
                raise ValueError(f"{field} is in permille: 0..1000")
        return value


class TagRule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    tag: Tag
    all: list[TagCondition] = Field(min_length=1, max_length=MAX_CONDITIONS,
                                    description="every condition must hold")
    description: str | None = Field(default=None, max_length=200)


EXAMPLE_RULES: list[dict[str, Any]] = [
    {"tag": "健康饮食", "description": "六成以上消费在轻食",
     "all": [{"field": "category_share", "category": "轻食", "op": "gte", "value": 600}]},
    {"tag": "价格敏感", "description": "至少 3 单，一半以上用了券",
     "all": [{"field": "coupon_order_share", "op": "gte", "value": 500},
             {"field": "order_count", "op": "gte", "value": 3}]},
    {"tag": "沉睡大客", "all": [{"field": "segment", "op": "in", "value": ["重要保持", "重要挽留"]},
                              {"field": "recency_days", "op": "gte", "value": 90}]},
]


class TagRules(BaseModel):
    """HQ's rule list: up to 100 rules, each tag once. Never set: no rules (see EXAMPLE_RULES)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"rules": EXAMPLE_RULES}]})
    rules: list[TagRule] = Field(max_length=MAX_RULES)
    _compiled: tuple[tuple[str, tuple[Callable[[MemberFacts], bool], ...]], ...] | None = PrivateAttr(default=None)

    @field_validator("rules")
    @classmethod
    def _tags_unique(cls, rules: list[TagRule]) -> list[TagRule]:
        tags = [r.tag for r in rules]
        if len(set(tags)) != len(tags):
            raise ValueError("each tag may have one rule")
        return rules


class TagRulesInput(TagRules):
    """PUT /tag-rules: the whole list, replacing the one read at `version`."""

    version: StrictInt | None = Field(default=None, ge=0, description="the version read; a newer one is a 409")


# ---- evaluation -------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class MemberFacts:
    """What the nightly pass knows of one member (shares in permille, money in fen)."""

    segment: str
    recency_days: int | None  # None: never bought
    frequency: int
    monetary: int
    order_count: int
    lifetime_spend: int
    tier: str | None
    category_shares: Mapping[str, int]
    coupon_order_share: int


Predicate = Callable[[MemberFacts], bool]
_COMPARE = {"gte": operator.le, "lte": operator.ge, "eq": operator.eq}  # partial(le, v)(x) is v <= x: x >= v


def _predicate(c: TagCondition) -> Predicate:
    if c.op == "in":
        test: Callable[[Any], bool] = frozenset(c.value).__contains__  # type: ignore[arg-type]
    else:
        test = partial(_COMPARE[c.op], c.value)
    if c.field == "category_share":
        shares_of, category = operator.attrgetter("category_shares"), c.category
        return lambda f: test(shares_of(f).get(category, 0))
    get = operator.attrgetter(c.field)
    if c.field in NULLABLE_FIELDS:
        return lambda f: (x := get(f)) is not None and test(x)
    return lambda f: test(get(f))


def compile_rules(rules: TagRules) -> tuple[tuple[str, tuple[Predicate, ...]], ...]:
    """Each rule as (tag, predicates), in tag order (so evaluation's answer comes out sorted). Cached on the
    rule list: the nightly pass compiles once and evaluates millions of members."""
    if rules._compiled is None:
        rules._compiled = tuple(sorted((r.tag, tuple(_predicate(c) for c in r.all)) for r in rules.rules))
    return rules._compiled


def evaluate(rules: TagRules, facts: MemberFacts) -> tuple[str, ...]:
    """The tags whose every condition holds for this member, sorted (tags are unique per rule list)."""
    return tuple(tag for tag, tests in compile_rules(rules) if all(t(facts) for t in tests))
