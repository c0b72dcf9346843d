"""Posting an order (and previewing it): points, tier progress and member aggregates, exact under retries."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from ..domain import clock, rollups
from ..domain.access import Principal
from ..domain.aggregates import fold_order
from ..domain.errors import Conflict, DocumentExists, Invalid
from ..domain.ids import new_id
from ..domain.ledger import Change, LedgerEntry, Lot, MemberHead, MemberState, TierMarker
from ..domain.orders import Order, OrderInput
from ..domain.points import (
    earliest,
    earn,
    expires_on,
    less_categories,
    pay_debt,
    points_to_reverse,
    tier_progress,
)
from ..domain.policy import authorize
from ..domain.pool import CouponUse, carries_sales
from ..domain.program import PointsRules, TierProgram
from ..domain.rollups import Sale
from ..domain.stores import Store
from ..observability import metrics
from . import program
from .ledger_common import fingerprint, live_member, optimistic
from .ports import LedgerRepository, MemberRepository, StoreRepository


@dataclass(frozen=True)
class Posted:
    order: Order
    created: bool
    tier_name_before: str | None
    tier_name_after: str | None


def _check_store(operation: str, store_id: str, actor: Principal, stores: StoreRepository) -> Store:
    store = stores.get(store_id)
    if store is None:
        raise Invalid("unknown store", code="unknown_store",
                      details=[{"loc": ["body", "store_id"], "msg": "no such store"}])
    authorize(operation, actor, store=store)
    return store


def _order_fingerprint(cmd: OrderInput, members: MemberRepository) -> str:
    fields = cmd.fingerprint_fields()
    if fields.get("phone"):  # never keep a phone in the clear, not even inside a hash input
        fields["phone"] = members.phone_hash(fields["phone"])
    return fingerprint(fields)


def progress(state: MemberState, tiers: TierProgram, now: datetime) -> int:
    return tier_progress(state, tiers, clock.business_day(now))


def earn_for(cmd: OrderInput, head: MemberHead, state: MemberState, rules: PointsRules,
              tiers: TierProgram, order_id: str, now: datetime, earned_on: date | None = None,
              refunded: Order | None = None, shards: int = 1,
              coupon_uses: list[CouponUse] | None = None) -> tuple[Change, Order]:
    """`earned_on` (default: the day it was paid) starts the lot's validity; attached guest orders start
    it at the attach. `refunded`: a guest order being attached after refunds of its own. Its points are
    computed on the whole order and the refunds' share taken off at once, exactly as if the refunds had
    come after (so later refunds of it reverse the rest with the usual formula). `shards`: the store's day
    rollup spread; `coupon_uses`: the order's coupons (for the store day's coupon figures)."""
    coupon_uses = coupon_uses or []
    member_id = state.member_id
    day = clock.business_day(cmd.paid_at)
    tier_before = tiers.get(state.tier)
    breakdown = earn(cmd.amount, rules, tier_before, day, head.birth_month)
    refunded_fen = refunded.refunded_amount if refunded else 0
    reversed_before = points_to_reverse(breakdown.points, cmd.amount, 0, refunded_fen, 0)
    credited = breakdown.points - reversed_before
    lot_points, debt_paid = pay_debt(credited, state.owed)
    grown = fold_order(state, paid_at=cmd.paid_at, store_id=cmd.store_id, net=cmd.amount - refunded_fen,
                       lines=[(line.category, line.amount) for line in cmd.items], used_coupon=bool(cmd.coupons),
                       counted=refunded_fen < cmd.amount)
    if refunded and refunded_fen:
        grown = grown.evolve(categories=less_categories(
            grown.categories, [(x.sku, x.category, x.amount) for x in refunded.items], refunded.amount, refunded_fen,
            None))
    grown = grown.evolve(
        version=state.version + 1, available=state.available + lot_points, owed=state.owed - debt_paid,
        lifetime_earned=state.lifetime_earned + credited,
        tier=state.tier or tiers.tiers[0].tier_id, tier_base=state.tier_base or tiers.tiers[0].tier_id)
    # Upgrade at once when this order crosses a threshold (progress from spend, never from the balance).
    qualified = tiers.qualified(progress(grown, tiers, now))
    upgraded = tiers.index(qualified.tier_id) > tiers.index(grown.tier)
    if upgraded:
        grown = grown.evolve(tier=qualified.tier_id, tier_since=now, tier_upgrade_order=order_id)
    entry_id = new_id()
    lot = None
    if lot_points > 0:
        start = earned_on or day
        lot = Lot(lot_id=entry_id, member_id=member_id, at=now,
                  source="order" if earned_on is None else "guest_attach", ref=order_id, earned_on=start,
                  expires_on=expires_on(start, rules), original=lot_points, remaining=lot_points)
        grown = grown.evolve(open_lots_from=earliest(grown.open_lots_from, now))
    order = Order(order_id=order_id, member_id=member_id, guest=False, store_id=cmd.store_id, channel=cmd.channel,
                  paid_at=cmd.paid_at, amount=cmd.amount, items=cmd.items, points_earned=breakdown.points,
                  debt_paid=debt_paid, breakdown=breakdown.as_dict(), balance_after=grown.balance,
                  tier_before=tier_before.tier_id, tier_after=grown.tier, fingerprint="", created_at=now,
                  earn_entry_id=entry_id, earn_entry_at=now, refunded_amount=refunded_fen,
                  points_reversed=reversed_before, refunded_lines=refunded.refunded_lines if refunded else {},
                  coupons=cmd.coupons)
    detail: dict[str, Any] = {"breakdown": breakdown.as_dict(), "debt_paid": debt_paid}
    if reversed_before:
        detail["reversed_before_attach"] = reversed_before
    entry = LedgerEntry(entry_id=entry_id, member_id=member_id, at=now, kind="earn", points=credited,
                        balance_after=grown.balance, ref=order_id, detail=detail, lot=lot)
    change = Change(
        member_id=member_id, state=grown, expected_version=state.version,
        entries=[entry],
        rollups=rollups.for_sale(Sale(order_id=order_id, store_id=cmd.store_id, paid_at=cmd.paid_at,
                                      amount=cmd.amount, member=True, points=breakdown.points, shards=shards,
                                      coupons=tuple((c.issuer, c.discount) for c in coupon_uses))),
        events=[("tier_upgraded", {"from": tier_before.tier_id, "to": qualified.tier_id, "order_id": order_id})]
        if upgraded else [],
        tier_marker=TierMarker(qualified.tier_id) if upgraded else None)
    return change, order


def post_order(cmd: OrderInput, actor: Principal, members: MemberRepository, ledger: LedgerRepository,
               stores: StoreRepository) -> Posted:
    """One read (profile + state, one query) and one transaction. The order item is its own idempotency
    marker: the same order again answers the stored result; the same id with another body is a 409."""
    shards = _check_store("orders.post", cmd.store_id, actor, stores).rollup_shards
    print_ = _order_fingerprint(cmd, members)
    tiers = program.tiers(ledger)

    def attempt() -> Order:
        now = clock.now()
        target = _buyer(cmd, members)
        if target is None:
            if cmd.coupons:
                raise Invalid("coupons are redeemed for members; this phone is not a member's",
                              code="coupons_need_member", details=[{"loc": ["body", "coupons"], "msg": "no member"}])
            return _guest(cmd, members, ledger, print_, now, shards)
        head, state = live_member(ledger, target)
        uses = _coupon_uses(cmd, ledger) if cmd.coupons else []
        change, order = earn_for(cmd, head, state, program.rules(ledger), tiers, cmd.order_id, now, shards=shards,
                                 coupon_uses=uses)
        order = order.model_copy(update={"fingerprint": print_})
        change.order = order
        if cmd.coupons:  # each checked in the same transaction: redeemed for this order, with this discount
            change.coupon_posting = (cmd.order_id, cmd.amount + sum(c.discount for c in cmd.coupons), cmd.coupons)
            change.coupon_uses = [(use, 1) for use in uses]
        ledger.apply(change)
        return order

    try:
        order = optimistic(attempt)
    except DocumentExists:
        posted = _already_posted(cmd, print_, ledger, tiers)
        if posted is None:  # order items are never deleted: cannot happen, but never a 500
            raise Conflict("order_id already used for a different order", code="order_id_reused",
                           details={"order_id": cmd.order_id}) from None
        return posted
    metrics.add_metric(name="OrderPosted", unit="Count", value=1)
    metrics.add_metric(name="PointsEarned", unit="Count", value=order.points_earned)
    return Posted(order, True, _name(tiers, order.tier_before), _name(tiers, order.tier_after))


def _coupon_uses(cmd: OrderInput, ledger: LedgerRepository) -> list[CouponUse]:
    """What the order's coupons add to their templates' numbers, from what the counter redeemed for it (the
    basket: template, issuer, gift cost). The transaction still checks each code against its coupon."""
    basket = ledger.order_basket(cmd.order_id)
    held = {c["code"]: c for c in basket.coupons} if basket else {}
    missing = [c.code for c in cmd.coupons if c.code not in held]
    if missing:
        raise Invalid("the order's coupons do not match what was redeemed for this order",
                      code="coupons_not_redeemed", details={"codes": missing, "basket": basket is None})
    day = clock.business_day(cmd.paid_at)
    by_template: dict[str, list[str]] = {}
    for c in cmd.coupons:
        by_template.setdefault(held[c.code].get("template_id", ""), []).append(c.code)
    uses = []
    for c in cmd.coupons:
        template_id = held[c.code].get("template_id", "")
        uses.append(CouponUse(code=c.code, template_id=template_id, issuer=held[c.code].get("issuer", "HQ"),
                              store_id=cmd.store_id, day=day, discount=c.discount,
                              gift_cost=held[c.code].get("gift_cost", 0),
                              sales=cmd.amount if carries_sales(by_template, template_id, c.code) else 0))
    return uses


def _buyer(cmd: OrderInput, members: MemberRepository) -> str | None:
    """The member an order is for: its member_id, or whoever holds its phone; None for a guest."""
    if cmd.member_id is not None:
        return cmd.member_id
    found = members.find_by_phone(cmd.phone)  # type: ignore[arg-type]
    if found is None or found.status.value == "erased":
        return None
    return found.merged_into or found.member_id


def _guest_order(cmd: OrderInput, now: datetime, print_: str = "", phone_hash: str | None = None) -> Order:
    return Order(order_id=cmd.order_id, member_id=None, guest=True, store_id=cmd.store_id, channel=cmd.channel,
                 paid_at=cmd.paid_at, amount=cmd.amount, items=cmd.items, points_earned=0, debt_paid=0, breakdown=None,
                 balance_after=None, tier_before=None, tier_after=None, fingerprint=print_, created_at=now,
                 guest_phone_hash=phone_hash)


def _guest(cmd: OrderInput, members: MemberRepository, ledger: LedgerRepository, print_: str, now: datetime,
           shards: int) -> Order:
    """A phone that is not a member: recorded (sales facts) without points, attached if it registers."""
    order = _guest_order(cmd, now, print_, members.phone_hash(cmd.phone))  # type: ignore[arg-type]
    ledger.apply(Change(member_id=None, order=order, rollups=rollups.for_sale(Sale(
        order_id=cmd.order_id, store_id=cmd.store_id, paid_at=cmd.paid_at, amount=cmd.amount, member=False,
        shards=shards))))
    return order


def preview(cmd: OrderInput, actor: Principal, members: MemberRepository, ledger: LedgerRepository,
            stores: StoreRepository) -> Posted:
    """The same computation as posting, written nowhere (the POS shows it before payment). An order_id
    already posted answers what posting it again would: the stored receipt, or 409 for another body."""
    _check_store("orders.preview", cmd.store_id, actor, stores)
    now = clock.now()
    tiers = program.tiers(ledger)
    posted = _already_posted(cmd, _order_fingerprint(cmd, members), ledger, tiers)
    if posted is not None:
        return posted
    member_id = _buyer(cmd, members)
    if member_id is None:
        return Posted(_guest_order(cmd, now), False, None, None)
    head, state = live_member(ledger, member_id)
    _, order = earn_for(cmd, head, state, program.rules(ledger), tiers, cmd.order_id, now)
    return Posted(order, False, _name(tiers, order.tier_before), _name(tiers, order.tier_after))


def _already_posted(cmd: OrderInput, print_: str, ledger: LedgerRepository, tiers: TierProgram) -> Posted | None:
    """The stored answer for an order_id already posted with this body; 409 for another body."""
    existing = ledger.get_order(cmd.order_id, with_breakdown=True)
    if existing is None:
        return None
    if existing.fingerprint != print_:
        raise Conflict("order_id already used for a different order", code="order_id_reused",
                       details={"order_id": cmd.order_id})
    return Posted(existing, False, _name(tiers, existing.tier_before), _name(tiers, existing.tier_after))


def _name(tiers: TierProgram, tier_id: str | None) -> str | None:
    return tiers.get(tier_id).name if tier_id else None


