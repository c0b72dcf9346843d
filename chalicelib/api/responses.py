"""Every response model of the HTTP API. Each resource has one, built from its domain model (a subclass
that only names it, or a `cls.of(domain_object)` where the answer differs from what is stored): no model
here re-lists a domain model's fields. Every field is typed (ints, never Decimal/float)."""
from __future__ import annotations

import json
from datetime import date, datetime, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from ..domain import clock
from ..domain.access import Principal, Role
from ..domain.coupons import CouponRecord, CouponRedemption, ExchangeResult, IssueProgress, IssueResult, Template
from ..domain.ledger import LedgerEntry
from ..domain.members import Channel, Gender, Member, MemberStatus, MergeRecord
from ..domain.orders import Breakdown, OrderRecord
from ..domain.phone import mask_phone
from ..domain.points import rolling_total
from ..domain.pool import Allocation, DayStats, PoolLine, SettlementRow
from ..domain.program import Tier
from ..domain.receipts import Adjustment, LotTake, Redemption, Refund
from ..domain.segments import NO_PURCHASE, figures
from ..domain.stores import Store


class _Out(BaseModel):
    model_config = ConfigDict(extra="forbid")


# ---- members, stores, sessions ------------------------------------------------------------------------------
class ConsentView(_Out):
    marketing: bool
    updated_at: datetime


class SegmentSpan(_Out):
    segment: str
    since: date
    until: date


class RfmView(_Out):
    """The member's segment from the nightly run, with R, F and M as of yesterday (docs/rfm.md)."""

    segment: str = Field(description="one of the eight RFM segments, or no_purchase")
    segment_since: date | None = Field(description="the night the member entered it (None: not yet classified)")
    scores: dict[str, int] | None = Field(description="R, F, M scores 1-5 (quintile settings only)")
    recency_days: int | None = Field(description="days from the last purchase to yesterday")
    frequency: int = Field(description="orders in the 12-month window ending yesterday's month")
    monetary_fen: int = Field(description="net spend in that window")
    churn_warning: dict[str, Any] | None = Field(
        description="usual_gap_days and days_since_purchase, while days since the last purchase exceed the "
                    "member's usual gap by the brand's factor")
    history: list[SegmentSpan] = Field(description="earlier segments, newest last (at most 12)")
    auto_tags: list[str] = Field(description="from the brand's tag rules, recomputed nightly")
    manual_tags: list[str] = Field(description="set by staff")

    @classmethod
    def of(cls, state: Any, insights: dict[str, Any]) -> RfmView:
        result = insights.get("rfm")
        manual = sorted((insights.get("tags") or {}).get("tags", ()))
        fig = figures(state, clock.business_day(clock.now()) - timedelta(days=1)) if state is not None else None
        segment = result["segment"] if result else (NO_PURCHASE if fig is None or fig.recency_days is None
                                                    else "unclassified")
        churn = None
        if result and result.get("churn_gap") and fig is not None:
            churn = {"usual_gap_days": result["churn_gap"], "days_since_purchase": fig.recency_days}
        return cls(segment=segment, segment_since=date.fromisoformat(result["since"]) if result else None,
                   scores=dict(zip("rfm", (int(c) for c in result["scores"]), strict=True))
                   if result and result.get("scores") else None,
                   recency_days=fig.recency_days if fig else None, frequency=fig.frequency if fig else 0,
                   monetary_fen=fig.monetary if fig else 0, churn_warning=churn,
                   history=[SegmentSpan(segment=h[0], since=h[1], until=h[2])
                            for h in (json.loads(result["history"]) if result and result.get("history") else [])],
                   auto_tags=sorted(result.get("tags", ())) if result else [], manual_tags=manual)


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
    tags: list[str] = Field(default_factory=list, description="the rule-based and the staff tags together")
    rfm: RfmView | None = Field(default=None, description="segment, R/F/M and tags (the single member view only)")
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
            rolling_12m_spend_fen=rolling_total(s.spend_months, clock.business_day(clock.now())),
            first_purchase_at=s.first_purchase_at, last_purchase_at=s.last_purchase_at,
            favourite_categories=[c for c, v in sorted(s.categories.items(), key=lambda kv: -kv[1]) if v > 0][:3])
        return cls(member_id=m.member_id, status=m.status, phone=phone, name=m.name, gender=m.gender,
                   birthday=m.birthday, home_store_id=m.home_store_id, registration_channel=m.registration_channel,
                   channels=sorted(m.channels), stores_visited=sorted(m.stores_visited | (s.stores if s else set())),
                   **stats,
                   consent=ConsentView(marketing=m.consent.marketing, updated_at=m.consent.updated_at),
                   registered_at=m.registered_at, updated_at=m.updated_at, merged_from=sorted(m.merged_from),
                   resolved_from=resolved_from, **_segment_fields(m))


def _segment_fields(m: Member) -> dict[str, Any]:
    """Filled where the member was read with its nightly result and tags (members.get: the single view)."""
    if m.insights is None or m.status is not MemberStatus.ACTIVE:
        return {}
    view = RfmView.of(m.state, m.insights)
    return {"rfm": view, "rfm_segment": view.segment, "tags": sorted({*view.auto_tags, *view.manual_tags})}


class MemberList(_Out):
    items: list[MemberView]
    next_cursor: str | None = None


class MergeView(MergeRecord):
    """A merge and how far its move has come."""

    model_config = ConfigDict(extra="forbid")


class ExportView(_Out):
    member: MemberView
    records: list[dict[str, Any]] = Field(
        description="every other item held under the member and the members merged into them: audit entries, "
                    "merges, points state, ledger entries (earns, redemptions, refunds, expiry, adjustments), "
                    "redemption and adjustment documents, facts, events")
    orders: list[HeldOrderView] = Field(
        default_factory=list, description="the member's orders, newest paid first, each with its refunds so far")
    guest_orders: list[HeldOrderView] = Field(
        default_factory=list, description="orders placed under the member's phone(s) as a guest and never attached "
                                          "(paid more than 30 days before the phone registered)")
    coupons: list[CouponView] = Field(default_factory=list, description="every coupon issued to the member "
                                                                        "(and to members merged into them)")
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
    rollup_shards: int
    updated_at: datetime

    @classmethod
    def of(cls, s: Store) -> StoreView:
        return cls(**s.model_dump(exclude={"business_hours"}),
                   business_hours=s.business_hours.model_dump(mode="json", exclude_none=True))


class StoreList(_Out):
    items: list[StoreView]
    next_cursor: str | None = None


class SessionView(_Out):
    token: str
    expires_at: datetime
    member: MemberView | None


class Health(_Out):
    status: str


# ---- orders, points, tiers ------------------------------------------------------------------------------
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


class OrderView(OrderRecord):
    """One order with its refunds so far."""

    @classmethod
    def of(cls, order: OrderRecord) -> OrderView:
        return cls.model_validate(order.model_dump(include=set(cls.model_fields)))


class HeldOrderView(OrderRecord):
    """An order in a member's export: the order as GET /orders/{id} shows it, with every refund recorded."""

    refunds: list[RefundView]

    @classmethod
    def of(cls, order: OrderRecord, refunds: list[Refund]) -> HeldOrderView:
        return cls.model_validate({**order.model_dump(include=set(OrderRecord.model_fields)),
                                   "refunds": [r.model_dump() for r in refunds]})


class OrderList(_Out):
    items: list[OrderView]
    next_cursor: str | None


class RefundView(Refund):
    """The answer to a refund (a replay answers the same body)."""


class LotTakeView(LotTake):
    """Points a redemption took from one lot."""


class RedemptionView(Redemption):
    lots: list[LotTakeView]  # type: ignore[assignment]  (the same fields, under the name the document uses)


class AdjustmentView(Adjustment):
    """The answer to an HQ adjustment."""


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

    @classmethod
    def of(cls, e: LedgerEntry) -> LedgerEntryView:
        lot = EntryLotView(expires_on=e.lot.expires_on, original=e.lot.original, remaining=e.lot.remaining,
                           status=e.lot.status) if e.lot else None
        return cls(entry_id=e.entry_id, at=e.at, kind=e.kind, points=e.points, balance_after=e.balance_after,
                   ref=e.ref, detail=e.detail, lot=lot)


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


class TierDetail(Tier):
    """The member's tier as the program defines it."""


class TierView(_Out):
    member_id: str
    tier: TierDetail
    basis: str
    progress: int = Field(description="rolling-12-month spend in fen (or order count)")
    since: datetime | None
    next_tier: NextTier | None
    message: str


# ---- coupons ------------------------------------------------------------------------------------------------
class TemplateView(Template):
    """A coupon template with its budget counter."""

    model_config = ConfigDict(extra="forbid")
    issued: int = Field(description="coupons issued from it so far")
    left: int | None = Field(description="budget left; null = unlimited")


class TemplateList(_Out):
    items: list[TemplateView]


class CouponView(CouponRecord):
    """A coupon: `state` is as of now (an available coupon past its end shows expired at once)."""


class CouponCheck(CouponRecord):
    """A coupon looked up at the counter: who holds it and whether it can be used here for that amount."""

    holder_phone: str | None = Field(description="the holder's masked phone (counter roles); null for the member")
    usable: bool | None = Field(description="usable at store_id now (null when no store was given)")
    refusal: str | None = Field(description="why not: the code a redemption would answer")
    discount: int | None = Field(description="what it would take off order_amount (when given and usable)")


class CouponPage(_Out):
    member_id: str = Field(description="the live member (a merged-away id resolves to its survivor)")
    items: list[CouponView]
    next_cursor: str | None = None


class IssueView(IssueResult):
    """The answer to a bulk issue (a replay answers the same body)."""


class IssueProgressView(IssueProgress):
    """A bulk issue's progress: an audience job's status and numbers, or a member_ids issue with its answer."""


class ExchangeView(ExchangeResult):
    """The answer to a points exchange (a replay answers the same body)."""


class CouponRedemptionView(CouponRedemption):
    """The answer to a redemption at the counter (a replay answers the same body)."""


# ---- the benefit pool and coupon numbers -------------------------------------------------------------------
class AllocationView(Allocation):
    """The answer to an allocation (a replay answers the same body)."""


class PoolView(_Out):
    level: str = Field(description="HQ, REGION#<id> or STORE#<id>")
    items: list[PoolLine]


class StatsView(_Out):
    template_id: str
    level: str = Field(description="the issuing level counted: HQ means the whole brand")
    first_day: date = Field(description="the query's from")
    last_day: date = Field(description="the query's to")
    issued: int
    redeemed: int
    redemption_rate_bp: int = Field(description="redeemed / issued in basis points (0 when nothing was issued)")
    discount: int
    gift_cost: int
    sales: int
    days: list[DayStats] = Field(description="days with any activity (the rest are zero)")


class SettlementView(_Out):
    month: str
    level: str
    rows: list[SettlementRow]
    count: int
    discount: int
    gift_cost: int
