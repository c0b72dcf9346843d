"""The benefit pool: a template's budget split into quotas (HQ -> regions -> stores), and the coupon numbers
(per-day stats and the monthly cross-store settlement) kept as counters with the writes.

A level is where coupons are issued from: `HQ` (the template's budget), `REGION#<id>`, `STORE#<id>`. A
coupon remembers its level (its issuer); settlement pairs that issuer with the store that redeemed it."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import date, datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, model_validator

from .members import StoreId
from .orders import DocId

HQ = "HQ"
STAT_SHARDS = 8  # the brand-wide counters of a busy template, and a month's settlement, are spread this wide


def region_level(region_id: str) -> str:
    return f"REGION#{region_id}"


def store_level(store_id: str) -> str:
    return f"STORE#{store_id}"


def level_of(store_id: str | None, region_id: str | None) -> str:
    if store_id is not None:
        return store_level(store_id)
    if region_id is not None:
        return region_level(region_id)
    return HQ


def level_parts(level: str) -> tuple[str, str | None]:
    """("hq", None) | ("region", id) | ("store", id)."""
    if level == HQ:
        return "hq", None
    kind, _, ident = level.partition("#")
    return kind.lower(), ident


def shard(code: str) -> int:
    """Stable across processes (Python's hash() is salted per process)."""
    return hashlib.blake2b(code.encode(), digest_size=2).digest()[0] % STAT_SHARDS


def month_of(day: date) -> str:
    return day.strftime("%Y-%m")


@dataclass(frozen=True)
class CouponUse:
    """What a posted order's coupon adds to the numbers (or the order's whole refund takes back)."""

    code: str
    template_id: str
    issuer: str
    store_id: str  # where it was redeemed
    day: date  # the order's paid day (its month is the settlement month)
    discount: int
    gift_cost: int
    sales: int  # what the order was paid


def carries_sales(codes_by_template: dict[str, list[str]], template_id: str, code: str) -> bool:
    """An order's sales count once per template it used, however many of its coupons it stacked: on the
    smallest code of that template (the posting and the whole refund pick the same one)."""
    return min(codes_by_template.get(template_id, [code])) == code


class AllocationInput(BaseModel):
    """POST /benefit-pool/allocations. HQ allocates from the budget to a region or a store; a region manager
    from their region's allocation to one of its stores. A negative quantity returns unissued quota."""

    model_config = ConfigDict(extra="forbid")
    allocation_id: DocId
    template_id: Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,40}$")]
    scope: Literal["region", "store"]
    scope_id: StoreId
    quantity: Annotated[StrictInt, Field(ge=-1_000_000, le=1_000_000)]

    @model_validator(mode="after")
    def _nonzero(self) -> AllocationInput:
        if self.quantity == 0:
            raise ValueError("quantity must not be 0")
        return self


class Allocation(BaseModel):
    """The answer to an allocation (a replay answers the same body)."""

    model_config = ConfigDict(extra="forbid")
    allocation_id: str
    template_id: str
    source: str = Field(description="the level it was taken from (or returned to): HQ or REGION#<id>")
    target: str = Field(description="REGION#<id> or STORE#<id>")
    quantity: int
    by: str
    created_at: datetime


class PoolLine(BaseModel):
    """One template at one level."""

    model_config = ConfigDict(extra="forbid")
    template_id: str
    level: str
    received: int | None = Field(description="allocated to this level (for HQ: the budget; null = unlimited)")
    allocated_out: int = Field(description="passed on to regions or stores (net of returns)")
    issued: int = Field(description="coupons issued from this level")
    left: int | None = Field(description="may still be issued or allocated; null = unlimited")


class DayStats(BaseModel):
    model_config = ConfigDict(extra="forbid")
    day: date
    issued: int = 0
    redeemed: int = 0
    discount: int = Field(default=0, description="fen taken off orders")
    gift_cost: int = Field(default=0, description="fen the gifts given cost")
    sales: int = Field(default=0, description="fen paid for the orders they were used on")


class SettlementRow(BaseModel):
    model_config = ConfigDict(extra="forbid")
    template_id: str
    issuer: str = Field(description="HQ, REGION#<id> or STORE#<id>: where the coupon was issued from")
    redeeming_store_id: str
    count: int
    discount: int = Field(description="fen")
    gift_cost: int = Field(description="fen")
