"""The member's PIPL rights: export everything held, erase personal data."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..domain.access import Principal
from ..domain.coupons import Coupon
from ..domain.errors import NotFound
from ..domain.members import Member, MemberStatus
from ..domain.orders import Order
from ..domain.policy import authorize
from ..domain.receipts import Refund
from ..observability import audit as audit_line
from .members import audit_entry, resolve
from .ports import CouponRepository, LedgerRepository, MemberRepository

PAGE = 500


@dataclass(frozen=True)
class HeldOrder:
    order: Order
    refunds: list[Refund]


@dataclass(frozen=True)
class Export:
    """Everything held on the person: the profile in the clear, every record of their partition (and of the
    members merged into them), their orders with refunds, and the guest orders of their phone(s)."""

    member: Member
    records: list[dict[str, Any]]
    orders: list[HeldOrder]
    guest_orders: list[HeldOrder]
    coupons: list[Coupon]


def export(member_id: str, actor: Principal, members: MemberRepository, ledger: LedgerRepository,
           coupons: CouponRepository) -> Export:
    """Everything we hold on the person (PIPL Art. 45). Orders are found through the purchase-history index
    (they live under the order, not the member), guest orders through the phone's lookup key: no scan."""
    authorize("members.export", actor, member_id=member_id)
    member, _ = resolve(members, member_id)
    merged = members.merged_away(member.member_id)
    # Duplicates first: an item a merge moves meanwhile is then read at least once (never missed).
    owners = [source_id for source_id, _ in merged] + [member.member_id]
    records = [record for owner in owners for record in members.records(owner)]
    order_ids = dict.fromkeys(order_id for owner in reversed(owners) for order_id in ledger.history_order_ids(owner))
    orders = [HeldOrder(order, refunds) for order, refunds in map(ledger.order_with_refunds, order_ids) if order]
    phones = dict.fromkeys(([members.phone_hash(member.phone)] if member.phone else [])
                           + [phone_hash for _, phone_hash in merged if phone_hash])
    guests: list[HeldOrder] = []
    for phone_hash in phones:
        for listed in ledger.guest_orders(phone_hash):
            order, refunds = ledger.order_with_refunds(listed.order_id)  # the index lags: read it as it is
            if order is not None and order.member_id is None and order.order_id not in order_ids:
                guests.append(HeldOrder(order, refunds))
    guests.sort(key=lambda held: held.order.paid_at, reverse=True)
    held_coupons, cursor = coupons.member_coupons(owners, None, None, PAGE)  # every state, the family's too
    while cursor:
        more, cursor = coupons.member_coupons(owners, None, cursor, PAGE)
        held_coupons += more
    audit_line("member.export", actor=actor.sub, role=actor.role.value, member_id=member.member_id)
    return Export(member=member, records=records, orders=orders, guest_orders=guests, coupons=held_coupons)


def erase(member_id: str, actor: Principal, members: MemberRepository) -> str:
    """Erase personal fields (PIPL deletion right); anonymised sales facts stay for the brand's totals.
    Every member merged into this one (through chains too) loses its phone and WeChat lookups as well.
    Idempotent: erasing an erased member answers the same, and finishes what a failed erasure left."""
    authorize("members.erase", actor, member_id=member_id)
    raw = members.get(member_id)
    if raw is None:
        raise NotFound("member not found", code="member_not_found", details={"member_id": member_id})
    if raw.status is not MemberStatus.ERASED:
        member, _ = resolve(members, member_id)
        members.erase(member, audit_entry(actor, "member.erased", ["phone", "name", "birthday", "gender", "openid"]))
    else:
        member = raw
    for source_id, _ in members.merged_away(member.member_id):
        members.erase_tombstone(source_id)
    audit_line("member.erase", actor=actor.sub, role=actor.role.value, member_id=member.member_id)
    return member.member_id
