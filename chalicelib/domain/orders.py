"""Orders and refunds: the facts that points, tiers and reports stand on."""
from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StrictInt, field_validator, model_validator

from . import clock
from .members import Channel, MemberId, Phone, StoreId

Fen = Annotated[StrictInt, Field(ge=0, le=10_000_000_000, description="integer fen")]
DocId = Annotated[str, Field(pattern=r"^[A-Za-z0-9_.:-]{1,64}$")]
MAX_BACKDATE = timedelta(days=90)
MAX_CLOCK_SKEW = timedelta(minutes=10)


class OrderLine(BaseModel):
    model_config = ConfigDict(extra="forbid")
    sku: str = Field(min_length=1, max_length=64)
    name: str = Field(min_length=1, max_length=100)
    category: str = Field(min_length=1, max_length=50)
    qty: StrictInt = Field(ge=1, le=100_000)
    amount: Fen


class OrderCoupon(BaseModel):
    """A coupon an order is posted with: the code and the discount it was redeemed for at the counter."""

    model_config = ConfigDict(extra="forbid")
    code: str = Field(min_length=4, max_length=40, pattern=r"^[A-Za-z0-9 -]+$")
    discount: Fen

    @field_validator("code")
    @classmethod
    def _normal(cls, value: str) -> str:  # as the cashier typed it; stored as the coupon is keyed
        return "".join(ch for ch in value.upper() if ch not in " -")


class OrderInput(BaseModel):
    """POST /orders. Exactly one of member_id / phone; amount equals the sum of the lines."""

    model_config = ConfigDict(extra="forbid")
    order_id: DocId
    member_id: MemberId | None = None
    phone: Phone | None = None
    store_id: StoreId
    channel: Channel
    paid_at: AwareDatetime
    amount: Fen
    items: list[OrderLine] = Field(min_length=1, max_length=200)
    coupons: list[OrderCoupon] = Field(default=[], max_length=20, description=(
        "coupons redeemed for this order at the counter: the lines are at their paid amounts (after the "
        "discounts), and lines + discounts equal the order_amount they were redeemed for"))

    @model_validator(mode="after")
    def _rules(self) -> OrderInput:
        if (self.member_id is None) == (self.phone is None):
            raise ValueError("give exactly one of member_id or phone")
        if sum(i.amount for i in self.items) != self.amount:
            raise ValueError("amount must equal the sum of the item amounts")
        if len({c.code for c in self.coupons}) != len(self.coupons):
            raise ValueError("a coupon may appear once per order")
        now = clock.now()
        if self.paid_at > now + MAX_CLOCK_SKEW or self.paid_at < now - MAX_BACKDATE:
            raise ValueError("paid_at must be within the last 90 days and not in the future")
        # Stored (and so answered on replay) in business time to the millisecond: normalise now so the
        # first answer and every replay are the same bytes.
        local = self.paid_at.astimezone(clock.BUSINESS_TZ)
        self.paid_at = local.replace(microsecond=local.microsecond // 1000 * 1000)
        return self

    def fingerprint_fields(self) -> dict[str, Any]:
        # An order without coupons keeps the fingerprint it had before orders could carry them (stored
        # orders are replayed by comparing it).
        return self.model_dump(mode="json", exclude=set() if self.coupons else {"coupons"})


class RefundLine(BaseModel):
    model_config = ConfigDict(extra="forbid")
    sku: str = Field(min_length=1, max_length=64)
    qty: StrictInt = Field(ge=1, le=100_000)
    amount: Fen


class RefundInput(BaseModel):
    model_config = ConfigDict(extra="forbid")
    refund_id: DocId
    amount: Annotated[StrictInt, Field(ge=1, le=10_000_000_000)]
    items: list[RefundLine] | None = Field(default=None, max_length=200)

    @model_validator(mode="after")
    def _sum(self) -> RefundInput:
        if self.items is not None and sum(i.amount for i in self.items) != self.amount:
            raise ValueError("amount must equal the sum of the refunded item amounts")
        return self


class Breakdown(BaseModel):
    """How an order's points were computed: one multiplication, rounded down once."""

    model_config = ConfigDict(extra="forbid")
    amount_fen: int
    points_per_yuan: int
    tier_id: str
    tier_multiplier: int = Field(description="permille")
    promotion: str | None
    promotion_multiplier: int = Field(description="permille; the highest active promotion, they do not stack")
    unrounded: str = Field(description="the exact product before the single rounding down")
    points: int


class OrderRecord(BaseModel):
    """An order as anyone allowed to see it sees it (the HTTP answer of GET /orders/{id} and the history)."""

    model_config = ConfigDict(extra="forbid")
    order_id: str
    member_id: str | None
    guest: bool
    store_id: str
    channel: Channel
    paid_at: datetime
    amount: int
    items: list[OrderLine]
    points_earned: int
    refunded_amount: int = 0
    points_reversed: int = 0
    coupons: list[OrderCoupon] = []
    breakdown: Breakdown | None
    created_at: datetime


class Order(OrderRecord):
    """An order as stored: the record plus what only the ledger needs."""

    model_config = ConfigDict(extra="ignore")  # read back from items that carry index attributes too
    debt_paid: int
    balance_after: int | None
    tier_before: str | None
    tier_after: str | None
    # sku -> (amount, qty) refunded so far by refunds that named their lines (all lines of that sku together)
    refunded_lines: dict[str, tuple[int, int]] = {}
    fingerprint: str
    guest_phone_hash: str | None = None  # a guest order, attached when that phone registers
    # The earn ledger entry: it keeps the breakdown and carries the order's lot (if any points were left
    # for one after paying debt).
    earn_entry_id: str | None = None
    earn_entry_at: datetime | None = None
    attached_at: datetime | None = None

    @field_validator("refunded_lines", mode="before")
    @classmethod
    def _amount_only(cls, value: Any) -> Any:  # written before quantities were kept: amounts only
        if isinstance(value, dict):
            return {sku: (v, 0) if isinstance(v, int) else v for sku, v in value.items()}
        return value

    def record(self) -> OrderRecord:
        return OrderRecord.model_validate(self.model_dump(include=set(OrderRecord.model_fields)))


def refund_lines_after(items: list[OrderLine], refunded: dict[str, tuple[int, int]],
                       refunding: list[RefundLine]) -> tuple[dict[str, tuple[int, int]], list[str]]:
    """What refunds by line will have taken per sku once `refunding` is added, and the skus it overdraws.

    A sku's limit is the sum over every line of the order that carries it, in amount and in quantity, across
    all refunds of the order (refunds that named no lines are bounded by the order's total only)."""
    limit: dict[str, tuple[int, int]] = {}
    for line in items:
        amount, qty = limit.get(line.sku, (0, 0))
        limit[line.sku] = (amount + line.amount, qty + line.qty)
    after = dict(refunded)
    for r in refunding:
        amount, qty = after.get(r.sku, (0, 0))
        after[r.sku] = (amount + r.amount, qty + r.qty)
    over = sorted({r.sku for r in refunding
                   if after[r.sku][0] > limit[r.sku][0] or after[r.sku][1] > limit[r.sku][1]})
    return after, over
