"""The nightly segmentation's storage: the member index's parallel scan, the states it names, the run's
checkpoints, the members' results and the night's counts (key layout: keys.py, 'nightly RFM')."""
from __future__ import annotations

import json
import random
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from typing import Any

from botocore.exceptions import ClientError

from ..domain import clock
from ..domain.errors import Conflict
from ..domain.ledger import MemberState
from ..domain.segments import MemberRfm, RfmSettings
from . import keys
from .db import TRANSPORT_ERRORS, Db, TxCancelled, from_item, map_client_error, to_attr, to_item
from .ledger import state_from_item

# What the night reads of a points state (the rest of the item is the points' business).
_STATE_FIELDS = ("pk", "sk", "member_id", "version", "available", "owed", "tier", "spend_months", "orders_months",
                 "order_count", "lifetime_spend", "first_purchase_at", "last_purchase_at", "categories",
                 "home_store_id", "recent_days", "coupon_orders", "gsi5pk")
_BATCH = 100
_READERS = 8  # BatchGetItem calls in flight per worker: the page's reads overlap instead of queueing


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)


class DynamoRfmRepository:
    def __init__(self, db: Db) -> None:
        self.db = db
        self._pool: ThreadPoolExecutor | None = None

    # ---- settings and the latest night ------------------------------------------------------------------
    def settings(self) -> tuple[RfmSettings, int]:
        item = self.db.get(keys.rfm_settings_key(), consistent=False)
        if not item:
            return RfmSettings(), 0
        return RfmSettings.model_validate_json(item["body"]), int(item["version"])

    def put_settings(self, settings: RfmSettings, expected_version: int, actor: str) -> int:
        """Replace the settings if they are still at `expected_version` (0: never set); the new version."""
        tx = self.db.tx()
        item = {**keys.rfm_settings_key(), "type": "rfm_settings", "body": settings.model_dump_json(),
                "version": expected_version + 1, "updated_by": actor, "updated_at": clock.iso(clock.now())}
        if expected_version == 0:
            tx.put(item, condition="attribute_not_exists(pk)")
        else:
            tx.put(item, condition="version = :v", values={":v": expected_version})
        try:
            self.db.commit(tx)
        except TxCancelled:
            raise Conflict("the settings changed since you read them", code="version_conflict") from None
        return expected_version + 1

    def latest(self) -> date | None:
        item = self.db.get(keys.rfm_latest_key(), consistent=False)
        return date.fromisoformat(item["as_of"]) if item else None

    def night(self, as_of: date, level: str, ident: str) -> dict[str, Any] | None:
        item = self.db.get(keys.rfm_night_key(as_of, level, ident), consistent=False)
        return json.loads(item["body"]) if item else None

    # ---- the run's head and checkpoints ---------------------------------------------------------------------
    def run(self, as_of: date) -> dict[str, Any] | None:
        item = self.db.get(keys.rfm_run_key(as_of))
        if not item:
            return None
        return {**item, "settings": json.loads(item["settings"]),
                "thresholds": json.loads(item["thresholds"]) if item.get("thresholds") else None}

    def start_run(self, as_of: date, segments: int, settings: RfmSettings, tag_rules: Any = None) -> dict[str, Any]:
        """The night's head, created once: a second plan of the same night gets the first one's segments and
        settings (so a re-run resumes the same checkpoints)."""
        tx = self.db.tx()
        tx.put({**keys.rfm_run_key(as_of), "type": "rfm_run", "as_of": as_of.isoformat(), "segments": segments,
                "settings": settings.model_dump_json(), "phase": "measure", "started_at": clock.iso(clock.now()),
                "tag_rules": tag_rules.model_dump_json() if tag_rules is not None else None},
               condition="attribute_not_exists(pk)")
        try:
            self.db.commit(tx)
        except TxCancelled:
            pass
        run = self.run(as_of)
        assert run is not None
        return run

    def set_thresholds(self, as_of: date, thresholds: dict[str, Any]) -> dict[str, Any]:
        """Stored once per night; a repeated step answers the stored ones (the classification of every segment
        must use the same)."""
        self.db.update(keys.rfm_run_key(as_of), "SET thresholds = :t, phase = :p",
                       condition="attribute_exists(pk) AND attribute_not_exists(thresholds)",
                       values={":t": _json(thresholds), ":p": "classify"})
        run = self.run(as_of)
        assert run is not None and run["thresholds"] is not None
        return run["thresholds"]

    def finish_run(self, as_of: date, summary: dict[str, Any]) -> None:
        self.db.update(keys.rfm_run_key(as_of), "SET phase = :p, finished_at = :now, summary = :s",
                       values={":p": "done", ":now": clock.iso(clock.now()), ":s": _json(summary)})
        # The readers' "tonight" only ever moves forward (a re-run of an older night leaves it).
        self.db.update(keys.rfm_latest_key(), "SET as_of = :d, #t = :type",
                       condition="attribute_not_exists(as_of) OR as_of <= :d",
                       names={"#t": "type"}, values={":d": as_of.isoformat(), ":type": "rfm_latest"})

    def cursor(self, as_of: date, phase: str, segment: int) -> tuple[int, dict[str, Any] | None, bool]:
        """(the next page's number, the scan's start key, done) of one segment in one phase."""
        item = self.db.get(keys.rfm_cursor_key(as_of, phase, segment))
        if not item:
            return 0, None, False
        start = json.loads(item["start"]) if item.get("start") else None
        return int(item["page"]), start, bool(item.get("done"))

    def commit_page(self, as_of: date, phase: str, segment: int, page: int, start: dict[str, Any] | None,
                    done: bool, partial: dict[str, Any]) -> bool:
        """The page's partial result and the cursor past it, in one transaction, only if the cursor is still at
        this page: a duplicate worker on the same segment commits nothing twice. False if it was not."""
        tx = self.db.tx()
        tx.put({**keys.rfm_page_key(as_of, phase, segment, page), "type": "rfm_page", **partial},
               condition="attribute_not_exists(pk)")
        cursor = {**keys.rfm_cursor_key(as_of, phase, segment), "type": "rfm_cursor", "page": page + 1,
                  "start": _json(start) if start else None, "done": done}
        if page == 0:
            tx.put(cursor, condition="attribute_not_exists(pk)")
        else:
            tx.put(cursor, condition="page = :p", values={":p": page})
        try:
            self.db.commit(tx)
        except TxCancelled:
            return False
        return True

    def pages(self, as_of: date, phase: str) -> Iterator[dict[str, Any]]:
        """Every committed page of a phase (cursor items, which carry no partial, are left out)."""
        for item in self.db.query_all(KeyConditionExpression="pk = :pk AND begins_with(sk, :p)",
                                      values={":pk": keys.rfm_run_pk(as_of), ":p": keys.rfm_pages_prefix(phase)}):
            if item.get("type") == "rfm_page":
                yield item

    # ---- the members -----------------------------------------------------------------------------------------
    def scan_members(self, segment: int, total: int, start: dict[str, Any] | None,
                     limit: int) -> tuple[list[str], dict[str, Any] | None]:
        """One page of the member index (keys only): member ids and the key to continue from."""
        params: dict[str, Any] = {"TableName": self.db.table, "IndexName": keys.GSI_MEMBERS, "Segment": segment,
                                  "TotalSegments": total, "Limit": limit}
        if start:
            params["ExclusiveStartKey"] = to_item(start)
        resp = self._call(self.db.client.scan, params)
        ids = [i["gsi5pk"]["S"] for i in resp.get("Items", [])]
        last = resp.get("LastEvaluatedKey")
        return ids, (from_item(last) if last else None)

    def load(self, member_ids: list[str], with_results: bool) -> dict[str, tuple[MemberState | None, MemberRfm | None]]:
        """The states (and, for the classifying pass, the last results) of a page of members, read with
        BatchGetItem in parallel. Eventually consistent: the night reads what was posted before it started."""
        wanted: list[dict[str, str]] = []
        for m in member_ids:
            wanted.append({"pk": keys.member_pk(m), "sk": keys.MEMBER_STATE})
            if with_results:
                wanted.append(keys.member_rfm_key(m))
        chunks = [wanted[i:i + _BATCH] for i in range(0, len(wanted), _BATCH)]
        if self._pool is None:
            self._pool = ThreadPoolExecutor(_READERS, thread_name_prefix="rfm-read")
        found: dict[str, tuple[MemberState | None, MemberRfm | None]] = {m: (None, None) for m in member_ids}
        for items in self._pool.map(self._batch_get, chunks):
            for item in items:
                mid = item["pk"].removeprefix(keys.MEMBER_PREFIX)
                state, result = found.get(mid, (None, None))
                if item["sk"] == keys.MEMBER_STATE:
                    found[mid] = (state_from_item(item), result)
                else:
                    found[mid] = (state, rfm_from_item(item))
        return found

    def _batch_get(self, key_list: list[dict[str, str]]) -> list[dict[str, Any]]:
        names = {f"#a{i}": f for i, f in enumerate(_STATE_FIELDS)}
        request: dict[str, Any] = {self.db.table: {"Keys": [to_item(k) for k in key_list]}}
        # One projection for both kinds would drop the result's fields: only state-only batches project.
        if all(k["sk"] == keys.MEMBER_STATE for k in key_list):
            request[self.db.table].update(ProjectionExpression=", ".join(names), ExpressionAttributeNames=names)
        out: list[dict[str, Any]] = []
        for attempt in range(12):
            resp = self._call(self.db.client.batch_get_item, {"RequestItems": request})
            out += [from_item(i) for i in resp.get("Responses", {}).get(self.db.table, [])]
            request = resp.get("UnprocessedKeys") or {}
            if not request:
                return out
            time.sleep(min(2.0, 0.05 * 2 ** attempt) * random.uniform(0.5, 1.0))
        raise RuntimeError("BatchGetItem kept returning unprocessed keys (throttled)")

    def write_result(self, as_of: date, result: MemberRfm, previous: MemberRfm | None,
                     fact: dict[str, Any] | None) -> bool:
        """The member's new result, once per night (conditioned on the night it last changed), with the
        'segment_changed' fact in the same transaction when the segment moved. False: written already."""
        item = rfm_item(result)
        condition = "attribute_not_exists(pk) OR changed_on < :night"
        values = {":night": as_of.isoformat()}
        try:
            if fact is None:
                self._commit_single(item, condition, values)
            else:
                tx = self.db.tx()
                tx.put(item, condition=condition, values=values)
                tx.put({**keys.document_key("fact", result.member_id, f"segment_changed#{as_of.isoformat()}"),
                        "type": "fact", "body": _json(fact)}, condition="attribute_not_exists(pk)")
                self.db.commit(tx)
        except TxCancelled:
            return False
        return True

    def _commit_single(self, item: dict[str, Any], condition: str, values: dict[str, Any]) -> None:
        """A plain conditional PutItem (half a transaction's units) for a result with no fact."""
        try:
            self._call(self.db.client.put_item, {
                "TableName": self.db.table, "Item": to_item(item), "ConditionExpression": condition,
                "ExpressionAttributeValues": {k: to_attr(v) for k, v in values.items()}})
        except ClientError as err:
            if err.response["Error"]["Code"] == "ConditionalCheckFailedException":
                raise TxCancelled(["ConditionalCheckFailed"], [None]) from None
            raise

    def put_night(self, as_of: date, level: str, ident: str, body: dict[str, Any]) -> None:
        self.db.put({**keys.rfm_night_key(as_of, level, ident), "type": "rfm_night", "body": _json(body)})

    # ---- plumbing --------------------------------------------------------------------------------------------
    def table_item_estimate(self) -> int:
        """The member index's item count as DynamoDB last published it (about every six hours; 0 when new)."""
        resp = self._call(self.db.client.describe_table, {"TableName": self.db.table})
        for gsi in resp["Table"].get("GlobalSecondaryIndexes", []):
            if gsi["IndexName"] == keys.GSI_MEMBERS:
                return int(gsi.get("ItemCount", 0))
        return 0

    @staticmethod
    def _call(fn: Any, params: dict[str, Any]) -> Any:
        """The job's calls ride out throttling (the client's own retries, then ours) rather than fail a page."""
        for attempt in range(8):
            try:
                return fn(**params)
            except TRANSPORT_ERRORS:
                if attempt == 7:
                    raise
            except ClientError as err:
                code = err.response["Error"]["Code"]
                if code not in ("ProvisionedThroughputExceededException", "ThrottlingException",
                                "RequestLimitExceeded", "InternalServerError"):
                    if code == "ConditionalCheckFailedException":
                        raise
                    raise map_client_error(err) from err
                if attempt == 7:
                    raise map_client_error(err) from err
            time.sleep(min(5.0, 0.1 * 2 ** attempt) * random.uniform(0.5, 1.0))
        raise AssertionError("unreachable")


# ---- mapping ---------------------------------------------------------------------------------------------------
def rfm_item(r: MemberRfm) -> dict[str, Any]:
    return {**keys.member_rfm_key(r.member_id), "type": "member_rfm", "segment": r.segment,
            "scores": "".join(str(s) for s in r.scores) if r.scores else None,
            "tags": set(r.tags) or None, "churn_gap": r.churn_gap, "since": r.since.isoformat(),
            "changed_on": r.changed_on.isoformat(), "history": _json(r.history) if r.history else None}


def rfm_from_item(i: dict[str, Any]) -> MemberRfm:
    return MemberRfm(member_id=i["pk"].removeprefix(keys.MEMBER_PREFIX), segment=i["segment"],
                     scores=tuple(int(c) for c in i["scores"]) if i.get("scores") else None,  # type: ignore[arg-type]
                     tags=tuple(sorted(i.get("tags", ()))), churn_gap=i.get("churn_gap"),
                     since=date.fromisoformat(i["since"]), changed_on=date.fromisoformat(i["changed_on"]),
                     history=[tuple(h) for h in json.loads(i["history"])] if i.get("history") else [])  # type: ignore[misc]


# ---- segment audiences of coupon issues ------------------------------------------------------------------------
class DynamoAudienceReader(DynamoRfmRepository):
    """A page of the member index for a coupon issue's audience job (services/coupon_audience.py): the ids of one
    parallel-scan segment (keys only), then only the items the audience needs, by BatchGetItem: the points state
    (home store, whether the member ever bought), the nightly result (segment, rule-based tags), staff tags."""

    def audience_page(self, segment: int, total: int, start: dict[str, Any] | None, limit: int, *, states: bool,
                      results: bool, staff_tags: bool) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
        ids, last = self.scan_members(segment, total, start, limit)
        rows: dict[str, dict[str, Any]] = {m: {"member_id": m, "state": False, "home_store_id": None, "bought": False,
                                               "segment": None, "tags": set()} for m in ids}
        wanted: list[list[dict[str, str]]] = []
        for needed, key in ((states, lambda m: {"pk": keys.member_pk(m), "sk": keys.MEMBER_STATE}),
                            (results, keys.member_rfm_key), (staff_tags, keys.member_tags_key)):
            if needed:  # one kind per batch: a states-only batch is projected to the fields the night reads
                wanted += [[key(m) for m in ids[i:i + _BATCH]] for i in range(0, len(ids), _BATCH)]
        if self._pool is None:
            self._pool = ThreadPoolExecutor(_READERS, thread_name_prefix="audience-read")
        for items in self._pool.map(self._batch_get, wanted):
            for item in items:
                row = rows.get(item["pk"].removeprefix(keys.MEMBER_PREFIX))
                if row is None:
                    continue
                if item["sk"] == keys.MEMBER_STATE:
                    row.update(state=True, home_store_id=item.get("home_store_id"),
                               bought=bool(item.get("last_purchase_at")))
                elif item["sk"] == keys.MEMBER_RFM:
                    row["segment"] = item.get("segment")
                    row["tags"] |= set(item.get("tags") or ())
                else:
                    row["tags"] |= set(item.get("tags") or ())
        return [rows[m] for m in ids], last
