"""Guest orders: a phone's purchases before it registered, credited once when it does."""

from __future__ import annotations

from datetime import timedelta

from ..domain import clock
from ..domain.errors import DomainError
from ..domain.orders import OrderInput
from ..domain.rollups import DayRollup
from ..observability import logger
from . import program
from .ledger_common import live_member, optimistic
from .ports import LedgerRepository, MemberRepository
from .posting import earn_for

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
            head, state = live_member(ledger, member_id)
            cmd = OrderInput.model_construct(
                order_id=guest.order_id, member_id=state.member_id, phone=None, store_id=guest.store_id,
                channel=guest.channel, paid_at=guest.paid_at, amount=guest.amount, items=guest.items)
            change, order = earn_for(cmd, head, state, program.rules(ledger), program.tiers(ledger),
                                      guest.order_id, now, earned_on=clock.business_day(now), refunded=guest)
            change.order_claim = order.model_copy(update={"fingerprint": guest.fingerprint, "attached_at": now,
                                                          "created_at": guest.created_at})
            # The sale stays a guest sale of its day; the attach is a conversion of the attach day's.
            change.rollups = [DayRollup(guest.store_id, clock.business_day(now), {
                "attached_orders": 1, "points_issued": order.points_earned - order.points_reversed})]
            ledger.apply(change)
            return True

        attached += optimistic(attempt)
    return attached


def attach_after_registration(member_id: str, phone: str, members: MemberRepository, ledger: LedgerRepository) -> int:
    """After a registration or phone binding: credit the phone's recent guest orders. A failure here must
    not fail the registration; the next registration answer for the phone retries it (the attach is
    idempotent)."""
    try:
        return attach_guest_orders(member_id, phone, members, ledger)
    except DomainError as err:
        logger.warning("guest order attach deferred", extra={"member_id": member_id, "code": err.code})
        return 0
