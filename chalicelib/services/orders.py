"""Posting orders and refunds: points, tier progress and member aggregates, exact under retries."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from ..domain import clock
from ..domain.access import Principal, Role, require_store
from ..domain.errors import Conflict, DocumentExists, Invalid, NotFound, StaleRead
from ..domain.ids import new_id
from ..domain.ledger import Change, Document, LedgerEntry, Lot, MemberState, TierMarker
from ..domain.orders import Order, OrderInput, RefundInput
from ..domain.points import (
    LotState,
    earliest,
    earn,
    expires_on,
    month_key,
    pay_debt,
    points_to_reverse,
    reverse,
    rolling_total,
)
from ..domain.program import PointsRules, TierProgram
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


def _check_store(store_id: str, actor: Principal, stores: StoreRepository) -> None:
    store = stores.get(store_id)
    if store is None:
        raise Invalid("unknown store", code="unknown_store",
                      details=[{"loc": ["body", "store_id"], "msg": "no such store"}])
    require_store(actor, store.store_id, store.region_id)


def _order_fingerprint(cmd: OrderInput, members: MemberRepository) -> str:
    fields = cmd.fingerprint_fields()
    if fields.get("phone"):  # never keep a phone in the clear, not even inside a hash input
        fields["phone"] = members.phone_hash(fields["phone"])
    return fingerprint(fields)


def progress(state: MemberState, tiers: TierProgram, now: datetime) -> int:
    return progress_on(state, tiers, clock.business_day(now))


def progress_on(state: MemberState, tiers: TierProgram, day: date) -> int:
    """Tier progress: rolling-12-month spend (or order count), never the points balance."""
    buckets = state.spend_months if tiers.basis == "spend" else state.orders_months
    return rolling_total(buckets, day)


def _earn_for(cmd: OrderInput, profile: dict[str, Any], state: MemberState, rules: PointsRules,
              tiers: TierProgram, order_id: str, now: datetime, earned_on: date | None = None,
              refunded: Order | None = None) -> tuple[Change, Order]:
    """`earned_on` (default: the day it was paid) starts the lot's validity; attached guest orders start
    it at the attach. `refunded`: a guest order being attached after refunds of its own. Its points are
    computed on the whole order and the refunds' share taken off at once, exactly as if the refunds had
    come after (so later refunds of it reverse the rest with the usual formula)."""
    member_id = state.member_id
    day = clock.business_day(cmd.paid_at)
    tier_before = tiers.get(state.tier)
    breakdown = earn(cmd.amount, rules, tier_before, day, profile.get("birth_month"))
    refunded_fen = refunded.refunded_amount if refunded else 0
    reversed_before = points_to_reverse(breakdown.points, cmd.amount, 0, refunded_fen, 0)
    credited = breakdown.points - reversed_before
    lot_points, debt_paid = pay_debt(credited, state.owed)
    net = cmd.amount - refunded_fen
    month = month_key(day)
    categories = dict(state.categories)
    for line in cmd.items:
        categories[line.category] = categories.get(line.category, 0) + line.amount
    if refunded and refunded_fen:
        categories = _less_categories(categories, refunded, RefundInput.model_construct(
            amount=refunded_fen, items=None))
    grown = state.evolve(
        version=state.version + 1, available=state.available + lot_points, owed=state.owed - debt_paid,
        spend_months={**state.spend_months, month: state.spend_months.get(month, 0) + net},
        orders_months={**state.orders_months, month: state.orders_months.get(month, 0) + 1},
        order_count=state.order_count + 1, lifetime_spend=state.lifetime_spend + net,
        lifetime_earned=state.lifetime_earned + credited,
        first_purchase_at=min(filter(None, [state.first_purchase_at, cmd.paid_at])),
        last_purchase_at=max(filter(None, [state.last_purchase_at, cmd.paid_at])),
        stores=state.stores | {cmd.store_id}, categories=categories,
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
                  points_reversed=reversed_before, refunded_lines=refunded.refunded_lines if refunded else {})
    detail: dict[str, Any] = {"breakdown": breakdown.as_dict(), "debt_paid": debt_paid}
    if reversed_before:
        detail["reversed_before_attach"] = reversed_before
    entry = LedgerEntry(entry_id=entry_id, member_id=member_id, at=now, kind="earn", points=credited,
                        balance_after=grown.balance, ref=order_id, detail=detail, lot=lot)
    change = Change(
        member_id=member_id, state=grown, expected_version=state.version,
        entries=[entry],
        rollups=[(cmd.store_id, day, {"sales_fen": cmd.amount, "orders": 1, "member_orders": 1,
                                      "points_issued": breakdown.points})],
        events=[("tier_upgraded", {"from": tier_before.tier_id, "to": qualified.tier_id, "order_id": order_id})]
        if upgraded else [],
        tier_marker=TierMarker(qualified.tier_id) if upgraded else None)
    return change, order


def post_order(cmd: OrderInput, actor: Principal, members: MemberRepository, ledger: LedgerRepository,
               stores: StoreRepository) -> Posted:
    """One read (profile + state, one query) and one transaction. The order item is its own idempotency
    marker: the same order again answers the stored result; the same id with another body is a 409."""
    _check_store(cmd.store_id, actor, stores)
    print_ = _order_fingerprint(cmd, members)
    tiers = program.tiers(ledger)

    def attempt() -> Order:
        now = clock.now()
        target = _buyer(cmd, members)
        if target is None:
            return _guest(cmd, members, ledger, print_, now)
        profile, state = live_member(ledger, target)
        change, order = _earn_for(cmd, profile, state, program.rules(ledger), tiers, cmd.order_id, now)
        order = order.model_copy(update={"fingerprint": print_})
        change.order = order
        ledger.apply(change)
        return order

    try:
        order = optimistic(attempt)
    except DocumentExists:
        existing = ledger.get_order(cmd.order_id, with_breakdown=True)
        if existing is None or existing.fingerprint != print_:
            raise Conflict("order_id already used for a different order", code="order_id_reused",
                           details={"order_id": cmd.order_id}) from None
        return Posted(existing, False, _name(tiers, existing.tier_before), _name(tiers, existing.tier_after))
    metrics.add_metric(name="OrderPosted", unit="Count", value=1)
    metrics.add_metric(name="PointsEarned", unit="Count", value=order.points_earned)
    return Posted(order, True, _name(tiers, order.tier_before), _name(tiers, order.tier_after))


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


def _guest(cmd: OrderInput, members: MemberRepository, ledger: LedgerRepository, print_: str, now: datetime) -> Order:
    """A phone that is not a member: recorded (sales facts) without points, attached if it registers."""
    order = _guest_order(cmd, now, print_, members.phone_hash(cmd.phone))  # type: ignore[arg-type]
    ledger.apply(Change(member_id=None, order=order, rollups=[(
        cmd.store_id, clock.business_day(cmd.paid_at), {"sales_fen": cmd.amount, "orders": 1, "guest_orders": 1})]))
    return order


def preview(cmd: OrderInput, actor: Principal, members: MemberRepository, ledger: LedgerRepository,
            stores: StoreRepository) -> Posted:
    """The same computation as posting, written nowhere (the POS shows it before payment)."""
    _check_store(cmd.store_id, actor, stores)
    now = clock.now()
    tiers = program.tiers(ledger)
    member_id = _buyer(cmd, members)
    if member_id is None:
        return Posted(_guest_order(cmd, now), False, None, None)
    profile, state = live_member(ledger, member_id)
    _, order = _earn_for(cmd, profile, state, program.rules(ledger), tiers, cmd.order_id, now)
    return Posted(order, False, _name(tiers, order.tier_before), _name(tiers, order.tier_after))


def _name(tiers: TierProgram, tier_id: str | None) -> str | None:
    return tiers.get(tier_id).name if tier_id else None


# ---- refunds ----------------------------------------------------------------------------------------------
def refund(order_id: str, cmd: RefundInput, actor: Principal, ledger: LedgerRepository) -> tuple[dict[str, Any], bool]:
    """Reverse what the order gave, in proportion: unspent points removed, spent ones owed, expired ones
    not clawed back; a tier upgrade reverted at once. Idempotent by refund_id (200 + the same answer)."""
    print_ = fingerprint(cmd.model_dump(mode="json"))

    def replay() -> tuple[dict[str, Any], bool] | None:
        done = ledger.get_document("refund", order_id, cmd.refund_id)
        if done is None:
            return None
        if done["fingerprint"] != print_:
            raise Conflict("refund_id already used for a different refund", code="refund_id_reused",
                           details={"refund_id": cmd.refund_id})
        return done["answer"], False

    if actor.role is Role.INTEGRATION:  # scope before anything, replays included: they reveal the answer
        scoped = ledger.get_order(order_id)
        if scoped is None:
            raise NotFound("order not found", code="order_not_found", details={"order_id": order_id})
        require_store(actor, scoped.store_id, None)
    # Then replays: a retry of a refund that emptied the order must not be judged "exceeds the order".
    previous = replay()
    if previous:
        return previous

    def attempt() -> dict[str, Any]:
        order = ledger.get_order(order_id)
        if order is None:
            raise NotFound("order not found", code="order_not_found", details={"order_id": order_id})
        if actor.role is Role.INTEGRATION:  # a machine client refunds only at the stores it serves
            require_store(actor, order.store_id, None)
        left = order.amount - order.refunded_amount
        if cmd.amount > left:
            raise Invalid("refund exceeds what remains of the order", code="refund_exceeds_order",
                          details={"refundable": left, "requested": cmd.amount})
        lines = {line.sku: line for line in order.items}
        unknown = [line.sku for line in cmd.items or [] if line.sku not in lines]
        if unknown:
            raise Invalid("refund names items not in the order", code="unknown_items", details={"skus": unknown})
        lines_after = dict(order.refunded_lines)
        for r in cmd.items or []:
            lines_after[r.sku] = lines_after.get(r.sku, 0) + r.amount
        too_much = sorted({r.sku for r in cmd.items or [] if r.qty > lines[r.sku].qty}
                          | {sku for sku, amount in lines_after.items() if amount > lines[sku].amount})
        if too_much:  # across all refunds of the order (refunds that named no lines are bounded by the total)
            raise Invalid("refund of a line exceeds what remains of that line", code="refund_exceeds_line",
                          details={"skus": too_much})
        now = clock.now()
        day = clock.business_day(now)
        to_reverse = points_to_reverse(order.points_earned, order.amount, order.refunded_amount, cmd.amount,
                                       order.points_reversed)
        change = Change(member_id=order.member_id, order_refund=(order_id, order.refunded_amount,
                                                                 order.refunded_amount + cmd.amount,
                                                                 order.points_reversed + to_reverse, lines_after),
                        rollups=[(order.store_id, day, {"refunds_fen": cmd.amount, "refunds": 1,
                                                        "points_reversed": to_reverse})])
        answer: dict[str, Any] = {"refund_id": cmd.refund_id, "order_id": order_id, "amount": cmd.amount,
                                  "refunded_total": order.refunded_amount + cmd.amount, "points_reversed": to_reverse,
                                  "points_removed": 0, "points_owed": 0, "points_forgiven": 0, "member_id": None,
                                  "balance": None, "owed": None, "tier": None, "tier_changed": False,
                                  "created_at": clock.iso(now)}
        if order.member_id:
            _reverse_member(change, order, cmd, to_reverse, answer, ledger, now)
        change.documents.append(Document(kind="refund", owner=order_id, doc_id=cmd.refund_id,
                                         body={"fingerprint": print_, "answer": answer}))
        ledger.apply(change)
        return answer

    try:
        answer = optimistic(attempt)
    except DocumentExists:
        again = replay()
        if again is None:
            raise
        return again
    metrics.add_metric(name="RefundPosted", unit="Count", value=1)
    return answer, True


def _reverse_member(change: Change, order: Order, cmd: RefundInput, to_reverse: int, answer: dict[str, Any],
                    ledger: LedgerRepository, now: datetime) -> None:
    profile, state = live_member(ledger, order.member_id)  # type: ignore[arg-type]
    tiers = program.tiers(ledger)
    removed = forgiven = owed = 0
    if to_reverse:
        earned = ledger.entry(order.member_id, order.earn_entry_at, order.earn_entry_id) \
            if order.earn_entry_id and order.earn_entry_at else None  # type: ignore[arg-type]
        if earned is None and order.earn_entry_id:
            raise StaleRead()  # it exists (entries are never deleted): a merge was moving it, look again
        lot = earned.lot if earned else None
        today = clock.business_day(now)
        if lot is not None:
            expired = lot.status == "expired" or lot.expires_on < today
            rev = reverse(LotState(remaining=lot.remaining, expired=lot.expired, forgiven=lot.forgiven,
                                   expired_flag=expired), to_reverse)
            removed, forgiven, owed = rev.removed, rev.forgiven, rev.owed
            change.updated_lots.append((lot.evolve(remaining=lot.remaining - removed, clawed=lot.clawed + removed,
                                                   forgiven=lot.forgiven + forgiven, owed=lot.owed + owed),
                                        lot.remaining))
        else:  # every point of this order paid an earlier debt: all of it is owed again
            owed = to_reverse
    month = month_key(clock.business_day(order.paid_at))
    full = order.refunded_amount + cmd.amount == order.amount
    categories = _less_categories(state.categories, order, cmd)
    shrunk = state.evolve(
        version=state.version + 1, available=state.available - removed, owed=state.owed + owed,
        spend_months={**state.spend_months, month: state.spend_months.get(month, 0) - cmd.amount},
        orders_months={**state.orders_months, month: state.orders_months.get(month, 0) - (1 if full else 0)},
        order_count=state.order_count - (1 if full else 0), lifetime_spend=state.lifetime_spend - cmd.amount,
        lifetime_earned=state.lifetime_earned - to_reverse, categories=categories)
    # No "buy, upgrade, refund": drop to what the remaining spend qualifies for, never below the tier
    # confirmed at the last re-evaluation.
    qualified = tiers.index(tiers.qualified(progress(shrunk, tiers, now)).tier_id)
    floor = tiers.index(shrunk.tier_base)
    current = tiers.index(shrunk.tier)
    if qualified < current:
        new_tier = tiers.tiers[max(qualified, floor)].tier_id
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


def _less_categories(categories: dict[str, int], order: Order, cmd: RefundInput) -> dict[str, int]:
    """Refunded lines leave the favourite-category tally: by sku when given, else in proportion."""
    result = dict(categories)
    by_sku = {line.sku: line.category for line in order.items}
    if cmd.items:
        for line in cmd.items:
            cat = by_sku[line.sku]
            result[cat] = result.get(cat, 0) - line.amount
        return result
    left = cmd.amount
    for i, line in enumerate(order.items):
        share = left if i == len(order.items) - 1 else (cmd.amount * line.amount) // order.amount
        result[line.category] = result.get(line.category, 0) - share
        left -= share
    return result


# ---- guest orders -----------------------------------------------------------------------------------------
GUEST_ATTACH_WINDOW = timedelta(days=30)


def attach_guest_orders(member_id: str, phone: str, members: MemberRepository, ledger: LedgerRepository) -> int:
    """Credit the guest orders of a phone that just registered (paid within the last 30 days), each once:
    the order is claimed with a condition that it is still a guest order. The lot's expiry counts from
    the attach. Safe to run again (every registration answer runs it, so a failed attach heals)."""
    now = clock.now()
    attached = 0
    for listed in ledger.guest_orders(members.phone_hash(phone)):
        if listed.paid_at < now - GUEST_ATTACH_WINDOW or listed.member_id:
            continue

        def attempt(order_id: str = listed.order_id) -> bool:
            guest = ledger.get_order(order_id)  # the index lags: refunds since must count
            if guest is None or guest.member_id or guest.refunded_amount >= guest.amount:
                return False  # attached meanwhile, or refunded in full: nothing to credit
            profile, state = live_member(ledger, member_id)
            cmd = OrderInput.model_construct(
                order_id=guest.order_id, member_id=state.member_id, phone=None, store_id=guest.store_id,
                channel=guest.channel, paid_at=guest.paid_at, amount=guest.amount, items=guest.items)
            change, order = _earn_for(cmd, profile, state, program.rules(ledger), program.tiers(ledger),
                                      guest.order_id, now, earned_on=clock.business_day(now), refunded=guest)
            change.order_claim = order.model_copy(update={"fingerprint": guest.fingerprint, "attached_at": now,
                                                          "created_at": guest.created_at})
            change.rollups = [(guest.store_id, clock.business_day(now), {"member_orders": 1,
                                                                         "points_issued": order.points_earned
                                                                         - order.points_reversed})]
            ledger.apply(change)
            return True

        attached += optimistic(attempt)
    return attached
