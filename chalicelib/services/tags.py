"""Member tags: HQ's tag rules (read by the nightly job) and the tags staff give a member by hand."""
from __future__ import annotations

from typing import Protocol

from ..domain import clock
from ..domain.access import Principal
from ..domain.errors import Conflict, NotFound
from ..domain.members import AuditEntry
from ..domain.policy import authorize
from ..domain.tags import MAX_MANUAL_TAGS, TagChange, TagRules, TagRulesInput
from .ledger_common import live_members, optimistic
from .ports import LedgerRepository


class TagRepository(Protocol):
    def rules(self) -> tuple[TagRules, int]: ...
    def put_rules(self, rules: TagRules, expected_version: int, actor: str) -> None: ...
    def tags_of(self, member_id: str) -> tuple[str, ...]: ...
    def add(self, member_id: str, tag: str, audit: AuditEntry) -> TagChange: ...
    def remove(self, member_id: str, tag: str, audit: AuditEntry) -> TagChange: ...


# ---- HQ's rules -----------------------------------------------------------------------------------------------
def get_rules(actor: Principal, tags: TagRepository) -> tuple[TagRules, int]:
    authorize("tags.read_rules", actor)
    return tags.rules()


def put_rules(cmd: TagRulesInput, actor: Principal, tags: TagRepository) -> tuple[TagRules, int]:
    """Replace the whole list. With `version`, only the list read at that version (else 409); without, whatever
    is there. The nightly job applies it from its next run."""
    authorize("tags.put_rules", actor)
    rules = TagRules(rules=cmd.rules)

    def attempt() -> tuple[TagRules, int]:
        _, version = tags.rules()
        if cmd.version is not None and cmd.version != version:
            raise Conflict("the tag rules changed since you read them", code="version_conflict",
                           details={"version": version})
        tags.put_rules(rules, version, actor.sub)
        return rules, version + 1

    return optimistic(attempt)


# ---- manual tags ----------------------------------------------------------------------------------------------
def add_tag(member_id: str, tag: str, actor: Principal, tags: TagRepository,
            ledger: LedgerRepository) -> tuple[str, tuple[str, ...]]:
    """Give a member a tag by hand: (the live member's id, their manual tags after). An id merged away tags its
    survivor; a tag held already changes nothing (a retry is safe); the 51st tag is a 409."""
    authorize("tags.add", actor)

    def attempt() -> tuple[str, tuple[str, ...]]:
        live = _live(member_id, ledger)
        change = tags.add(live, tag, _audit(actor, "member.tag_added"))
        if change.outcome == "full":
            raise Conflict(f"a member holds at most {MAX_MANUAL_TAGS} manual tags; remove one first",
                           code="too_many_tags", details={"member_id": live, "limit": MAX_MANUAL_TAGS})
        return live, change.tags

    return optimistic(attempt)


def remove_tag(member_id: str, tag: str, actor: Principal, tags: TagRepository,
               ledger: LedgerRepository) -> tuple[str, tuple[str, ...]]:
    """Take a manual tag off a member (as add_tag: through merges; a tag not held changes nothing). Tags the
    nightly rules give are not manual: they come and go with the rules."""
    authorize("tags.remove", actor)

    def attempt() -> tuple[str, tuple[str, ...]]:
        live = _live(member_id, ledger)
        return live, tags.remove(live, tag, _audit(actor, "member.tag_removed")).tags

    return optimistic(attempt)


def _live(member_id: str, ledger: LedgerRepository) -> str:
    """The member an id stands for now, through merges (one consistent BatchGetItem of profiles per hop)."""
    live, why = live_members(ledger, [member_id])[member_id]
    if live is None:
        if why == "erased":
            raise NotFound("member has been erased", code="member_erased", details={"member_id": member_id})
        raise NotFound("member not found", code="member_not_found", details={"member_id": member_id})
    return live


def _audit(actor: Principal, action: str) -> AuditEntry:
    # The field changed, never the tag itself (audit entries hold field names only).
    return AuditEntry(actor=actor.sub, role=actor.role.value, action=action, fields=["tags"], at=clock.now())
