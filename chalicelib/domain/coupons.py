"""Coupons: templates, the terms a coupon keeps, and the counter rules (validity, scope, stacking, the
discount and its split over the lines). Pure: every rule here is tested without AWS.

A coupon keeps the terms it was issued with (a copy, `Terms`): editing or deactivating its template
changes future issues only."""
from __future__ import annotations

import secrets
import unicodedata
from datetime import date, datetime, time, timedelta
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, StrictBool, StrictInt, model_validator

from . import clock
from .members import MemberId, StoreId
from .orders import DocId, Fen
from .segments import ALL_SEGMENTS

# Readable aloud and printable as a QR: no 0/O, 1/I (nor L, U: "L" reads as 1 in some fonts, U as V).
CODE_ALPHABET = "23456789ABCDEFGHJKMNPQRSTVWXYZ"
CODE_LENGTH = 14  # 30^14 ≈ 2^68.7: at least 60 random bits, as the brand's fraud review asks
MAX_ISSUE = 1000

TemplateId = Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,40}$")]


class CouponKind(StrEnum):
    CASH = "cash"  # 无门槛: value off
    THRESHOLD = "threshold"  # 满减: value off from min_spend
    DISCOUNT = "discount"  # 折扣: pay pct %, at most cap off
    GIFT = "gift"  # a named item


class CouponState(StrEnum):
    AVAILABLE = "available"
    USED = "used"
    EXPIRED = "expired"


def new_code() -> str:
    return "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))


def normalize_code(text: str) -> str:
    """What a cashier types or reads out: any case, grouped with spaces or dashes."""
    return "".join(ch for ch in text.upper() if ch not in " -")


def looks_like_code(code: str) -> bool:
    return len(code) == CODE_LENGTH and all(ch in CODE_ALPHABET for ch in code)


class Gift(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=60)
    cost: Fen = Field(description="what the gift costs the brand, in fen (settlement)")


class Terms(BaseModel):
    """What a coupon promises: copied from its template at issue and never changed after."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=60)
    kind: CouponKind
    value: Fen | None = Field(default=None, description="cash and threshold: fen off")
    pct: StrictInt | None = Field(default=None, ge=1, le=99, description="discount: the share paid, 85 = pay 85 %")
    cap: Fen | None = Field(default=None, description="discount: at most this many fen off")
    gift: Gift | None = None
    min_spend: Fen = Field(default=0, description="the amount left to pay must reach this, in fen")
    store_scope: Literal["all", "regions", "stores"] = "all"
    region_ids: list[StoreId] = Field(default=[], max_length=100)
    store_ids: list[StoreId] = Field(default=[], max_length=500)
    stackable: StrictBool = False

    @model_validator(mode="after")
    def _kind_fields(self) -> Terms:
        need = {CouponKind.CASH: ("value",), CouponKind.THRESHOLD: ("value",),
                CouponKind.DISCOUNT: ("pct", "cap"), CouponKind.GIFT: ("gift",)}[self.kind]
        allowed = set(need)
        for name in ("value", "pct", "cap", "gift"):
            if name in allowed and getattr(self, name) is None:
                raise ValueError(f"a {self.kind.value} coupon needs {name}")
            if name not in allowed and getattr(self, name) is not None:
                raise ValueError(f"{name} does not apply to a {self.kind.value} coupon")
        if self.kind in (CouponKind.CASH, CouponKind.THRESHOLD) and not self.value:
            raise ValueError("value must be at least 1 fen")
        if self.kind is CouponKind.THRESHOLD and self.min_spend < (self.value or 0):
            raise ValueError("a threshold coupon's min_spend must be at least its value")
        if self.store_scope == "regions" and (not self.region_ids or self.store_ids):
            raise ValueError("store_scope 'regions' lists region_ids (and no store_ids)")
        if self.store_scope == "stores" and (not self.store_ids or self.region_ids):
            raise ValueError("store_scope 'stores' lists store_ids (and no region_ids)")
        if self.store_scope == "all" and (self.store_ids or self.region_ids):
            raise ValueError("store_scope 'all' lists no region_ids or store_ids")
        return self


class TemplateInput(Terms):
    """PUT /coupon-templates/{template_id}: the terms, how long issued coupons stay valid, and the limits."""

    valid_from: AwareDatetime | None = Field(default=None, description="a fixed window: with valid_to")
    valid_to: AwareDatetime | None = None
    valid_days: StrictInt | None = Field(default=None, ge=0, le=3650,
                                         description="valid from the issue to the end of the issue day + N "
                                                     "(Asia/Shanghai); 0 = the issue day only")
    budget: StrictInt | None = Field(default=None, ge=1, le=100_000_000,
                                     description="coupons that may ever be issued; none = unlimited")
    per_member_limit: StrictInt | None = Field(default=None, ge=1, le=10_000)
    points_price: StrictInt | None = Field(default=None, ge=1, le=100_000_000,
                                           description="members may exchange this many points for one")
    active: StrictBool = True

    @model_validator(mode="after")
    def _validity(self) -> TemplateInput:
        fixed = self.valid_from is not None or self.valid_to is not None
        if fixed == (self.valid_days is not None):
            raise ValueError("give either valid_from and valid_to, or valid_days")
        if fixed and (self.valid_from is None or self.valid_to is None or self.valid_to <= self.valid_from):
            raise ValueError("a fixed window needs valid_from before valid_to")
        return self

    def terms(self) -> Terms:
        return Terms.model_validate(self.model_dump(include=set(Terms.model_fields)))

    def window(self, issued_at: datetime) -> tuple[datetime, datetime]:
        """When a coupon issued at `issued_at` may be used."""
        if self.valid_days is None:
            return clock.to_ms(self.valid_from), clock.to_ms(self.valid_to)  # type: ignore[arg-type]
        last_day = clock.business_day(issued_at) + timedelta(days=self.valid_days)
        end = datetime.combine(last_day, time(23, 59, 59, 999000), tzinfo=clock.BUSINESS_TZ)
        return clock.to_ms(issued_at), end


class Template(TemplateInput):
    template_id: str
    version: int
    updated_at: datetime
    updated_by: str


def _audience_tag(value: str) -> str:
    value = unicodedata.normalize("NFC", value).strip()  # as tags are stored (domain/tags.clean_tag)
    if not value:
        raise ValueError("tag must contain visible text")
    return value


AudienceTag = Annotated[str, Field(min_length=1, max_length=20, examples=["健康饮食"]), AfterValidator(_audience_tag)]


class Audience(BaseModel):
    """Who a segment-audience issue is for: the members of the member index (every member with a points state)
    meeting every criterion given. `segment`: the last nightly result's segment; `no_purchase`: members whose
    points state shows no purchase ever (read live; members with no points state at all are not in the index).
    `tags`: each one held, rule-based (last night) or given by staff. `home_store_id`: the state's home store."""

    model_config = ConfigDict(extra="forbid")
    segment: Literal[ALL_SEGMENTS] | None = Field(  # type: ignore[valid-type]
        default=None, description="one of the eight RFM segments, or no_purchase")
    tags: list[AudienceTag] | None = Field(default=None, min_length=1, max_length=10,
                                           description="every one of these tags (rule-based or staff)")
    home_store_id: StoreId | None = Field(default=None, description="members whose home store this is")

    @model_validator(mode="after")
    def _some_criterion(self) -> Audience:
        if self.segment is None and not self.tags and self.home_store_id is None:
            raise ValueError("an audience names at least one of segment, tags, home_store_id")
        if self.tags is not None and len(set(self.tags)) != len(self.tags):
            raise ValueError("tags must not repeat")
        return self


class IssueInput(BaseModel):
    model_config = ConfigDict(extra="forbid")
    issue_id: DocId
    template_id: TemplateId
    member_ids: list[MemberId] | None = Field(default=None, min_length=1, max_length=MAX_ISSUE,
                                              description="up to 1,000 members (or give audience)")
    audience: Audience | None = Field(default=None, description="a segment audience, issued as a resumable job "
                                                                "(202; progress at GET /coupon-issues/{issue_id})")
    store_id: StoreId | None = Field(default=None, description="issue from this store's quota (its manager)")
    region_id: StoreId | None = Field(default=None, description="issue from this region's quota (its manager)")

    @model_validator(mode="after")
    def _one_level(self) -> IssueInput:
        if self.store_id is not None and self.region_id is not None:
            raise ValueError("give store_id or region_id, not both")
        if (self.member_ids is None) == (self.audience is None):
            raise ValueError("give member_ids or audience, exactly one of them")
        return self


class ExchangeInput(BaseModel):
    model_config = ConfigDict(extra="forbid")
    exchange_id: DocId
    template_id: TemplateId


class RedeemLine(BaseModel):
    model_config = ConfigDict(extra="forbid")
    sku: str = Field(min_length=1, max_length=64)
    amount: Fen


class RedeemInput(BaseModel):
    model_config = ConfigDict(extra="forbid")
    member_id: MemberId
    store_id: StoreId
    order_id: DocId
    order_amount: Annotated[StrictInt, Field(ge=1, le=10_000_000_000)]
    lines: list[RedeemLine] | None = Field(default=None, min_length=1, max_length=200)

    @model_validator(mode="after")
    def _lines_sum(self) -> RedeemInput:
        if self.lines is not None and sum(line.amount for line in self.lines) != self.order_amount:
            raise ValueError("the lines must add up to order_amount")
        return self


class CancelInput(BaseModel):
    model_config = ConfigDict(extra="forbid")
    order_id: DocId


class LineDiscount(BaseModel):
    model_config = ConfigDict(extra="forbid")
    sku: str
    amount: int = Field(description="the line's amount before this coupon")
    discount: int
    paid: int


class CouponRedemption(BaseModel):
    """The answer of a redemption at the counter, kept on the coupon: a retry replays it."""

    model_config = ConfigDict(extra="forbid")
    code: str
    order_id: str
    member_id: str = Field(description="the member the coupon was redeemed for (as the counter named them)")
    store_id: str
    order_amount: int = Field(description="the order before any coupon, in fen")
    amount_before: int = Field(description="what was left to pay before this coupon (after earlier ones)")
    discount: int
    amount_after: int
    gift: Gift | None
    lines: list[LineDiscount] | None
    redeemed_at: datetime


class CouponRecord(BaseModel):
    """A coupon as its holder, the counter and HQ see it."""

    model_config = ConfigDict(extra="forbid")
    code: str
    template_id: str
    member_id: str = Field(description="the member it was issued to (a merge makes the survivor its holder)")
    terms: Terms
    valid_from: datetime
    valid_to: datetime
    state: CouponState
    source: str = Field(description="issue:<issue_id> or exchange:<exchange_id>")
    issuer: str = Field(default="HQ", description="issued from: HQ (the budget), REGION#<id> or STORE#<id> (a quota)")
    issued_at: datetime
    redemption: CouponRedemption | None = None
    restored_at: datetime | None = Field(default=None, description="when a whole-order refund gave it back")


class Coupon(CouponRecord):
    """A coupon as stored: the record plus what only the counter needs."""

    model_config = ConfigDict(extra="forbid")
    redemption_print: str | None = None  # the redeem request's fingerprint: a retry replays, another body 409s
    released_orders: list[str] = []  # orders whose redemption was cancelled or refunded: a late retry replays
    released_stores: dict[str, str] = {}  # released order -> the store it was redeemed at (scope of a replay)
    version: int = 1

    def state_at(self, now: datetime) -> CouponState:
        """An available coupon past its last moment is expired, whether or not the daily sweep has run."""
        if self.state is CouponState.AVAILABLE and now > self.valid_to:
            return CouponState.EXPIRED
        return self.state

    def record(self, now: datetime) -> CouponRecord:
        return CouponRecord.model_validate({**self.model_dump(include=set(CouponRecord.model_fields)),
                                            "state": self.state_at(now)})


class IssuedCoupon(BaseModel):
    model_config = ConfigDict(extra="forbid")
    member_id: str = Field(description="the live member it was issued to")
    code: str
    requested_as: str | None = Field(default=None, description="the id asked for, when merged into member_id")


class SkippedMember(BaseModel):
    model_config = ConfigDict(extra="forbid")
    member_id: str
    reason: Literal["unknown_member", "erased", "duplicate", "limit_reached", "code_collision"]


class IssueResult(BaseModel):
    model_config = ConfigDict(extra="forbid")
    issue_id: str
    template_id: str
    issuer: str = Field(default="HQ", description="the level the coupons were issued from")
    requested: int
    issued_count: int
    issued: list[IssuedCoupon]
    skipped: list[SkippedMember]
    valid_from: datetime
    valid_to: datetime
    created_at: datetime


ISSUE_STATUSES = ("selecting", "issuing", "done", "stopped")


class IssueProgress(BaseModel):
    """An issue's progress (GET /coupon-issues/{issue_id}; the answer to an audience POST). An audience job is
    `selecting` until its first chunk is committed, then `issuing`, then `done`, or `stopped` (with
    `stop_reason`) when the budget or quota ran out or the template stopped being usable: what was issued is kept."""

    model_config = ConfigDict(extra="forbid")
    issue_id: str
    template_id: str
    issuer: str = Field(description="the level the coupons are issued from: HQ, REGION#<id> or STORE#<id>")
    kind: Literal["members", "audience"]
    status: Literal[ISSUE_STATUSES]  # type: ignore[valid-type]
    audience: Audience | None = None
    matched: int = Field(description="members selected so far (audience), or asked for (member_ids)")
    issued: int
    skipped: dict[str, int] = Field(description="members skipped so far, by reason")
    stop_reason: str | None = Field(default=None, description="why a stopped job stopped (budget_exhausted, ...)")
    created_at: datetime
    updated_at: datetime | None = None
    result: IssueResult | None = Field(default=None, description="a finished member_ids issue: its answer")


class LotSpent(BaseModel):
    model_config = ConfigDict(extra="forbid")
    lot_id: str
    earned_at: datetime
    expires_on: date
    points: int


class ExchangeResult(BaseModel):
    model_config = ConfigDict(extra="forbid")
    exchange_id: str
    member_id: str
    template_id: str
    points: int
    lots: list[LotSpent]
    balance: int
    coupon: CouponRecord
    created_at: datetime


class Basket(BaseModel):
    """The coupons redeemed for one order before it is posted: stacking and the amount left read it."""

    model_config = ConfigDict(extra="forbid")
    order_id: str
    order_amount: int
    coupons: list[dict[str, Any]] = Field(default=[], description="[{code, discount, stackable, template_id, issuer, "
                                                                  "gift_cost}] in the order redeemed")
    posted: bool = False
    version: int = 0

    @property
    def amount_left(self) -> int:
        return self.order_amount - sum(c["discount"] for c in self.coupons)


# ---- the counter rules ------------------------------------------------------------------------------------
class Refusal(Exception):  # noqa: N818 - a reason, not a failure of ours
    """Why a coupon cannot be used here and now: a code a cashier can read out."""

    def __init__(self, code: str, message: str, status: int, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.code, self.message, self.status, self.details = code, message, status, details or {}


def in_scope(terms: Terms, store_id: str, region_id: str | None) -> bool:
    if terms.store_scope == "all":
        return True
    if terms.store_scope == "stores":
        return store_id in terms.store_ids
    return region_id is not None and region_id in terms.region_ids


def discount_for(terms: Terms, amount_left: int) -> int:
    """Fen off what is left to pay; integers only. A gift takes nothing off (it is an item given)."""
    if terms.kind in (CouponKind.CASH, CouponKind.THRESHOLD):
        return min(terms.value or 0, amount_left)
    if terms.kind is CouponKind.DISCOUNT:
        return min(terms.cap or 0, amount_left - amount_left * (terms.pct or 100) // 100)
    return 0


def check_use(coupon: Coupon, *, owner_matches: bool, store_id: str, region_id: str | None, basket: Basket | None,
              order_amount: int, now: datetime) -> int:
    """The discount this coupon gives on this order here and now, or the Refusal a cashier reads out, checked
    in the order a cashier would explain them."""
    if not owner_matches:
        raise Refusal("not_your_coupon", "this coupon belongs to another member", 422)
    state = coupon.state_at(now)
    if state is CouponState.USED:
        raise Refusal("already_redeemed", "this coupon has been used", 409)
    if state is CouponState.EXPIRED:
        raise Refusal("coupon_expired", "this coupon has expired", 422, {"valid_to": clock.iso(coupon.valid_to)})
    if now < coupon.valid_from:
        raise Refusal("not_yet_valid", "this coupon is not valid yet", 422,
                      {"valid_from": clock.iso(coupon.valid_from)})
    if not in_scope(coupon.terms, store_id, region_id):
        raise Refusal("store_not_in_scope", "this coupon cannot be used at this store", 422)
    if basket is not None and basket.order_amount != order_amount:
        raise Refusal("order_amount_changed", "other coupons were redeemed for this order with another amount",
                      409, {"order_amount": basket.order_amount})
    others = basket.coupons if basket else []
    if others and (not coupon.terms.stackable or not all(c["stackable"] for c in others)):
        raise Refusal("not_stackable", "this order already carries a coupon that does not stack with this one",
                      409, {"codes": [c["code"] for c in others]})
    left = basket.amount_left if basket else order_amount
    if left < coupon.terms.min_spend:
        raise Refusal("below_minimum_spend", "the amount left to pay is below this coupon's minimum spend", 422,
                      {"min_spend": coupon.terms.min_spend, "amount_left": left})
    return discount_for(coupon.terms, left)


def split(discount: int, amounts: list[int]) -> list[int]:
    """The discount over the lines in proportion to their amounts, in whole fen, by largest remainder (ties to
    the earlier line): the shares add up to the discount exactly and no line goes below zero."""
    total = sum(amounts)
    if total == 0 or discount == 0:
        return [0] * len(amounts)
    shares = [discount * a // total for a in amounts]
    remainders = sorted(range(len(amounts)), key=lambda i: (-(discount * amounts[i] % total), i))
    for i in remainders[: discount - sum(shares)]:
        shares[i] += 1
    return shares
