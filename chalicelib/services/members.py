"""Member use cases: register, look up, view, edit, merge, export, erase."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..domain import clock
from ..domain.access import Principal, Role, require_self, require_store
from ..domain.errors import Forbidden, Invalid, NotFound, PhoneTaken
from ..domain.ids import new_id
from ..domain.ledger import MemberState
from ..domain.members import AuditEntry, Consent, Member, MemberPatch, MemberStatus, MergeRecord, Registration
from ..domain.points import fold_states
from ..observability import audit as audit_line
from ..observability import metrics
from .ports import MemberRepository, StoreRepository

MAX_MERGE_HOPS = 10
MERGE_BATCHES_INLINE = 20  # ~1,000 items; beyond that the merge-resume job finishes the move


def _entry(actor: Principal, action: str, fields: list[str] | None = None) -> AuditEntry:
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
    require_store(actor, store.store_id, store.region_id)
    now = clock.now()
    member = Member(
        member_id=new_id(), phone=cmd.phone, name=cmd.name, gender=cmd.gender, birthday=cmd.birthday,
        home_store_id=store.store_id, registration_channel=cmd.channel, channels=frozenset({cmd.channel}),
        stores_visited=frozenset({store.store_id}), consent=Consent(marketing=cmd.consent.marketing, updated_at=now),
        registered_at=now, updated_at=now)
    try:
        members.create(member, _entry(actor, "member.registered", sorted(cmd.model_fields_set)))
    except PhoneTaken as taken:
        existing, _ = resolve(members, taken.member_id)
        if cmd.channel not in existing.channels:
            members.add_channel(existing.member_id, cmd.channel, _entry(actor, "member.channel_added", ["channels"]))
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
    require_self(actor, member_id)
    member, resolved_from = resolve(members, member_id)
    if actor.role is not Role.MEMBER:
        audit_line("member.read", actor=actor.sub, role=actor.role.value, member_id=member.member_id)
    return member, resolved_from


def update(member_id: str, patch: MemberPatch, actor: Principal, members: MemberRepository) -> Member:
    require_self(actor, member_id)
    member, _ = resolve(members, member_id)
    fields = patch.model_fields_set
    if "phone" in fields:
        # A member changes their phone only through WeChat's verified number; staff never.
        if actor.role is not Role.HQ:
            raise Forbidden("the phone changes only through the verified WeChat flow or HQ", code="phone_not_editable")
        if patch.phone is None:
            raise Invalid("phone cannot be cleared", code="invalid",
                          details=[{"loc": ["body", "phone"], "msg": "phone is required"}])
        if patch.phone != member.phone:
            members.change_phone(member, patch.phone, _entry(actor, "member.phone_changed", ["phone"]))
    changes: dict[str, Any] = {f: getattr(patch, f) for f in ("name", "gender", "birthday") if f in fields}
    if "consent" in fields:
        if patch.consent is None:
            raise Invalid("consent cannot be cleared", code="invalid",
                          details=[{"loc": ["body", "consent"], "msg": "give {marketing: bool}"}])
        changes["consent_marketing"] = patch.consent.marketing
    if changes:
        members.update_profile(member.member_id, changes, _entry(actor, "member.updated", sorted(changes)))
    return resolve(members, member.member_id)[0]


def merge(target_id: str, source_id: str, actor: Principal, members: MemberRepository,
          tier_rank: Callable[[str | None], int] = lambda _: 0, lowest_tier: str | None = None) -> MergeRecord:
    """Fold source into target. Step 1 (one transaction) redirects the source; then its items move in
    batches. A retry of the same merge answers the record (and finishes the move if it was interrupted)."""
    if target_id == source_id:
        raise Invalid("a member cannot be merged into itself", code="invalid_merge",
                      details=[{"loc": ["body", "source_member_id"], "msg": "same as target"}])
    existing = members.get_merge(target_id, source_id)
    if existing is None:
        target, target_from = resolve(members, target_id)
        if target_from:
            raise Invalid("target has itself been merged; merge into the survivor", code="invalid_merge",
                          details={"survivor_member_id": target.member_id})
        source = members.get(source_id)
        if source is None or source.status is not MemberStatus.ACTIVE:
            raise NotFound("source member not found or not active", code="member_not_found",
                           details={"member_id": source_id})
        record = MergeRecord(target_member_id=target_id, source_member_id=source_id, by=actor.sub,
                             started_at=clock.now(), state="moving")
        folded = None
        if source.state is not None:  # the duplicate's points, debt and history join the survivor's
            folded = fold_states(target.state or MemberState(member_id=target_id), source.state, tier_rank)
        members.start_merge(target, source, record, _entry(actor, "member.merged", [f"merged_from:{source_id}"]),
                            folded, lowest_tier)
        metrics.add_metric(name="MemberMerged", unit="Count", value=1)
        audit_line("member.merge", actor=actor.sub, role=actor.role.value, member_id=target_id,
                   source_member_id=source_id)
    continue_merge(members, target_id, source_id, max_batches=MERGE_BATCHES_INLINE)
    return members.get_merge(target_id, source_id)  # type: ignore[return-value]


def continue_merge(members: MemberRepository, target_id: str, source_id: str, max_batches: int) -> bool:
    """Move remaining items; True when the merge is complete. Safe to run twice at once (each batch is a
    conditional transaction; a lost race just looks again)."""
    record = members.get_merge(target_id, source_id)
    if record is None or record.state == "done":
        return True
    for _ in range(max_batches):
        moved = members.move_batch(target_id, source_id)
        if moved == 0:
            members.finish_merge(target_id, source_id)
            return True
    return False


def resume_pending_merges(members: MemberRepository, max_batches_each: int = 200) -> dict[str, int]:
    """Scheduled job: finish merges whose move was interrupted (found through the sparse work index)."""
    finished = unfinished = 0
    for record in members.pending_merges():
        if continue_merge(members, record.target_member_id, record.source_member_id, max_batches_each):
            finished += 1
        else:
            unfinished += 1
    return {"finished": finished, "unfinished": unfinished}


def export(member_id: str, actor: Principal, members: MemberRepository) -> tuple[Member, list[dict[str, Any]]]:
    """Everything we hold on the person (PIPL access right): the profile in the clear and every record."""
    require_self(actor, member_id)
    member, _ = resolve(members, member_id)
    internal = ("pk", "gsi2pk", "gsi2sk")
    records = [{k: v for k, v in r.items() if k not in internal} for r in members.records(member.member_id)]
    audit_line("member.export", actor=actor.sub, role=actor.role.value, member_id=member.member_id)
    return member, records


def erase(member_id: str, actor: Principal, members: MemberRepository) -> str:
    """Erase personal fields (PIPL deletion right); anonymised sales facts stay for the brand's totals.
    Idempotent: erasing an erased member answers the same."""
    require_self(actor, member_id)
    raw = members.get(member_id)
    if raw is None:
        raise NotFound("member not found", code="member_not_found", details={"member_id": member_id})
    if raw.status is MemberStatus.ERASED:
        return raw.member_id
    member, _ = resolve(members, member_id)
    members.erase(member, _entry(actor, "member.erased", ["phone", "name", "birthday", "gender", "openid"]))
    for source_id in member.merged_from:
        members.erase_tombstone(source_id)
    audit_line("member.erase", actor=actor.sub, role=actor.role.value, member_id=member.member_id)
    return member.member_id

