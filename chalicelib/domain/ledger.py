"""Ledger records: the member's points state, ledger entries and the lots they credit, idempotency documents.

A lot is not an item of its own: it lives on the ledger entry that credited it (an order's earn, an HQ
credit, an attached guest order). One item instead of two keeps an order post at 4 items (see
docs/decisions.md, "the ledger lot")."""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import date, datetime
from typing import Any

from .coupons import Coupon
from .orders import Order, OrderCoupon
from .pool import CouponUse
from .rollups import DayRollup


@dataclass(frozen=True)
class MemberHead:
    """What the points use cases need of the member's profile: whether it is live, where a merge sent it,
    and the birth month (birthday promotions). Read with the points state in one query."""

    member_id: str
    status: str  # active | merged | erased
    merged_into: str | None = None
    birth_month: int | None = None
    phone_masked: str | None = None  # shown to counter staff (the coupon's holder)


@dataclass(frozen=True)
class MemberState:
    """The small, hot item updated by every order and points movement (kept apart from the profile so a
    write costs 1 KB units, not the profile's size)."""

    member_id: str
    version: int = 0  # optimistic lock: every points change conditions on the version it read
    available: int = 0  # == sum of lot remainders
    owed: int = 0  # debt from refunds of points already spent
    tier: str | None = None
    tier_base: str | None = None  # the tier confirmed at the last re-evaluation: refunds never go below it
    tier_since: datetime | None = None
    tier_upgrade_order: str | None = None
    reviewed_on: date | None = None  # last tier review applied: a re-run for that day changes nothing
    spend_months: dict[str, int] = field(default_factory=dict)  # business month -> net spend in fen
    orders_months: dict[str, int] = field(default_factory=dict)  # business month -> order count
    order_count: int = 0
    lifetime_spend: int = 0
    lifetime_earned: int = 0
    first_purchase_at: datetime | None = None
    last_purchase_at: datetime | None = None
    stores: frozenset[str] = frozenset()
    categories: dict[str, int] = field(default_factory=dict)  # category -> spend in fen
    # No lot credited before this instant still holds points (a lower bound, never later than the oldest
    # open lot): finding the spendable lots reads the ledger from here, not from the member's first order.
    open_lots_from: datetime | None = None
    # What the nightly segmentation reads (domain/aggregates.py keeps them): the member's home store (copied
    # from the profile, which never changes it), the last purchase days in a compact text, the orders that
    # used a coupon, and whether the member is in the nightly index (an erased member is not).
    home_store_id: str | None = None
    recent_days: str = ""
    coupon_orders: int = 0
    indexed: bool = True

    @property
    def balance(self) -> int:
        return self.available - self.owed

    def evolve(self, **changes: Any) -> MemberState:
        return replace(self, **changes)


@dataclass(frozen=True)
class Lot:
    """Points credited together, spent soonest-expiring first. `lot_id` and `at` are those of the ledger
    entry that carries it."""

    lot_id: str
    member_id: str
    at: datetime
    source: str  # order | adjustment | guest_attach | merge
    ref: str
    earned_on: date
    expires_on: date
    original: int
    remaining: int
    expired: int = 0
    forgiven: int = 0
    clawed: int = 0
    owed: int = 0
    status: str = "active"  # active | expired

    def evolve(self, **changes: Any) -> Lot:
        return replace(self, **changes)


@dataclass(frozen=True)
class LedgerEntry:
    entry_id: str
    member_id: str
    at: datetime
    kind: str  # earn | refund | redemption | redemption_cancel | expiry | adjustment | merge
    points: int  # signed change of the balance
    balance_after: int
    ref: str
    detail: dict[str, Any] = field(default_factory=dict)
    lot: Lot | None = None  # the lot this entry credited (same id and time)


@dataclass(frozen=True)
class TierMarker:
    """The member's entry in the tier review index: `tier` None removes it (back at the lowest tier)."""

    tier: str | None


@dataclass(frozen=True)
class Document:
    """An idempotency document: a refund, redemption, its cancellation, an adjustment, a one-off fact.
    `owner` is the order id (refunds) or the member id (the rest)."""

    kind: str  # refund | redemption | redemption_cancel | adjustment | fact
    owner: str
    doc_id: str
    body: dict[str, Any] = field(default_factory=dict)


@dataclass
class Change:
    """Everything one points use case writes, committed by the store as ONE transaction (≤ 100 items).

    The state is conditioned on the version that was read, every updated lot on the remainder that was
    read, and every document (order, refund, redemption, adjustment) on not existing yet: a retry of the
    same request can never apply twice, and a concurrent change forces a re-read instead of a lost update.
    """

    member_id: str | None
    state: MemberState | None = None
    expected_version: int | None = None  # the version read; 0/None = the state item must not exist yet
    updated_lots: list[tuple[Lot, int]] = field(default_factory=list)  # (new lot, remaining it had when read)
    entries: list[LedgerEntry] = field(default_factory=list)  # an entry with a lot creates that lot
    order: Order | None = None
    order_claim: Order | None = None  # a guest order becoming the member's: replaces it if still a guest
    tier_marker: TierMarker | None = None  # set when the tier changed
    # (order_id, refunded before, refunded after, reversed after, refunded per line after)
    order_refund: tuple[str, int, int, int, dict[str, int]] | None = None
    documents: list[Document] = field(default_factory=list)  # each must not exist yet
    rollups: list[DayRollup] = field(default_factory=list)  # additions to store days (domain/rollups)
    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    # Coupons written with the points (an exchange issues one; an order posted with coupons closes their
    # basket; a refund of the whole order restores them): see store/coupons.
    coupon_issues: list[tuple[Coupon, int | None]] = field(default_factory=list)  # (new coupon, per-member limit)
    budget_takes: list[tuple[str, bool, int]] = field(default_factory=list)  # (template_id, limited, n)
    coupon_posting: tuple[str, int, list[OrderCoupon]] | None = None  # (order_id, amount redeemed for, coupons)
    coupon_restores: list[tuple[Coupon, int]] = field(default_factory=list)  # (restored coupon, version read)
    # the numbers (stats, settlement): (use, +1 posted with the order / -1 given back by its whole refund)
    coupon_uses: list[tuple[CouponUse, int]] = field(default_factory=list)
