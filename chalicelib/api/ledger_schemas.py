"""HTTP contract of orders, points and the loyalty program."""
from __future__ import annotations

from datetime import date, datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StrictInt, model_validator

from ..domain.members import Channel, StoreId
from ..domain.orders import DocId, OrderLine
from ..domain.program import Benefits

Points = Annotated[StrictInt, Field(ge=1, le=1_000_000_000)]


class _Out(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RedemptionInput(BaseModel):
    model_config = ConfigDict(extra="forbid")
    redemption_id: DocId
    points: Points
    reason: str = Field(min_length=1, max_length=200)
    store_id: StoreId | None = Field(default=None, description="required at the counter (staff)")


class AdjustmentInput(BaseModel):
    model_config = ConfigDict(extra="forbid")
    adjustment_id: DocId
    points: Annotated[StrictInt, Field(ge=-1_000_000_000, le=1_000_000_000)]
    reason: str = Field(min_length=1, max_length=200)

    @model_validator(mode="after")
    def _nonzero(self) -> AdjustmentInput:
        if self.points == 0:
            raise ValueError("points must not be 0")
        return self


class Breakdown(_Out):
    amount_fen: int
    points_per_yuan: int
    tier_id: str
    tier_multiplier: int = Field(description="permille")
    promotion: str | None
    promotion_multiplier: int = Field(description="permille; the highest active promotion, they do not stack")
    unrounded: str = Field(description="the exact product before the single rounding down")
    points: int


class TierRef(_Out):
    tier_id: str
    name: str


class OrderReceipt(_Out):
    """The answer to posting (and previewing) an order; a replay answers the same body."""

    order_id: str
    member_id: str | None
    guest: bool = Field(description="a phone that is not (yet) a member: no points now")
    points_earned: int
    debt_paid: int = Field(description="of points_earned, how many paid owed points first")
    balance: int | None
    tier_before: TierRef | None
    tier_after: TierRef | None
    tier_changed: bool
    breakdown: Breakdown | None
    paid_at: datetime


class OrderView(_Out):
    order_id: str
    member_id: str | None
    guest: bool
    store_id: str
    channel: Channel
    paid_at: datetime
    amount: int
    items: list[OrderLine]
    points_earned: int
    refunded_amount: int
    points_reversed: int
    breakdown: Breakdown | None
    created_at: datetime


class OrderList(_Out):
    items: list[OrderView]
    next_cursor: str | None


class RefundView(_Out):
    refund_id: str
    order_id: str
    amount: int
    refunded_total: int
    points_reversed: int
    points_removed: int = Field(description="unspent points of the order taken back")
    points_owed: int = Field(description="points already spent: now owed by the member")
    points_forgiven: int = Field(description="points of the order that had expired: not clawed back")
    member_id: str | None
    balance: int | None
    owed: int | None
    tier: str | None
    tier_changed: bool
    created_at: datetime


class LotTakeView(_Out):
    lot_id: str = Field(description="the ledger entry that credited the lot")
    earned_at: datetime = Field(description="when the lot was credited")
    expires_on: date
    points: int


class RedemptionView(_Out):
    redemption_id: str
    member_id: str
    points: int
    reason: str
    store_id: str | None
    status: str
    lots: list[LotTakeView]
    balance: int
    created_at: datetime
    recredited: int | None = None
    expired: int | None = Field(default=None, description="points whose lots expired before the cancel")
    cancelled_at: datetime | None = None


class AdjustmentView(_Out):
    adjustment_id: str
    member_id: str
    points: int
    reason: str
    balance: int
    owed: int
    by: str
    created_at: datetime


class EntryLotView(_Out):
    expires_on: date = Field(description="the last business day its points can be spent")
    original: int = Field(description="points credited to the lot (after paying any owed points)")
    remaining: int
    status: str = Field(description="active | expired")


class LedgerEntryView(_Out):
    entry_id: str
    at: datetime
    kind: str = Field(description="earn | refund | redemption | redemption_cancel | expiry | adjustment | merge")
    points: int
    balance_after: int
    ref: str = Field(description="the order, refund, redemption, lot or adjustment behind it")
    detail: dict
    lot: EntryLotView | None = Field(default=None, description="the lot this entry credited, as it stands now")


class LedgerPage(_Out):
    items: list[LedgerEntryView]
    next_cursor: str | None


class ExpiringView(_Out):
    date: date
    points: int


class PointsView(_Out):
    member_id: str
    balance: int = Field(description="available - owed; negative while points are owed")
    available: int
    owed: int
    expiring_soon: list[ExpiringView]
    ledger: LedgerPage


class NextTier(_Out):
    tier_id: str
    name: str
    threshold: int
    missing: int


class TierDetail(_Out):
    tier_id: str
    name: str
    threshold: int
    benefits: Benefits


class TierView(_Out):
    member_id: str
    tier: TierDetail
    basis: str
    progress: int = Field(description="rolling-12-month spend in fen (or order count)")
    since: datetime | None
    next_tier: NextTier | None
    message: str
