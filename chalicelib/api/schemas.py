"""Response models and the few request models that are purely HTTP (query strings, WeChat codes).

Request bodies that are domain commands (Registration, MemberPatch, StoreInput) are defined once in
domain/ and used here as they are. Every response field is typed (ints, never Decimal/float)."""
from __future__ import annotations

from datetime import date, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from ..domain.access import Principal, Role
from ..domain.clock import business_day, now
from ..domain.members import Channel, ConsentInput, Gender, Member, MemberId, MemberStatus, Phone
from ..domain.phone import mask_phone
from ..domain.points import rolling_total
from ..domain.stores import Store

PAGE_MAX = 100


class _Out(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ConsentView(_Out):
    marketing: bool
    updated_at: datetime


class MemberView(_Out):
    """The single customer view. The fields after `merged_from` are filled by later features (points,
    tiers, RFM, coupons); until then they hold their true empty values."""

    member_id: str
    status: MemberStatus
    phone: str | None = Field(description="masked (138****1234) unless the caller is the member or HQ")
    name: str | None
    gender: Gender | None
    birthday: date | None
    home_store_id: str | None
    registration_channel: Channel
    channels: list[Channel]
    stores_visited: list[str]
    consent: ConsentView
    registered_at: datetime
    updated_at: datetime
    merged_from: list[str]
    tier: str | None = None
    points_balance: int = 0
    lifetime_spend_fen: int = 0
    rolling_12m_spend_fen: int = 0
    order_count: int = 0
    first_purchase_at: datetime | None = None
    last_purchase_at: datetime | None = None
    favourite_categories: list[str] = Field(default_factory=list, description="by net spend, top 3")
    rfm_segment: str | None = None
    tags: list[str] = Field(default_factory=list)
    coupon_count: int = 0
    resolved_from: str | None = Field(default=None, description="set when the requested id was merged into this one")

    @classmethod
    def of(cls, m: Member, viewer: Principal, resolved_from: str | None = None) -> MemberView:
        own = viewer.role is Role.MEMBER and viewer.member_id in (m.member_id, resolved_from)
        full = own or viewer.role is Role.HQ
        phone = m.phone if full else (mask_phone(m.phone) if m.phone else m.phone_masked)
        s = m.state
        stats = {} if s is None else dict(
            tier=s.tier, points_balance=s.balance, lifetime_spend_fen=s.lifetime_spend, order_count=s.order_count,
            rolling_12m_spend_fen=rolling_total(s.spend_months, business_day(now())),
            first_purchase_at=s.first_purchase_at, last_purchase_at=s.last_purchase_at,
            favourite_categories=[c for c, v in sorted(s.categories.items(), key=lambda kv: -kv[1]) if v > 0][:3])
        return cls(member_id=m.member_id, status=m.status, phone=phone, name=m.name, gender=m.gender,
                   birthday=m.birthday, home_store_id=m.home_store_id, registration_channel=m.registration_channel,
                   channels=sorted(m.channels), stores_visited=sorted(m.stores_visited | (s.stores if s else set())),
                   **stats,
                   consent=ConsentView(marketing=m.consent.marketing, updated_at=m.consent.updated_at),
                   registered_at=m.registered_at, updated_at=m.updated_at, merged_from=sorted(m.merged_from),
                   resolved_from=resolved_from)


class MemberList(_Out):
    items: list[MemberView]
    next_cursor: str | None = None


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


class MergeView(_Out):
    target_member_id: str
    source_member_id: str
    by: str
    started_at: datetime
    state: str = Field(description="moving: history still being moved in batches; done")
    moved: dict[str, int]
    finished_at: datetime | None = None


class ExportView(_Out):
    member: MemberView
    records: list[dict[str, Any]] = Field(description="every other item we hold on the member (audit, merges, ...)")
    exported_at: datetime


class ErasedView(_Out):
    member_id: str
    status: MemberStatus


class StoreView(_Out):
    store_id: str
    name: str
    region_id: str
    city: str
    store_type: str
    opened_on: date | None
    business_hours: dict[str, Any]
    updated_at: datetime

    @classmethod
    def of(cls, s: Store) -> StoreView:
        return cls(**s.model_dump(exclude={"business_hours"}),
                   business_hours=s.business_hours.model_dump(mode="json", exclude_none=True))


class StoreList(_Out):
    items: list[StoreView]
    next_cursor: str | None = None


class WeChatLogin(BaseModel):
    model_config = ConfigDict(extra="forbid")
    code: str = Field(min_length=1, max_length=128, description="wx.login() code")


class PhoneBinding(BaseModel):
    model_config = ConfigDict(extra="forbid")
    code: str = Field(min_length=1, max_length=128, description="code from the getPhoneNumber button")
    store_id: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_-]{1,40}$",
                                 description="store whose QR code brought the member, if any")
    consent: ConsentInput | None = Field(default=None, description="asked when the member first signs up")


class SessionView(_Out):
    token: str
    expires_at: datetime
    member: MemberView | None


class Health(_Out):
    status: str
