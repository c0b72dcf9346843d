"""Every request model of the HTTP API, in one place.

Bodies that are domain commands (orders, refunds, registrations, profile edits, stores, the loyalty
program) are defined once in domain/ and listed here as they are; the rest are purely HTTP (query strings,
WeChat codes, small command bodies)."""
from __future__ import annotations

from datetime import date
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, model_validator

from ..domain.coupons import CancelInput, ExchangeInput, IssueInput, RedeemInput, TemplateInput
from ..domain.members import ConsentInput, MemberId, MemberPatch, Phone, Registration, StoreId
from ..domain.orders import DocId, OrderInput, RefundInput
from ..domain.pool import AllocationInput
from ..domain.program import PointsRules, TierProgram
from ..domain.stores import StoreInput

__all__ = ["AdjustmentInput", "AllocationInput", "CancelInput", "CouponListQuery", "CouponLookupQuery",
           "ExchangeInput", "IssueInput", "MemberPatch", "MergeRequest", "OrderInput", "PageQuery", "PhoneBinding",
           "PhoneQuery", "PointsRules", "RedeemInput", "RedemptionInput", "RefundInput", "Registration",
           "StoreInput", "TemplateInput", "TierProgram", "WeChatLogin"]

PAGE_MAX = 100
Points = Annotated[StrictInt, Field(ge=1, le=1_000_000_000)]


class PhoneQuery(BaseModel):
    model_config = ConfigDict(extra="ignore")
    phone: Phone


class PageQuery(BaseModel):
    model_config = ConfigDict(extra="ignore")
    cursor: str | None = Field(default=None, max_length=2048)
    limit: int = Field(default=50, ge=1, le=PAGE_MAX)


class MergeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    source_member_id: MemberId


class WeChatLogin(BaseModel):
    model_config = ConfigDict(extra="forbid")
    code: str = Field(min_length=1, max_length=128, description="wx.login() code")


class PhoneBinding(BaseModel):
    model_config = ConfigDict(extra="forbid")
    code: str = Field(min_length=1, max_length=128, description="code from the getPhoneNumber button")
    store_id: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_-]{1,40}$",
                                 description="store whose QR code brought the member, if any")
    consent: ConsentInput | None = Field(default=None, description="asked when the member first signs up")


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


class CouponLookupQuery(BaseModel):
    model_config = ConfigDict(extra="ignore")
    store_id: StoreId | None = Field(default=None, description="required for counter roles and integrations "
                                                                "(HQ may leave it out)")
    order_amount: Annotated[int, Field(ge=1, le=10_000_000_000)] | None = Field(
        default=None, description="fen: the discount it would give")


class CouponListQuery(PageQuery):
    state: Literal["available", "used", "expired"] | None = None


class PoolQuery(BaseModel):
    model_config = ConfigDict(extra="ignore")
    store_id: StoreId | None = None
    region_id: StoreId | None = Field(default=None, description="a region manager's own region when left out")


class StatsQuery(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)
    store_id: StoreId | None = None
    region_id: StoreId | None = None
    from_: date = Field(alias="from", description="first business day (Asia/Shanghai), YYYY-MM-DD")
    to: date = Field(description="last business day, inclusive; at most 366 days after from")


class SettlementQuery(BaseModel):
    model_config = ConfigDict(extra="ignore")
    month: str = Field(pattern=r"^20[0-9]{2}-(0[1-9]|1[0-2])$", description="YYYY-MM (business month)")
    store_id: StoreId | None = None
