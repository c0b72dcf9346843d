"""Member tags in DynamoDB: HQ's rule list (a versioned configuration item) and staff's manual tags.

A member's manual tags are one item in the member's partition, `keys.member_tags_key` (sk `PROFILE~TAGS`,
beside the profile: the member read's `begins_with PROFILE` returns it): the tags as the string set `tags`,
and per tag an attribute `added#<tag>` saying who added it and when. A change is one transaction: the tag
ADDed to (or DELETEd from) the set, a check that the profile is active, and an audit entry in the member's
partition (field names only, never the tag). Set operations, not read-modify-write: concurrent changes of
different tags lose nothing. Adding a tag held already, or removing one not held, is refused by the item's
condition and answered as a no-op (no audit entry), so a retried request changes nothing twice. The cap of 50
is a condition too (`size(tags) < 50`): concurrent adds cannot pass it."""
from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from ..domain import clock
from ..domain.errors import StaleRead
from ..domain.ids import new_id
from ..domain.members import AuditEntry
from ..domain.tags import MAX_MANUAL_TAGS, TagChange, TagRules
from . import keys
from .db import Db, Tx, TxCancelled

TAGS_ATTR = "tags"
ADDED_PREFIX = "added#"  # + the tag: {"by", "role", "at"} of the add that put it there


def manual_tags(item: Mapping[str, Any] | None) -> tuple[str, ...]:
    """The manual tags on a `PROFILE~TAGS` item as read (None: no item), sorted."""
    return tuple(sorted((item or {}).get(TAGS_ATTR) or ()))


def manual_tag_details(item: Mapping[str, Any] | None) -> dict[str, dict[str, str]]:
    """Who added each manual tag and when: tag -> {"by", "role", "at"} (tags added before that was kept: absent)."""
    item = item or {}
    held = set(item.get(TAGS_ATTR) or ())
    return {name.removeprefix(ADDED_PREFIX): dict(value) for name, value in item.items()
            if name.startswith(ADDED_PREFIX) and name.removeprefix(ADDED_PREFIX) in held}


class DynamoTagRepository:
    def __init__(self, db: Db) -> None:
        self.db = db

    # ---- HQ's rules ------------------------------------------------------------------------------------------
    def rules(self) -> tuple[TagRules, int]:
        """The rule list and its version (0: never set, no rules). Read consistently: a PUT names the version it
        read, and a stale read would make a fresh client's PUT a 409."""
        item = self.db.get(keys.tag_rules_key())
        if item is None:
            return TagRules(rules=[]), 0
        return TagRules.model_validate_json(item["body"]), item["version"]

    def put_rules(self, rules: TagRules, expected_version: int, actor: str) -> None:
        """Replace the list read at `expected_version` (0: must not exist yet); changed meanwhile: StaleRead."""
        body = json.dumps(rules.model_dump(mode="json", exclude_none=True), ensure_ascii=False, separators=(",", ":"))
        item = {**keys.tag_rules_key(), "type": "tag_rules", "version": expected_version + 1, "body": body,
                "updated_by": actor, "updated_at": clock.iso(clock.now())}
        tx = self.db.tx()
        if expected_version:
            tx.put(item, condition="version = :v", values={":v": expected_version})
        else:
            tx.put(item, condition="attribute_not_exists(pk)")
        try:
            self.db.commit(tx)
        except TxCancelled:
            raise StaleRead() from None

    # ---- manual tags ------------------------------------------------------------------------------------------
    def tags_of(self, member_id: str) -> tuple[str, ...]:
        """A member's manual tags (of this id exactly: the caller resolves merges), sorted."""
        return manual_tags(self.db.get(keys.member_tags_key(member_id)))

    def add(self, member_id: str, tag: str, audit: AuditEntry) -> TagChange:
        """Add a tag to a live member (resolved by the caller). The member no longer active (merged or erased
        meanwhile): StaleRead, so the caller resolves it again."""
        at = clock.iso(audit.at)
        tx = self.db.tx()
        profile = self._active(tx, member_id)
        tags = tx.update(keys.member_tags_key(member_id),
                         f"ADD {TAGS_ATTR} :set SET #type = :type, member_id = :m, #added = :who, updated_at = :at",
                         condition=f"NOT contains({TAGS_ATTR}, :tag) AND "
                                   f"(attribute_not_exists({TAGS_ATTR}) OR size({TAGS_ATTR}) < :max)",
                         names={"#type": "type", "#added": ADDED_PREFIX + tag},
                         values={":set": {tag}, ":tag": tag, ":type": "member_tags", ":m": member_id,
                                 ":who": {"by": audit.actor, "role": audit.role, "at": at}, ":at": at,
                                 ":max": MAX_MANUAL_TAGS})
        self._audit(tx, member_id, audit)
        return self._commit(tx, member_id, profile, tags, tag, adding=True)

    def remove(self, member_id: str, tag: str, audit: AuditEntry) -> TagChange:
        """Remove a tag from a live member (as `add`). The set's last tag gone, the item stays without `tags`."""
        tx = self.db.tx()
        profile = self._active(tx, member_id)
        tags = tx.update(keys.member_tags_key(member_id), f"DELETE {TAGS_ATTR} :set REMOVE #added SET updated_at = :at",
                         condition=f"contains({TAGS_ATTR}, :tag)", names={"#added": ADDED_PREFIX + tag},
                         values={":set": {tag}, ":tag": tag, ":at": clock.iso(audit.at)})
        self._audit(tx, member_id, audit)
        return self._commit(tx, member_id, profile, tags, tag, adding=False)

    def _active(self, tx: Tx, member_id: str) -> int:
        return tx.check(keys.member_profile(member_id), "#s = :active", names={"#s": "status"},
                        values={":active": "active"})

    def _audit(self, tx: Tx, member_id: str, entry: AuditEntry) -> None:
        """As store/members.py writes them: the member's change history, exported with them."""
        at = clock.iso(entry.at)
        tx.put({**keys.audit_key(member_id, at, new_id()), "type": "audit", "actor": entry.actor,
                "role": entry.role, "action": entry.action, "fields": entry.fields or None, "at": at})

    def _commit(self, tx: Tx, member_id: str, profile: int, tags: int, tag: str, *, adding: bool) -> TagChange:
        try:
            self.db.commit(tx)
        except TxCancelled as cancelled:
            if cancelled.failed_at(profile):
                raise StaleRead() from None
            if not cancelled.failed_at(tags):
                raise
            # Refused by the tag item's condition: already held / not held (a no-op), or the cap. Read what is
            # there now to tell which; neither any more (changed meanwhile): try again.
            held = self.tags_of(member_id)
            if (tag in held) == adding:
                return TagChange("held", held)
            if adding and len(held) >= MAX_MANUAL_TAGS:
                return TagChange("full", held)
            raise StaleRead() from None
        return TagChange("changed", self.tags_of(member_id))
