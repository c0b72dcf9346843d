"""Refunding an order: its points, tier progress and aggregates reversed in proportion, exact under retries."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from ..domain import clock, rollups
from ..domain.access import Principal
from ..domain.coupons import CouponState
from ..domain.errors import Conflict, DocumentExists, Invalid, NotFound, StaleRead
from ..domain.ids import new_id
from ..domain.ledger import Change, Document, LedgerEntry, MemberState, TierMarker
from ..domain.orders import Order, RefundInput, refund_lines_after
from ..domain.points import (
    LotState,
    less_categories,
    month_key,
    points_to_reverse,
    reverse,
    tier_after_refund,
    tier_progress,
)
from ..domain.policy import Scope, StoreRef, authorize, scope_of
from ..domain.pool import CouponUse, carries_sales
from ..domain.receipts import Refund
from ..observability import metrics
from . import program
from .ledger_common import AlreadyDone, fingerprint, live_member, optimistic
from .ports import CouponRepository, LedgerRepository, StoreRepository


def refund(order_id: str, cmd: RefundInput, actor: Principal, ledger: LedgerRepository,
           stores: StoreRepository, coupons: CouponRepository) -> tuple[Refund, bool]:
    """Reverse what the order gave, in proportion: unspent points removed, spent ones owed, expired ones
    not clawed back; a tier upgrade reverted at once. Idempotent by refund_id (200 + the same answer)."""
    print_ = fingerprint(cmd.model_dump(mode="json"))

    def replay() -> tuple[Refund, bool] | None:
        done = ledger.get_document("refund", order_id, cmd.refund_id)
        if done is None:
            return None
        if done["fingerprint"] != print_:
            raise Conflict("refund_id already used for a different refund", code="refund_id_reused",
                           details={"refund_id": cmd.refund_id})
        return Refund.model_validate(done["answer"]), False

    def store_of(order: Order) -> Any:
        return lambda: stores.get(order.store_id) or StoreRef(order.store_id)

    # Scope before anything, replays included (they reveal the answer), for callers whose rule needs the
    # order's store; the read is skipped for the others.
    if scope_of("orders.refund", actor) is Scope.STORE:
        scoped = ledger.get_order(order_id)
        if scoped is None:
            raise NotFound("order not found", code="order_not_found", details={"order_id": order_id})
        authorize("orders.refund", actor, store=store_of(scoped))
    # Then replays: a retry of a refund that emptied the order must not be judged "exceeds the order".
    previous = replay()
    if previous:
        return previous

    def attempt() -> dict[str, Any]:
        order = ledger.get_order(order_id)
        if order is None:
            raise NotFound("order not found", code="order_not_found", details={"order_id": order_id})
        authorize("orders.refund", actor, store=store_of(order))
        left = order.amount - order.refunded_amount
        if cmd.amount > left and (twin := replay()) is not None:
            raise AlreadyDone(twin[0].model_dump(mode="json"))  # a twin of this refund emptied the order
        if cmd.amount > left:
            raise Invalid("refund exceeds what remains of the order", code="refund_exceeds_order",
                          details={"refundable": left, "requested": cmd.amount})
        skus = {line.sku for line in order.items}
        unknown = [line.sku for line in cmd.items or [] if line.sku not in skus]
        if unknown:
            raise Invalid("refund names items not in the order", code="unknown_items", details={"skus": unknown})
        lines_after, too_much = refund_lines_after(order.items, order.refunded_lines, cmd.items or [])
        if too_much:
            raise Invalid("refund of a line exceeds what remains of that line", code="refund_exceeds_line",
                          details={"skus": too_much})
        now = clock.now()
        to_reverse = points_to_reverse(order.points_earned, order.amount, order.refunded_amount, cmd.amount,
                                       order.points_reversed)
        holder = live_member(ledger, order.member_id, erased_ok=True) if order.member_id else None
        if holder is not None and holder[0].status == "erased":
            # The customer's refund never depends on a privacy request: it is recorded against the order and
            # the sales figures; an erased member's points are closed, so none move.
            holder, to_reverse = None, 0
        shards = _shards(stores, order.store_id)
        change = Change(member_id=order.member_id, order_refund=(order_id, order.refunded_amount,
                                                                 order.refunded_amount + cmd.amount,
                                                                 order.points_reversed + to_reverse, lines_after),
                        rollups=[rollups.for_refund(order.store_id, cmd.refund_id, now, cmd.amount, to_reverse,
                                                    shards)])
        answer: dict[str, Any] = {"refund_id": cmd.refund_id, "order_id": order_id, "amount": cmd.amount,
                                  "refunded_total": order.refunded_amount + cmd.amount, "points_reversed": to_reverse,
                                  "points_removed": 0, "points_owed": 0, "points_forgiven": 0, "member_id": None,
                                  "balance": None, "owed": None, "tier": None, "tier_changed": False,
                                  "created_at": clock.iso(now)}
        if holder is not None:
            _reverse_member(change, order, cmd, to_reverse, answer, ledger, now, holder[1])
        if order.coupons and order.refunded_amount + cmd.amount == order.amount:
            answer["coupons_restored"] = _restore_coupons(change, order, coupons, now, shards)
        change.documents.append(Document(kind="refund", owner=order_id, doc_id=cmd.refund_id,
                                         body={"fingerprint": print_, "answer": answer}))
        ledger.apply(change)
        return answer

    try:
        answer = optimistic(attempt)
    except AlreadyDone as twin:
        return Refund.model_validate(twin.answer), False
    except DocumentExists:
        again = replay()
        if again is None:
            raise
        return again
    metrics.add_metric(name="RefundPosted", unit="Count", value=1)
    return Refund.model_validate(answer), True


def _shards(stores: StoreRepository, store_id: str) -> int:
    store = stores.get(store_id)
    return store.rollup_shards if store is not None else 1


def _restore_coupons(change: Change, order: Order, coupons: CouponRepository, now: datetime,
                     shards: int) -> list[str]:
    """The whole order refunded: its coupons go back to their holder while still valid (a partial refund never
    restores). Each on the version read, still redeemed for this order: never restored twice."""
    restored = []
    found = coupons.coupons([c.code for c in order.coupons])
    by_template: dict[str, list[str]] = {}
    for coupon in found:
        by_template.setdefault(coupon.template_id, []).append(coupon.code)
    for coupon in found:
        held = coupon.redemption
        if coupon.state is not CouponState.USED or held is None or held.order_id != order.order_id:
            continue
        if now > coupon.valid_to:
            continue  # past its end: it stays used (it was, for an order now refunded)
        change.coupon_restores.append((coupon.model_copy(update={
            "state": CouponState.AVAILABLE, "redemption": None, "redemption_print": None, "restored_at": now,
            "released_orders": [*coupon.released_orders, order.order_id][-20:],
            "released_stores": dict(list({**coupon.released_stores, order.order_id: held.store_id}.items())[-20:]),
            "version": coupon.version + 1}),
            coupon.version))
        # out of the numbers of the day and month the order counted it in
        change.coupon_uses.append((CouponUse(
            code=coupon.code, template_id=coupon.template_id, issuer=coupon.issuer, store_id=order.store_id,
            day=clock.business_day(order.paid_at), discount=held.discount,
            gift_cost=coupon.terms.gift.cost if coupon.terms.gift else 0,
            sales=order.amount if carries_sales(by_template, coupon.template_id, coupon.code) else 0), -1))
        restored.append(coupon.code)
    given_back = [(use.issuer, use.discount) for use, sign in change.coupon_uses if sign < 0]
    change.rollups += rollups.coupons_given_back(order.store_id, order.order_id, order.paid_at, given_back, shards,
                                                 whole=len(given_back) == len(order.coupons))
    return sorted(restored)


def _reverse_member(change: Change, order: Order, cmd: RefundInput, to_reverse: int, answer: dict[str, Any],
                    ledger: LedgerRepository, now: datetime, state: MemberState) -> None:
    change.member_id = state.member_id  # the survivor, when the order's member was merged away
    tiers = program.tiers(ledger)
    removed = forgiven = owed = lapsed_now = 0
    if to_reverse:
        earned = ledger.entry(order.member_id, order.earn_entry_at, order.earn_entry_id) \
            if order.earn_entry_id and order.earn_entry_at else None  # type: ignore[arg-type]
        if earned is None and order.earn_entry_id:
            raise StaleRead()  # it exists (entries are never deleted): a merge was moving it, look again
        lot = earned.lot if earned else None
        today = clock.business_day(now)
        if lot is not None:
            read_remaining = lot.remaining
            if lot.remaining and lot.expires_on < today:
                # Past its last day, not yet reached by the nightly sweep: expire it here, exactly as the
                # sweep would, so the refund forgives those points whenever the sweep runs.
                lapsed = lot.remaining
                lot = lot.evolve(remaining=0, expired=lot.expired + lapsed, status="expired")
                change.entries.append(LedgerEntry(
                    entry_id=new_id(), member_id=lot.member_id, at=now, kind="expiry", points=-lapsed,
                    balance_after=state.balance - lapsed, ref=lot.lot_id,
                    detail={"expires_on": lot.expires_on.isoformat(), "earned_on": lot.earned_on.isoformat()}))
            expired = lot.status == "expired" or lot.expires_on < today
            rev = reverse(LotState(remaining=lot.remaining, expired=lot.expired, forgiven=lot.forgiven,
                                   expired_flag=expired), to_reverse)
            removed, forgiven, owed = rev.removed, rev.forgiven, rev.owed
            change.updated_lots.append((lot.evolve(remaining=lot.remaining - removed, clawed=lot.clawed + removed,
                                                   forgiven=lot.forgiven + forgiven, owed=lot.owed + owed),
                                        read_remaining))
            lapsed_now = read_remaining - lot.remaining
        else:  # every point of this order paid an earlier debt: all of it is owed again
            owed = to_reverse
    month = month_key(clock.business_day(order.paid_at))
    full = order.refunded_amount + cmd.amount == order.amount
    by_sku: dict[str, int] = {}
    for line in cmd.items or []:
        by_sku[line.sku] = by_sku.get(line.sku, 0) + line.amount
    categories = less_categories(state.categories, [(x.sku, x.category, x.amount) for x in order.items],
                                 order.amount, cmd.amount, by_sku or None)
    shrunk = state.evolve(
        version=state.version + 1, available=state.available - removed - lapsed_now, owed=state.owed + owed,
        spend_months={**state.spend_months, month: state.spend_months.get(month, 0) - cmd.amount},
        orders_months={**state.orders_months, month: state.orders_months.get(month, 0) - (1 if full else 0)},
        order_count=state.order_count - (1 if full else 0), lifetime_spend=state.lifetime_spend - cmd.amount,
        lifetime_earned=state.lifetime_earned - to_reverse, categories=categories)
    # No "buy, upgrade, refund": the levels this refund's spend crosses are taken back at once, never
    # below the tier confirmed at the last review, and never a demotion a program change implies.
    today = clock.business_day(now)
    before = tiers.index(tiers.qualified(tier_progress(state, tiers, today)).tier_id)
    after = tiers.index(tiers.qualified(tier_progress(shrunk, tiers, today)).tier_id)
    current = tiers.index(shrunk.tier)
    new_tier = tiers.tiers[tier_after_refund(current, tiers.index(shrunk.tier_base), before, after)].tier_id
    if new_tier != shrunk.tier:
        change.events.append(("tier_reverted", {"from": shrunk.tier, "to": new_tier, "order_id": order.order_id}))
        shrunk = shrunk.evolve(tier=new_tier, tier_since=now, tier_upgrade_order=None)
        change.tier_marker = TierMarker(new_tier if tiers.index(new_tier) > 0 else None)
        answer["tier_changed"] = True
    change.state, change.expected_version = shrunk, state.version
    change.entries.append(LedgerEntry(entry_id=new_id(), member_id=state.member_id, at=now, kind="refund",
                                      points=-(removed + owed), balance_after=shrunk.balance, ref=order.order_id,
                                      detail={"refund_id": cmd.refund_id, "reversed": to_reverse, "removed": removed,
                                              "owed": owed, "forgiven": forgiven}))
    answer.update(member_id=state.member_id, points_removed=removed, points_owed=owed, points_forgiven=forgiven,
                  balance=shrunk.balance, owed=shrunk.owed, tier=shrunk.tier)
