"""A member's coupons, as the mini-program and the counter list them."""
from __future__ import annotations

from ..domain import clock
from ..domain.access import Principal
from ..domain.coupons import Coupon
from ..domain.errors import NotFound
from ..domain.members import MemberStatus
from ..domain.policy import authorize
from .members import resolve
from .ports import CouponRepository, MemberRepository

MAX_FAMILY = 50


def member_coupons(member_id: str, state: str | None, cursor: str | None, limit: int, actor: Principal,
                   members: MemberRepository, coupons: CouponRepository) -> tuple[str, list[Coupon], str | None]:
    """The live member's coupons and those issued to anyone merged into them (a merged-away member's coupons
    are the survivor's). `state`: as stored; an available coupon past its end shows as expired at once."""
    member, _ = resolve(members, member_id)
    authorize("coupons.member_list", actor, member_id=member.member_id)
    family, pending = [member.member_id], list(member.merged_from)
    while pending and len(family) < MAX_FAMILY:
        mid = pending.pop()
        if mid in family:
            continue
        family.append(mid)
        merged = members.get(mid)
        if merged is not None and merged.status is MemberStatus.MERGED:
            pending.extend(merged.merged_from)
    if not family:
        raise NotFound("member not found", code="member_not_found", details={"member_id": member_id})
    # An available coupon past its end is expired even before the nightly sweep marks it: left out here.
    valid_after = clock.iso(clock.now()) if state == "available" else ""
    items, next_cursor = coupons.member_coupons(family, state, cursor, limit, valid_after)
    return member.member_id, items, next_cursor
