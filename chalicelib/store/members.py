"""Members in DynamoDB: profile items, uniqueness markers, audit entries and merges."""
from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import date, datetime
from typing import Any

from ..domain import clock, rollups
from ..domain.errors import Conflict, NotFound, PhoneTaken, Unavailable
from ..domain.ids import new_id
from ..domain.ledger import MemberState
from ..domain.members import AuditEntry, Channel, Consent, Member, MemberStatus, MergeRecord
from ..domain.phone import mask_phone
from . import coupons as coupon_rows
from . import keys
from .db import Db, Tx, TxCancelled
from .ledger import state_from_item, state_item, with_home
from .pii import PiiProtector
from .rollups import add_to_day

# Per transaction: each moved item is a put + a delete, plus the merge record's progress and one guard (the
# survivor's state or profile): 49 x 2 + 2 = 100, the most one TransactWriteItems takes.
MERGE_BATCH = 49
MAX_MERGE_HOPS = 10
ERASE_ATTEMPTS = 4


class DynamoMemberRepository:
    def __init__(self, db: Db, pii: PiiProtector) -> None:
        self.db = db
        self.pii = pii

    # ---- mapping -------------------------------------------------------------------------------------
    def phone_hash(self, phone: str) -> str:
        return self.pii.lookup_hash("phone", phone)

    def openid_hash(self, openid: str) -> str:
        return self.pii.lookup_hash("openid", openid)

    def _to_item(self, m: Member) -> dict[str, Any]:
        mid = m.member_id
        item: dict[str, Any] = {
            **keys.member_profile(mid),
            "type": "member",
            "member_id": mid,
            "status": m.status.value,
            "gender": m.gender.value if m.gender else None,
            "birth_month": m.birthday.month if m.birthday else None,
            "home_store_id": m.home_store_id,
            "registration_channel": m.registration_channel.value,
            "channels": {c.value for c in m.channels} or None,
            "stores_visited": set(m.stores_visited) or None,
            "consent_marketing": m.consent.marketing,
            "consent_updated_at": clock.iso(m.consent.updated_at),
            "registered_at": clock.iso(m.registered_at),
            "updated_at": clock.iso(m.updated_at),
        }
        item.update(self._personal_attrs(mid, phone=m.phone, name=m.name, birthday=m.birthday, openid=m.openid))
        if m.openid:  # every WeChat login ever bound to the member: erasure removes each one's marker
            item["openid_hashes"] = {item["openid_hash"]}
        return item

    def _personal_attrs(self, mid: str, *, phone: str | None = None, name: str | None = None,
                        birthday: date | None = None, openid: str | None = None) -> dict[str, Any]:
        attrs: dict[str, Any] = {}
        if phone is not None:
            h = self.phone_hash(phone)
            attrs.update(phone_hash=h, phone_enc=self.pii.encrypt(phone, member_id=mid, field="phone"),
                         phone_masked=mask_phone(phone), gsi1pk=keys.phone_lookup_pk(h),
                         gsi1sk=keys.member_pk(mid))
        if name is not None:
            attrs["name_enc"] = self.pii.encrypt(name, member_id=mid, field="name")
        if birthday is not None:
            attrs["birthday_enc"] = self.pii.encrypt(birthday.isoformat(), member_id=mid, field="birthday")
        if openid is not None:
            attrs.update(openid_hash=self.openid_hash(openid),
                         openid_enc=self.pii.encrypt(openid, member_id=mid, field="openid"))
        return attrs

    def _from_item(self, item: dict[str, Any]) -> Member:
        mid = item["member_id"]

        def dec(field: str) -> str | None:
            token = item.get(f"{field}_enc")
            return self.pii.decrypt(token, member_id=mid, field=field) if token else None

        birthday = dec("birthday")
        return Member(
            member_id=mid,
            status=MemberStatus(item["status"]),
            phone=dec("phone"),
            phone_masked=item.get("phone_masked"),
            name=dec("name"),
            gender=item.get("gender"),
            birthday=date.fromisoformat(birthday) if birthday else None,
            openid=dec("openid"),
            home_store_id=item.get("home_store_id"),
            registration_channel=Channel(item["registration_channel"]),
            channels=frozenset(Channel(c) for c in item.get("channels", ())),
            stores_visited=frozenset(item.get("stores_visited", ())),
            consent=Consent(marketing=item["consent_marketing"],
                            updated_at=datetime.fromisoformat(item["consent_updated_at"])),
            registered_at=datetime.fromisoformat(item["registered_at"]),
            updated_at=datetime.fromisoformat(item["updated_at"]),
            merged_into=item.get("merged_into"),
            merged_from=frozenset(item.get("merged_from", ())),
            erased_at=datetime.fromisoformat(item["erased_at"]) if item.get("erased_at") else None,
        )

    def _audit(self, tx: Tx, member_id: str, entry: AuditEntry) -> None:
        at = clock.iso(entry.at)
        tx.put({**keys.audit_key(member_id, at, new_id()), "type": "audit", "actor": entry.actor,
                "role": entry.role, "action": entry.action, "fields": entry.fields or None, "at": at})

    # ---- reads ---------------------------------------------------------------------------------------
    def get(self, member_id: str) -> Member | None:
        """Profile and points state in one query: both sort keys begin with PROFILE."""
        items, _ = self.db.query(KeyConditionExpression="pk = :pk AND begins_with(sk, :p)",
                                 values={":pk": keys.member_pk(member_id), ":p": keys.PROFILE}, ConsistentRead=True)
        profile = next((i for i in items if i["sk"] == keys.PROFILE), None)
        if profile is None:
            return None
        state = next((i for i in items if i["sk"] == keys.MEMBER_STATE), None)
        return self._from_item(profile).model_copy(update={
            "state": with_home(state_from_item(state), profile) if state else None,
            "insights": {"rfm": next((i for i in items if i["sk"] == keys.MEMBER_RFM), None),
                         "tags": next((i for i in items if i["sk"] == keys.MEMBER_TAGS), None)}})

    def labels(self, member_ids: list[str]) -> dict[str, tuple[str | None, str | None]]:
        """(name, masked phone) of each member still holding them, for a report's lists: profiles only, 100 a
        request, eventually consistent. Merged-away and erased members hold neither."""
        out: dict[str, tuple[str | None, str | None]] = {}
        ids = list(dict.fromkeys(member_ids))
        for i in range(0, len(ids), 100):
            for item in self.db.batch_get([keys.member_profile(m) for m in ids[i:i + 100]], lambda x: x):
                mid = item["member_id"]
                if item.get("status") != "active":
                    continue
                token = item.get("name_enc")
                name = self.pii.decrypt(token, member_id=mid, field="name") if token else None
                out[mid] = (name, item.get("phone_masked"))
        return out

    def find_by_phone(self, phone: str) -> Member | None:
        """One query on the lookup index. May return a tombstone; the service follows merged_into."""
        items, _ = self.db.query(
            IndexName=keys.GSI_LOOKUP, KeyConditionExpression="gsi1pk = :p",
            values={":p": keys.phone_lookup_pk(self.phone_hash(phone))}, Limit=5)
        members = [self._from_item(i) for i in items if i.get("type") == "member"]
        active = [m for m in members if m.status is MemberStatus.ACTIVE]
        return (active or members or [None])[0]

    def ensure_openid(self, openid: str) -> tuple[str, str | None]:
        """At login: make sure a marker for this openid exists (holding it encrypted, so a later phone
        binding can store it on the member without the token carrying it). Returns (hash, member id)."""
        h = self.openid_hash(openid)
        marker = self.db.get(keys.openid_marker(h))
        if marker is None:
            self.db.update(keys.openid_marker(h), "SET #t = :t, openid_enc = :e, created_at = :now",
                           condition="attribute_not_exists(pk)", names={"#t": "type"},
                           values={":t": "openid_marker", ":now": clock.iso(clock.now()),
                                   ":e": self.pii.encrypt(openid, member_id=h, field="openid_marker")})
            marker = self.db.get(keys.openid_marker(h)) or {}
        return h, marker.get("member_id")

    def openid_by_hash(self, openid_hash: str) -> tuple[str | None, str | None]:
        """(openid, bound member id) for a login's openid hash; (None, None) if no such login."""
        marker = self.db.get(keys.openid_marker(openid_hash))
        if not marker or not marker.get("openid_enc"):
            return None, None
        openid = self.pii.decrypt(marker["openid_enc"], member_id=openid_hash, field="openid_marker")
        return openid, marker.get("member_id")

    def member_for_phone_marker(self, phone: str) -> str | None:
        marker = self.db.get(keys.phone_marker(self.phone_hash(phone)))
        return marker["member_id"] if marker else None

    def records(self, member_id: str) -> Iterator[dict[str, Any]]:
        """Everything in the member's partition except the profile (audit, merges, points state, ledger entries,
        redemptions, adjustments, facts, events), as the export shows it: no storage keys, no request
        fingerprints, nested JSON text decoded."""
        for item in self.db.query_all(KeyConditionExpression="pk = :pk", values={":pk": keys.member_pk(member_id)},
                                      ConsistentRead=True):
            if item["sk"] != keys.PROFILE:
                yield _exported(item)

    def merged_away(self, member_id: str) -> list[tuple[str, str | None]]:
        """Every member merged into this one, also through chains (A into B, then B into C), each with the phone
        hash its tombstone still carries: (member id, phone hash or None). One GetItem per tombstone."""
        profile = self.db.get(keys.member_profile(member_id)) or {}
        pending, seen, found = sorted(profile.get("merged_from", ())), {member_id}, []
        while pending:
            source_id = pending.pop()
            if source_id in seen:
                continue
            seen.add(source_id)
            tombstone = self.db.get(keys.member_profile(source_id)) or {}
            found.append((source_id, tombstone.get("phone_hash")))
            pending.extend(sorted(tombstone.get("merged_from", ())))
        return found

    # ---- writes --------------------------------------------------------------------------------------
    def create(self, member: Member, audit: AuditEntry) -> None:
        """One transaction: phone marker (unique), profile, audit entry. Raises PhoneTaken(existing id)."""
        assert member.phone is not None
        tx = self.db.tx()
        marker = tx.put({**keys.phone_marker(self.phone_hash(member.phone)), "type": "phone_marker",
                         "member_id": member.member_id},
                        condition="attribute_not_exists(pk)", return_old_on_fail=True)
        tx.put(self._to_item(member), condition="attribute_not_exists(pk)")
        if member.openid:
            tx.update(keys.openid_marker(self.openid_hash(member.openid)), "SET member_id = :m",
                      condition="attribute_exists(pk) AND attribute_not_exists(member_id)",
                      values={":m": member.member_id})
        self._audit(tx, member.member_id, audit)
        add_to_day(tx, rollups.for_registration(member.home_store_id, member.member_id, member.registered_at))
        try:
            self.db.commit(tx)
        except TxCancelled as cancelled:
            if cancelled.failed_at(marker):
                old = cancelled.items[marker] or self.db.get(keys.phone_marker(self.phone_hash(member.phone))) or {}
                raise PhoneTaken(old.get("member_id", "")) from None
            raise Conflict("this WeChat account is already bound to a member", code="openid_taken") from None

    def add_channel(self, member_id: str, channel: Channel, audit: AuditEntry) -> None:
        tx = self.db.tx()
        tx.update(keys.member_profile(member_id), "ADD channels :c SET updated_at = :now",
                  condition="#s = :active", names={"#s": "status"},
                  values={":c": {channel.value}, ":now": clock.iso(audit.at), ":active": "active"})
        self._audit(tx, member_id, audit)
        self._commit_on_active(tx, member_id)

    def update_profile(self, member_id: str, changes: dict[str, Any], audit: AuditEntry) -> None:
        """SET only the changed fields, so concurrent edits of different fields never lose each other."""
        sets, removes, values, names = ["updated_at = :now"], [], {":now": clock.iso(audit.at), ":active": "active"}, \
            {"#s": "status"}
        attrs: dict[str, Any] = {}
        for field, value in changes.items():
            if field == "name":
                attrs.update(self._personal_attrs(member_id, name=value) if value else {"name_enc": None})
            elif field == "birthday":
                if value:
                    attrs.update(self._personal_attrs(member_id, birthday=value), birth_month=value.month)
                else:
                    attrs.update(birthday_enc=None, birth_month=None)
            elif field == "gender":
                attrs["gender"] = value.value if value else None
            elif field == "consent_marketing":
                attrs.update(consent_marketing=value, consent_updated_at=clock.iso(audit.at))
        for i, (attr, value) in enumerate(attrs.items()):
            names[f"#a{i}"] = attr
            if value is None:
                removes.append(f"#a{i}")
            else:
                sets.append(f"#a{i} = :v{i}")
                values[f":v{i}"] = value
        expression = "SET " + ", ".join(sets) + (" REMOVE " + ", ".join(removes) if removes else "")
        tx = self.db.tx()
        tx.update(keys.member_profile(member_id), expression, condition="#s = :active", names=names, values=values)
        self._audit(tx, member_id, audit)
        self._commit_on_active(tx, member_id)

    def change_phone(self, member: Member, new_phone: str, audit: AuditEntry) -> None:
        """Move the member to a new phone: old marker out, new marker in (unique), profile updated."""
        mid = member.member_id
        attrs = self._personal_attrs(mid, phone=new_phone)
        tx = self.db.tx()
        if member.phone:
            tx.delete(keys.phone_marker(self.phone_hash(member.phone)), condition="member_id = :m",
                      values={":m": mid})
        new_marker = tx.put({**keys.phone_marker(attrs["phone_hash"]), "type": "phone_marker", "member_id": mid},
                            condition="attribute_not_exists(pk)")
        names = {f"#a{i}": k for i, k in enumerate(attrs)}
        values: dict[str, Any] = {f":v{i}": v for i, v in enumerate(attrs.values())}
        values.update({":now": clock.iso(audit.at), ":active": "active"})
        expression = "SET updated_at = :now, " + ", ".join(f"#a{i} = :v{i}" for i in range(len(attrs)))
        tx.update(keys.member_profile(mid), expression, condition="#s = :active",
                  names={**names, "#s": "status"}, values=values)
        self._audit(tx, mid, audit)
        try:
            self.db.commit(tx)
        except TxCancelled as cancelled:
            if cancelled.failed_at(new_marker):
                raise Conflict("another member holds that phone", code="phone_taken") from None
            raise Conflict("the member changed meanwhile; retry", code="member_changed") from None

    def bind_openid(self, member_id: str, openid: str, audit: AuditEntry) -> None:
        attrs = self._personal_attrs(member_id, openid=openid)
        tx = self.db.tx()
        marker = tx.update(keys.openid_marker(attrs["openid_hash"]), "SET member_id = :m",
                           condition="attribute_exists(pk) AND (attribute_not_exists(member_id) OR member_id = :m)",
                           values={":m": member_id})
        tx.update(keys.member_profile(member_id),
                  "SET openid_hash = :h, openid_enc = :e, updated_at = :now ADD channels :c, openid_hashes :hs",
                  condition="#s = :active", names={"#s": "status"},
                  values={":h": attrs["openid_hash"], ":e": attrs["openid_enc"], ":now": clock.iso(audit.at),
                          ":active": "active", ":c": {Channel.MINIPROGRAM.value}, ":hs": {attrs["openid_hash"]}})
        self._audit(tx, member_id, audit)
        try:
            self.db.commit(tx)
        except TxCancelled as cancelled:
            if cancelled.failed_at(marker):
                raise Conflict("this WeChat account is bound to another member", code="openid_taken") from None
            raise NotFound("member not found", code="member_not_found") from None

    def _commit_on_active(self, tx: Tx, member_id: str) -> None:
        try:
            self.db.commit(tx)
        except TxCancelled:
            raise NotFound("member not found or no longer active", code="member_not_found",
                           details={"member_id": member_id}) from None

    # ---- merge ---------------------------------------------------------------------------------------
    def start_merge(self, target: Member, source: Member, record: MergeRecord, audit: AuditEntry,
                    folded: MemberState | None = None, folded_lowest: str | None = None) -> None:
        """Step 1, one transaction: tombstone + redirects + the merge record. After it, the source id and
        phone resolve to the target; the rest of the source's items move in batches (move_batch)."""
        tx = self.db.tx()
        sid, tid = source.member_id, target.member_id
        tx.update(keys.member_profile(sid),
                  "SET #s = :merged, merged_into = :t, updated_at = :now "
                  "REMOVE name_enc, birthday_enc, birth_month, openid_enc, phone_enc",
                  condition="#s = :active", names={"#s": "status"},
                  values={":merged": "merged", ":t": tid, ":now": clock.iso(record.started_at), ":active": "active"})
        additions = "ADD merged_from :src" + (", channels :ch" if source.channels else "") + \
            (", stores_visited :st" if source.stores_visited else "")
        values: dict[str, Any] = {":src": {sid}, ":now": clock.iso(record.started_at), ":active": "active"}
        if source.channels:
            values[":ch"] = {c.value for c in source.channels}
        if source.stores_visited:
            values[":st"] = set(source.stores_visited)
        tx.update(keys.member_profile(tid), f"SET updated_at = :now {additions}",
                  condition="#s = :active", names={"#s": "status"}, values=values)
        if source.phone:
            tx.update(keys.phone_marker(self.phone_hash(source.phone)), "SET member_id = :t",
                      condition="member_id = :s", values={":t": tid, ":s": sid})
        if source.openid:
            tx.update(keys.openid_marker(self.openid_hash(source.openid)), "SET member_id = :t",
                      condition="member_id = :s", values={":t": tid, ":s": sid})
        tx.put({**keys.merge_key(tid, sid), "type": "merge", "target_member_id": tid, "source_member_id": sid,
                "by": record.by, "started_at": clock.iso(record.started_at), "state": "moving", "moved": {},
                "gsi2pk": keys.MERGE_PENDING, "gsi2sk": clock.iso(record.started_at)},
               condition="attribute_not_exists(pk)")
        # The duplicate was one more new member on the day it registered: one person, counted once.
        add_to_day(tx, rollups.for_registration(source.home_store_id, sid, source.registered_at, sign=-1))
        if folded is not None and source.state is not None:
            if target.state is not None:
                tx.put(state_item(folded), condition="version = :v", values={":v": target.state.version})
            else:
                tx.put(state_item(folded), condition="attribute_not_exists(pk)")
            tx.delete({"pk": keys.member_pk(sid), "sk": keys.MEMBER_STATE}, condition="version = :v",
                      values={":v": source.state.version})
            tx.delete({"pk": keys.member_pk(sid), "sk": keys.TIER_MARKER})
            if folded.tier and folded.tier != folded_lowest:
                tx.put({"pk": keys.member_pk(tid), "sk": keys.TIER_MARKER, "type": "tier_marker", "member_id": tid,
                        "tier": folded.tier, "gsi2pk": keys.tier_shard(tid), "gsi2sk": tid})
        coupon_rows.fold_counts(self.db, tx, sid, tid)  # per-member coupon limits count both members' coupons
        source_tags = ((source.insights or {}).get("tags") or {}).get("tags")
        if source_tags:  # staff's tags follow the person (who added each stays on the duplicate's item)
            tx.update(keys.member_tags_key(tid), "ADD tags :t SET #ty = :type, member_id = :m",
                      names={"#ty": "type"}, values={":t": set(source_tags), ":type": "member_tags", ":m": tid})
        self._audit(tx, tid, audit)
        try:
            self.db.commit(tx)
        except TxCancelled:
            raise Conflict("one of the members changed meanwhile (merged, erased, points moved); retry",
                           code="merge_conflict") from None

    def move_batch(self, target_id: str, source_id: str) -> int:
        """Move up to MERGE_BATCH items of the source partition (the kinds of keys.MERGE_MOVES) to the survivor,
        each as put+delete in the same transaction as the merge record's progress: a crash leaves every item in
        exactly one place. Returns how many moved, 0 when nothing is left, -1 when the batch lost a race (the
        caller looks again).

        The survivor is the target, or whoever the target has been merged into since (a merge into A still
        moving when A is merged into B moves the rest straight to B: anything put under A after A's own move
        finished would be stranded there). Each batch holds a guard that fails if the survivor is merged away
        before it commits: the survivor's points state on its version (a merge deletes the source's state on
        the version it read) or a check that its profile names no survivor of its own."""
        survivor = self._survivor(target_id)
        # The survivor's points state is read FIRST: every change to a lot also changes that state's
        # version, so a batch holding lots commits only if no lot changed since this read (see
        # _claim_state_for_lots).
        state = self.db.get({"pk": keys.member_pk(survivor), "sk": keys.MEMBER_STATE})
        batch: list[dict[str, Any]] = []
        for prefix in keys.MERGE_MOVES:
            items, _ = self.db.query(KeyConditionExpression="pk = :pk AND begins_with(sk, :p)",
                                     values={":pk": keys.member_pk(source_id), ":p": prefix},
                                     ConsistentRead=True, Limit=MERGE_BATCH - len(batch))
            batch += items
            if len(batch) >= MERGE_BATCH:
                break
        if not batch:
            return 0
        tx = self.db.tx()
        counts: dict[str, int] = {}
        for item in batch:
            kind = keys.record_kind(item["sk"])
            counts[kind] = counts.get(kind, 0) + 1
            # moved_from: the last hop; origin_member_id: the member it was written for (kept along a chain),
            # so a redemption's entry still names whose redemption document it is (ids are per member)
            moved = {**item, "pk": keys.member_pk(survivor), "moved_from": source_id,
                     "origin_member_id": item.get("origin_member_id", source_id)}
            if "member_id" in moved:  # lots and ledger entries name their owner (the expiry job reads it)
                moved["member_id"] = survivor
            if moved.get("gsi2sk", "").startswith(f"{source_id}#"):
                moved["gsi2sk"] = f"{survivor}#" + moved["gsi2sk"].split("#", 1)[1]
            if "gsi3pk" in moved:  # an order's earn entry: its order joins the survivor's purchase history
                moved["gsi3pk"] = keys.history_pk(survivor)
            tx.put(moved, condition="attribute_not_exists(pk)")
            tx.delete({"pk": item["pk"], "sk": item["sk"]}, condition="attribute_exists(pk)")
        lots = [i for i in batch if "remaining" in i]
        if lots and state is not None:
            self._claim_state_for_lots(tx, state, lots)
        else:
            tx.check(keys.member_profile(survivor), "attribute_exists(pk) AND attribute_not_exists(merged_into)")
        names = {f"#k{i}": k for i, k in enumerate(counts)}
        values = {f":n{i}": n for i, n in enumerate(counts.values())}
        tx.update(keys.merge_key(target_id, source_id),
                  "ADD " + ", ".join(f"moved.#k{i} :n{i}" for i in range(len(counts))),
                  condition="#state = :moving", names={**names, "#state": "state"},
                  values={**values, ":moving": "moving"})
        try:
            self.db.commit(tx)
        except (TxCancelled, Unavailable):
            return -1  # moved by another worker, a lot or the survivor changed meanwhile: look again
        return len(batch)

    def _survivor(self, member_id: str) -> str:
        """The member a merge's items go to: `member_id`, or the end of its chain of merges."""
        for _ in range(MAX_MERGE_HOPS):
            profile = self.db.get(keys.member_profile(member_id)) or {}
            if not profile.get("merged_into"):
                return member_id
            member_id = profile["merged_into"]
        raise Unavailable("a chain of merges too long to follow; retry", code="merge_chain")

    @staticmethod
    def _claim_state_for_lots(tx: Tx, state: dict[str, Any] | None, lots: list[dict[str, Any]]) -> None:
        """A batch moving lots also writes the survivor's points state, on the version read before the
        lots were: a refund or expiry that changed a lot meanwhile makes the batch fail (no stale copy
        moves), and a redemption that read the survivor's lots before they arrived fails in turn (it
        cannot raise the open-lots bound past them). Moved lots keep their credit time, which may be older
        than the bound: it is lowered to the oldest that still holds points."""
        if state is None:  # lots with points always come with a folded state; without one they are spent
            return
        names, values = {"#v": "version"}, {":v": state["version"], ":next": state["version"] + 1}
        expression = "SET #v = :next"
        open_since = [lot["at"] for lot in lots if lot["remaining"] > 0]
        if open_since and (not state.get("open_lots_from") or min(open_since) < state["open_lots_from"]):
            expression += ", open_lots_from = :o"
            values[":o"] = min(open_since)
        tx.update({"pk": state["pk"], "sk": state["sk"]}, expression, condition="#v = :v", names=names,
                  values=values)

    def finish_merge(self, target_id: str, source_id: str) -> None:
        self.db.update(keys.merge_key(target_id, source_id),
                       "SET #state = :done, finished_at = :now REMOVE gsi2pk, gsi2sk",
                       condition="#state = :moving", names={"#state": "state"},
                       values={":done": "done", ":moving": "moving", ":now": clock.iso(clock.now())})

    def get_merge(self, target_id: str, source_id: str) -> MergeRecord | None:
        item = self.db.get(keys.merge_key(target_id, source_id))
        return _merge_record(item) if item else None

    def pending_merges(self, limit: int = 100) -> list[MergeRecord]:
        items, _ = self.db.query(IndexName=keys.GSI_WORK, KeyConditionExpression="gsi2pk = :p",
                                 values={":p": keys.MERGE_PENDING}, Limit=limit)
        return [_merge_record(i) for i in items]

    # ---- erasure -------------------------------------------------------------------------------------
    def erase(self, member: Member, audit: AuditEntry) -> None:
        """Remove personal fields and the markers that map phone/openid to the member; keep sales facts.
        Every WeChat login ever bound to the member (`openid_hashes`, and the older single `openid_hash`)
        loses its marker; the profile is written on the number of logins read, so a login bound meanwhile
        makes the erasure read again instead of leaving that login linked."""
        mid = member.member_id
        for _ in range(ERASE_ATTEMPTS):
            profile = self.db.get(keys.member_profile(mid))
            if not profile or profile.get("status") != "active":
                raise NotFound("member not found or no longer active", code="member_not_found",
                               details={"member_id": mid})
            logins = _openid_hashes(profile)
            tx = self.db.tx()
            values: dict[str, Any] = {":erased": "erased", ":now": clock.iso(audit.at), ":active": "active"}
            same_logins = "attribute_not_exists(openid_hashes)"
            if "openid_hashes" in profile:
                same_logins = "size(openid_hashes) = :n"
                values[":n"] = len(profile["openid_hashes"])
            tx.update(keys.member_profile(mid),
                      "SET #s = :erased, erased_at = :now, updated_at = :now "
                      "REMOVE phone_hash, phone_enc, phone_masked, gsi1pk, gsi1sk, name_enc, birthday_enc, "
                      "birth_month, gender, openid_hash, openid_enc, openid_hashes",
                      condition=f"#s = :active AND {same_logins}", names={"#s": "status"}, values=values)
            if profile.get("phone_hash"):
                tx.delete(keys.phone_marker(profile["phone_hash"]), condition="member_id = :m", values={":m": mid})
            for login in logins:
                tx.delete(keys.openid_marker(login))
            # Profiling ends with the person: the nightly segment and the tags go, and the points state leaves
            # the nightly index (its version moves, so an order post that read it before writes nothing).
            tx.delete(keys.member_rfm_key(mid))
            tx.delete(keys.member_tags_key(mid))
            if member.state is not None:
                tx.update({"pk": keys.member_pk(mid), "sk": keys.MEMBER_STATE},
                          "REMOVE gsi5pk SET version = version + :one", condition="attribute_exists(pk)",
                          values={":one": 1})
            self._audit(tx, mid, audit)
            try:
                self.db.commit(tx)
                return
            except TxCancelled:
                continue  # bound, edited or erased meanwhile: read again
        raise Unavailable("the member is changing; retry the erasure", code="contention")

    def erase_tombstone(self, source_id: str) -> None:
        """A merged-away record of an erased survivor: drop its phone lookup and every marker it still holds."""
        item = self.db.get(keys.member_profile(source_id))
        if not item:
            return
        tx = self.db.tx()
        tx.update(keys.member_profile(source_id),
                  "REMOVE phone_hash, phone_masked, gsi1pk, gsi1sk, gender, openid_hash, openid_hashes")
        if item.get("phone_hash"):
            tx.delete(keys.phone_marker(item["phone_hash"]))
        for login in _openid_hashes(item):
            tx.delete(keys.openid_marker(login))
        self.db.commit(tx)

    def release_openid(self, openid_hash: str, member_id: str) -> None:
        """Unbind a login whose member is gone (erased before erasure reached every login): the person signs
        in as new. Only if the marker still names that member."""
        self.db.update(keys.openid_marker(openid_hash), "REMOVE member_id", condition="member_id = :m",
                       values={":m": member_id})


def _openid_hashes(profile: dict[str, Any]) -> list[str]:
    """Every WeChat login a profile (or tombstone) names: the set kept since logins were tracked, and the
    single last-bound hash that older profiles carry only."""
    found = set(profile.get("openid_hashes", ()))
    if profile.get("openid_hash"):
        found.add(profile["openid_hash"])
    return sorted(found)


_INTERNAL = frozenset({"pk", "sk", "gsi1pk", "gsi1sk", "gsi2pk", "gsi2sk", "gsi3pk", "gsi3sk", "gsi4pk", "gsi4sk"})
_JSON_TEXT = ("body", "detail", "data")  # nested data kept as compact JSON text (store/ledger._compact)


def _exported(item: dict[str, Any]) -> dict[str, Any]:
    """An item of the member's partition as the export shows it: storage keys out, JSON text decoded, the
    request fingerprints of idempotent documents out (a hash of the request, not a fact about the person)."""
    out = {k: v for k, v in item.items() if k not in _INTERNAL}
    for field in _JSON_TEXT:
        if isinstance(out.get(field), str):
            out[field] = json.loads(out[field])
    if isinstance(out.get("body"), dict):
        out["body"] = {k: v for k, v in out["body"].items() if k != "fingerprint"}
    return out


def _merge_record(item: dict[str, Any]) -> MergeRecord:
    return MergeRecord(
        target_member_id=item["target_member_id"], source_member_id=item["source_member_id"], by=item["by"],
        started_at=datetime.fromisoformat(item["started_at"]), state=item["state"], moved=item.get("moved", {}),
        finished_at=datetime.fromisoformat(item["finished_at"]) if item.get("finished_at") else None)
