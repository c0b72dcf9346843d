"""The answers of idempotent ledger writes (refunds, redemptions and their cancels, adjustments).

Each is stored with its request's fingerprint in the write's own transaction and replayed as stored: a
retry gets the same bytes. They are also the HTTP answers (api/ subclasses them only to name them)."""
from __future__ import annotations

from datetime import date, datetime

from pydantic import BaseModel, ConfigDict, Field


class _Receipt(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Refund(_Receipt):
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
    coupons_restored: list[str] = Field(default=[], description="coupons back with their holder (whole order "
                                                                "refunded, coupon still valid)")
    created_at: datetime


class LotTake(_Receipt):
    lot_id: str = Field(description="the ledger entry that credited the lot")
    earned_at: datetime = Field(description="when the lot was credited")
    expires_on: date
    points: int


class Redemption(_Receipt):
    redemption_id: str
    member_id: str
    points: int
    reason: str
    store_id: str | None
    status: str
    lots: list[LotTake]
    balance: int
    created_at: datetime
    recredited: int | None = None
    expired: int | None = Field(default=None, description="points whose lots expired before the cancel")
    cancelled_at: datetime | None = None


class Adjustment(_Receipt):
    adjustment_id: str
    member_id: str
    points: int
    reason: str
    balance: int
    owed: int
    by: str
    created_at: datetime
