"""Member use cases: register, look up, view, edit (merges: merges.py; PIPL rights: privacy.py)."""
from __future__ import annotations

from typing import Any

from ..domain import clock
from ..domain.access import Principal, Role
from ..domain.errors import Invalid, NotFound, PhoneTaken
from ..domain.ids import new_id
from ..domain.members import AuditEntry, Consent, Member, MemberPatch, MemberStatus, Registration
from ..domain.policy import authorize
from ..observability import audit as audit_line
from ..observability import metrics
from .guest_orders import attach_after_registration
from .ports import LedgerRepository, MemberRepository, StoreRepository

MAX_MERGE_HOPS = 10


def audit_entry(actor: Principal, action: str, fields: list[str] | None = None) -> AuditEntry:
    return AuditEntry(actor=actor.sub, role=actor.role.value, action=action, fields=fields or [], at=clock.now())


def resolve(repo: MemberRepository, member_id: str) -> tuple[Member, str | None]:
    """The live member behind an id, following merge tombstones. Returns (member, id it was resolved from)."""
    member = repo.get(member_id)
    hops = 0
    while member is not None and member.status is MemberStatus.MERGED and member.merged_into:
        hops += 1
        if hops > MAX_MERGE_HOPS:
            break
        member = repo.get(member.merged_into)
    if member is None:
        raise NotFound("member not found", code="member_not_found", details={"member_id": member_id})
    if member.status is MemberStatus.ERASED:
        raise NotFound("member has been erased", code="member_erased", details={"member_id": member_id})
    return member, (member_id if member.member_id != member_id else None)


def register(cmd: Registration, actor: Principal, members: MemberRepository,
             stores: StoreRepository) -> tuple[Member, bool]:
    """Register a person, or return the member who already holds the phone (recording the new channel).
    Uniqueness is a condition on the phone marker, so two stores registering at once get one member."""
    store = stores.get(cmd.store_id)
    if store is None:
        raise Invalid("unknown store", code="unknown_store",
                      details=[{"loc": ["body", "store_id"], "msg": "no such store"}])
    authorize("members.register", actor, store=store)
    now = clock.now()
    member = Member(
        member_id=new_id(), phone=cmd.phone, name=cmd.name, gender=cmd.gender, birthday=cmd.birthday,
        home_store_id=store.store_id, registration_channel=cmd.channel, channels=frozenset({cmd.channel}),
        stores_visited=frozenset({store.store_id}), consent=Consent(marketing=cmd.consent.marketing, updated_at=now),
        registered_at=now, updated_at=now)
    try:
        members.create(member, audit_entry(actor, "member.registered", sorted(cmd.model_fields_set)))
    except PhoneTaken as taken:
        existing, _ = resolve(members, taken.member_id)
        if cmd.channel not in existing.channels:
            members.add_channel(existing.member_id, cmd.channel,
                                audit_entry(actor, "member.channel_added", ["channels"]))
            existing, _ = resolve(members, existing.member_id)
        return existing, False
    metrics.add_metric(name="MemberRegistered", unit="Count", value=1)
    return member, True


def lookup_by_phone(phone: str, actor: Principal, members: MemberRepository) -> list[Member]:
    found = members.find_by_phone(phone)
    result: list[Member] = []
    if found is not None and found.status is MemberStatus.ACTIVE:
        result = [members.get(found.member_id) or found]  # + its points state, for the counter
    elif found is not None:
        try:
            result = [resolve(members, found.member_id)[0]]  # a merged tombstone: follow it
        except NotFound:
            result = []
    audit_line("member.lookup", actor=actor.sub, role=actor.role.value,
               member_id=result[0].member_id if result else None, found=bool(result))
    return result


def view(member_id: str, actor: Principal, members: MemberRepository) -> tuple[Member, str | None]:
    authorize("members.view", actor, member_id=member_id)
    member, resolved_from = resolve(members, member_id)
    if actor.role is not Role.MEMBER:
        audit_line("member.read", actor=actor.sub, role=actor.role.value, member_id=member.member_id)
    return member, resolved_from


def update(member_id: str, patch: MemberPatch, actor: Principal, members: MemberRepository) -> Member:
    authorize("members.update", actor, member_id=member_id)
    member, _ = resolve(members, member_id)
    fields = patch.model_fields_set
    if "phone" in fields:
        # A member changes their phone only through WeChat's verified number; staff never.
        authorize("members.change_phone", actor)
        if patch.phone is None:
            raise Invalid("phone cannot be cleared", code="invalid",
                          details=[{"loc": ["body", "phone"], "msg": "phone is required"}])
        if patch.phone != member.phone:
            members.change_phone(member, patch.phone, audit_entry(actor, "member.phone_changed", ["phone"]))
    changes: dict[str, Any] = {f: getattr(patch, f) for f in ("name", "gender", "birthday") if f in fields}
    if "consent" in fields:
        if patch.consent is None:
            raise Invalid("consent cannot be cleared", code="invalid",
                          details=[{"loc": ["body", "consent"], "msg": "give {marketing: bool}"}])
        changes["consent_marketing"] = patch.consent.marketing
    if changes:
        members.update_profile(member.member_id, changes, audit_entry(actor, "member.updated", sorted(changes)))
    return resolve(members, member.member_id)[0]


def register_member(cmd: Registration, actor: Principal, members: MemberRepository, stores: StoreRepository,
                    ledger: LedgerRepository) -> tuple[Member, bool]:
    """The counter's registration: register (or find) the member, then credit the phone's recent guest
    orders (paid in the last 30 days) and answer the member with them."""
    member, created = register(cmd, actor, members, stores)
    if attach_after_registration(member.member_id, cmd.phone, members, ledger):
        member, _ = resolve(members, member.member_id)
    return member, created
