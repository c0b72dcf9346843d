"""A coupon at the counter: look it up, redeem it for an order (exactly once), release it when the sale is
abandoned. The POS then posts the order with the coupons it carries (services/posting)."""
from __future__ import annotations

from ..domain import clock
from ..domain.access import Principal, Role
from ..domain.coupons import (
    Basket,
    Coupon,
    CouponRedemption,
    CouponState,
    LineDiscount,
    RedeemInput,
    Refusal,
    check_use,
    looks_like_code,
    normalize_code,
    split,
)
from ..domain.errors import Conflict, DomainError, Invalid, NotFound, StaleRead
from ..domain.policy import StoreRef, allow_role, authorize
from ..domain.stores import Store
from ..observability import metrics
from .ledger_common import fingerprint, live_member, optimistic
from .ports import CouponRepository, LedgerRepository, StoreRepository


def _not_found(code: str) -> NotFound:
    return NotFound("coupon not found", code="coupon_not_found", details={"code": code})


def _store(stores: StoreRepository, store_id: str, where: str) -> Store:
    store = stores.get(store_id)
    if store is None:
        raise Invalid("unknown store", code="unknown_store",
                      details=[{"loc": [where, "store_id"], "msg": "no such store"}])
    return store


def _refused(refusal: Refusal) -> DomainError:
    kind = Conflict if refusal.status == 409 else Invalid
    return kind(refusal.message, code=refusal.code, details=refusal.details)


def _same_member(ledger: LedgerRepository, named: str, holder: str) -> bool:
    """The coupon's holder is the member named at the counter, or one of them was merged into the other."""
    if named == holder:
        return True
    return live_member(ledger, named)[1].member_id == live_member(ledger, holder, erased_ok=True)[1].member_id


def _keep_last(stores: dict[str, str], n: int = 20) -> dict[str, str]:
    return dict(list(stores.items())[-n:])


def _find(coupons: CouponRepository, raw_code: str) -> tuple[str, Coupon]:
    code = normalize_code(raw_code)
    coupon = coupons.get_coupon(code) if looks_like_code(code) else None
    if coupon is None:
        raise _not_found(raw_code)
    return code, coupon


def lookup(raw_code: str, store_id: str | None, order_amount: int | None, actor: Principal,
           coupons: CouponRepository, stores: StoreRepository,
           ledger: LedgerRepository) -> tuple[Coupon, str | None, str | None, int | None]:
    """The coupon, its holder's masked phone (for counter roles), and whether it can be used at `store_id` for
    `order_amount` now: (coupon, phone, refusal code or None, discount)."""
    allow_role("coupons.read", actor)
    code, coupon = _find(coupons, raw_code)
    holder = live_member(ledger, coupon.member_id, erased_ok=True)[0]
    if actor.role is Role.MEMBER:
        authorize("coupons.read", actor, member_id=holder.member_id)
    store = None
    if store_id is not None:
        store = _store(stores, store_id, "query")
    if actor.role is not Role.MEMBER:
        if store is None and actor.role is not Role.HQ:  # HQ may look any coupon up, anywhere
            raise Invalid("store_id is required at the counter", code="validation_error",
                          details=[{"loc": ["query", "store_id"], "msg": "required"}])
        authorize("coupons.read", actor, store=store)
    refusal, discount = None, None
    if store is not None:
        try:
            discount = check_use(coupon, owner_matches=True, store_id=store.store_id, region_id=store.region_id,
                                 basket=None, order_amount=order_amount or 0, now=clock.now())
        except Refusal as why:
            refusal = why.code
        if order_amount is None:
            discount = None
    phone = holder.phone_masked if actor.role is not Role.MEMBER else None
    return coupon, phone, refusal, discount


def redeem(raw_code: str, cmd: RedeemInput, actor: Principal, coupons: CouponRepository, stores: StoreRepository,
           ledger: LedgerRepository) -> tuple[CouponRedemption, bool]:
    """Exactly once per code: the same order and body again answers the first answer; another body for that
    order is a 409; any other order a 409 `already_redeemed`. One BatchGetItem and one transaction."""
    store = _store(stores, cmd.store_id, "body")
    authorize("coupons.redeem", actor, store=store)
    code = normalize_code(raw_code)
    if not looks_like_code(code):
        raise _not_found(raw_code)
    print_ = fingerprint(cmd.model_dump(mode="json"))

    def attempt() -> tuple[CouponRedemption, bool]:
        coupon, basket, posted = coupons.coupon_at_counter(code, cmd.order_id)
        if coupon is None:
            raise _not_found(raw_code)
        done = coupon.redemption
        if coupon.state is CouponState.USED and done is not None and done.order_id == cmd.order_id:
            if coupon.redemption_print != print_:
                raise Conflict("this coupon was redeemed for this order with a different request",
                               code="redemption_conflict", details={"order_id": cmd.order_id})
            return done, False
        if coupon.state is CouponState.AVAILABLE and basket is not None and not basket.posted and \
                any(c["code"] == code for c in basket.coupons):
            # BatchGetItem reads each item on its own: a twin's redemption landed between the two reads (a basket
            # holds a code only while its coupon is used for that order). Read both again.
            raise StaleRead()
        if posted and coupon.state is CouponState.AVAILABLE:
            raise Conflict("the order has already been posted", code="order_posted",
                           details={"order_id": cmd.order_id})
        now = clock.to_ms(clock.now())
        try:
            discount = check_use(coupon, owner_matches=_same_member(ledger, cmd.member_id, coupon.member_id),
                                 store_id=store.store_id, region_id=store.region_id, basket=basket,
                                 order_amount=cmd.order_amount, now=now)
        except Refusal as why:
            raise _refused(why) from None
        before = basket.amount_left if basket else cmd.order_amount
        lines = None
        if cmd.lines is not None:
            shares = split(discount, [line.amount for line in cmd.lines])
            lines = [LineDiscount(sku=line.sku, amount=line.amount, discount=share, paid=line.amount - share)
                     for line, share in zip(cmd.lines, shares, strict=True)]
        answer = CouponRedemption(code=code, order_id=cmd.order_id, member_id=cmd.member_id, store_id=store.store_id,
                                  order_amount=cmd.order_amount, amount_before=before, discount=discount,
                                  amount_after=before - discount, gift=coupon.terms.gift, lines=lines,
                                  redeemed_at=now)
        used = coupon.model_copy(update={"state": CouponState.USED, "redemption": answer, "redemption_print": print_,
                                         "version": coupon.version + 1})
        held = basket or Basket(order_id=cmd.order_id, order_amount=cmd.order_amount)
        entry = {"code": code, "discount": discount, "stackable": coupon.terms.stackable,
                 "template_id": coupon.template_id, "issuer": coupon.issuer,
                 "gift_cost": coupon.terms.gift.cost if coupon.terms.gift else 0}
        held = held.model_copy(update={"coupons": [*held.coupons, entry],
                                       "version": held.version + 1})
        coupons.hold(used, coupon.version, held, basket.version if basket else 0)
        return answer, True

    answer, created = optimistic(attempt)
    if created:
        metrics.add_metric(name="CouponRedeemed", unit="Count", value=1)
    return answer, created


def cancel(raw_code: str, order_id: str, actor: Principal, coupons: CouponRepository,
           stores: StoreRepository) -> Coupon:
    """Release a coupon redeemed for an abandoned sale. Once the order is posted with it: 409 `order_posted`.
    A second cancel for the same order answers the coupon as the first left it."""
    allow_role("coupons.cancel", actor)
    code = normalize_code(raw_code)
    if not looks_like_code(code):
        raise _not_found(raw_code)

    def attempt() -> Coupon:
        coupon, basket, posted = coupons.coupon_at_counter(code, order_id)
        if coupon is None:
            raise _not_found(raw_code)
        held = coupon.redemption
        if coupon.state is not CouponState.USED or held is None or held.order_id != order_id:
            if order_id in coupon.released_orders:
                released_at = coupon.released_stores.get(order_id, "")
                authorize("coupons.cancel", actor, store=lambda: stores.get(released_at) or StoreRef(released_at))
                return coupon
            raise Conflict("this coupon is not held for that order", code="not_redeemed_for_order",
                           details={"order_id": order_id})
        authorize("coupons.cancel", actor, store=lambda: stores.get(held.store_id) or StoreRef(held.store_id))
        if basket is not None and basket.posted:
            raise Conflict("the order has been posted with this coupon; refund the order instead",
                           code="order_posted", details={"order_id": order_id})
        released = coupon.model_copy(update={
            "state": CouponState.AVAILABLE, "redemption": None, "redemption_print": None,
            "released_orders": [*coupon.released_orders, order_id][-20:], "version": coupon.version + 1,
            "released_stores": _keep_last({**coupon.released_stores, order_id: held.store_id})})
        if posted:  # posted without this coupon: the sale did not use it
            coupons.release_after_posting(released, coupon.version)
            return released
        left = [c for c in (basket.coupons if basket else []) if c["code"] != code]
        kept = (basket or Basket(order_id=order_id, order_amount=held.order_amount)).model_copy(
            update={"coupons": left, "version": (basket.version if basket else 0) + 1})
        coupons.hold(released, coupon.version, kept, basket.version if basket else 0)
        return released

    return optimistic(attempt)
