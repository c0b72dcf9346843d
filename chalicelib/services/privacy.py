"""The member's PIPL rights: export everything held, erase personal data."""
from __future__ import annotations

from typing import Any

from ..domain.access import Principal
from ..domain.errors import NotFound
from ..domain.members import Member, MemberStatus
from ..domain.policy import authorize
from ..observability import audit as audit_line
from .members import audit_entry, resolve
from .ports import MemberRepository


def export(member_id: str, actor: Principal, members: MemberRepository) -> tuple[Member, list[dict[str, Any]]]:
    """Everything we hold on the person (PIPL access right): the profile in the clear and every record."""
    authorize("members.export", actor, member_id=member_id)
    member, _ = resolve(members, member_id)
    internal = ("pk", "gsi2pk", "gsi2sk", "gsi3pk", "gsi3sk")
    records = [{k: v for k, v in r.items() if k not in internal} for r in members.records(member.member_id)]
    audit_line("member.export", actor=actor.sub, role=actor.role.value, member_id=member.member_id)
    return member, records


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
