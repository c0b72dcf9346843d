"""Segment audiences of coupon issues: `POST /coupon-issues` with `audience` instead of `member_ids`.

The request validates (access, quota scope, the template), records the job on the issue item (status
`selecting`, the audience, counters at 0), sends `{issue_id}` to the job queue and answers 202 with the
progress. A worker (functions/coupon_audience.py on SQS; locally a thread pool in the server process) runs it:
for each parallel-scan segment of the member index (gsi5), page by page, it reads the items the audience needs,
keeps the members that match, and issues to them through the bulk issue (services/coupon_issues.issue_chunk)
under the deterministic chunk id `<issue_id>~<segment>~<page>`; then it commits the segment's cursor past the
page with the chunk's numbers, conditioned on the cursor still being at that page. So:

  * a crash or a second worker anywhere resumes from the last committed page; a chunk issued but not yet
    committed is found by its id and replayed (its plan is the plan: nobody gets a coupon twice);
  * the budget or quota running out (or the template ending) stops the job (`stopped`, with the reason), with
    what was issued kept; when the budget covers part of a chunk, that part is issued first;
  * the worker stops taking pages when its time budget is nearly used and answers `finished: false`; the
    caller sends the message again.

Who is selected (docs/access-patterns.md): members in the member index, i.e. with a points state. `segment` is
the last nightly result's; `no_purchase` is read from the state itself (no purchase ever), so it also covers
members who got a state (points credited by HQ, say) since the last night. `tags`: every one held, rule-based
(last night) or staff. A manager's audience never reaches past their scope: a store manager's is their store's
home members, a region manager's the home members of their region's stores (`home_store_id`, if given, must be
one of those)."""
from __future__ import annotations

import math
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any, Protocol

from ..domain import clock
from ..domain.access import Principal, Role
from ..domain.coupons import Audience, IssueInput, IssueProgress
from ..domain.errors import Conflict, Forbidden, NotFound
from ..domain.policy import StoreRef, allow_role, authorize
from ..domain.pool import HQ, level_parts
from ..domain.segments import NO_PURCHASE
from ..observability import logger, metrics
from . import coupon_issues
from .ledger_common import fingerprint
from .ports import CouponRepository, LedgerRepository, StoreRepository

PAGE = 1_000  # member index keys per chunk: a chunk's matches always fit one bulk issue (MAX_ISSUE)
MEMBERS_PER_SEGMENT = 200_000
MAX_SEGMENTS = 16
MIN_SEGMENTS = 1
SEGMENT_WORKERS = 2  # segments worked on at once by one worker (each chunk already issues 16 coupons at a time)
STALE_SECONDS = 300  # a replayed POST sends the job again when it has not moved for this long
STOP_CODES = ("budget_exhausted", "quota_exhausted", "template_inactive", "template_ended", "template_not_found")
RUNNING = ("selecting", "issuing")


class AudienceJobs(CouponRepository, Protocol):
    def issue_record(self, issue_id: str) -> dict[str, Any] | None: ...
    def start_audience(self, issue_id: str, body: dict[str, Any], segments: int = ...) -> bool: ...
    def fix_audience_segments(self, issue_id: str, segments: int) -> int: ...
    def audience_cursor(self, issue_id: str, segment: int) -> tuple[int, dict[str, Any] | None, bool]: ...
    def commit_audience_chunk(self, issue_id: str, segment: int, page: int, start: dict[str, Any] | None,
                              done: bool, matched: int, issued: int, skipped: dict[str, int]) -> bool: ...
    def set_audience_status(self, issue_id: str, status: str, from_statuses: tuple[str, ...],
                            reason: str | None = None) -> bool: ...


class AudienceReader(Protocol):
    def table_item_estimate(self) -> int: ...
    def audience_page(self, segment: int, total: int, start: dict[str, Any] | None, limit: int, *, states: bool,
                      results: bool, staff_tags: bool) -> tuple[list[dict[str, Any]], dict[str, Any] | None]: ...


class JobQueue(Protocol):
    def send(self, body: dict[str, Any]) -> None: ...


# ---- the request -------------------------------------------------------------------------------------------------
def post_issue(cmd: IssueInput, actor: Principal, coupons: AudienceJobs, ledger: LedgerRepository,
               stores: StoreRepository, queue: Callable[[], JobQueue]) -> tuple[bool, dict[str, Any], bool]:
    """POST /coupon-issues: (a job?, the answer or the job's progress, created). `member_ids` is the bulk issue
    (services/coupon_issues); `audience` starts (or answers) a job. The queue is built only for a job."""
    if cmd.audience is None:
        answer, created = coupon_issues.issue(cmd, actor, coupons, ledger, stores)
        return False, answer, created
    return True, start(cmd, actor, coupons, stores, queue()), False


def start(cmd: IssueInput, actor: Principal, coupons: AudienceJobs, stores: StoreRepository,
          queue: JobQueue) -> dict[str, Any]:
    """Record the job (once per issue_id) and queue it: its progress. The same body again answers the same
    job (and queues it again if it has not moved for a while: a lost message is re-driven by the retry)."""
    assert cmd.audience is not None
    level = coupon_issues._level(cmd, actor, stores)
    home_stores = _home_stores(cmd, actor, stores)
    print_ = fingerprint(cmd.model_dump(mode="json", exclude_none=True))
    record = coupons.issue_record(cmd.issue_id)
    if record is None:
        coupon_issues.usable_template(coupons, cmd.template_id)
        body = {"fingerprint": print_, "template_id": cmd.template_id, "level": level,
                "audience": cmd.audience.model_dump(mode="json", exclude_none=True), "home_stores": home_stores,
                "requested_by": actor.sub}
        if coupons.start_audience(cmd.issue_id, body):
            queue.send({"issue_id": cmd.issue_id})
            metrics.add_metric(name="CouponAudienceJobsStarted", unit="Count", value=1)
            record = coupons.issue_record(cmd.issue_id)
            assert record is not None
            return view(cmd.issue_id, record)
        record = coupons.issue_record(cmd.issue_id)  # a twin recorded it first
        assert record is not None
    if record["body"].get("fingerprint") != print_:
        raise Conflict("issue_id already used for a different issue", code="issue_id_reused",
                       details={"issue_id": cmd.issue_id})
    if record["status"] in RUNNING and _stale(record):
        queue.send({"issue_id": cmd.issue_id})
    return view(cmd.issue_id, record)


def segments_for(estimate: int) -> int:
    return min(MAX_SEGMENTS, max(MIN_SEGMENTS, math.ceil(estimate / MEMBERS_PER_SEGMENT)))


def _home_stores(cmd: IssueInput, actor: Principal, stores: StoreRepository) -> list[str] | None:
    """The home stores a manager's audience is limited to (None: HQ, no limit); a home_store_id outside
    them is refused."""
    assert cmd.audience is not None
    wanted = cmd.audience.home_store_id
    if actor.role is Role.HQ:
        return None
    if actor.role is Role.STORE_MANAGER:
        scope = [cmd.store_id] if cmd.store_id is not None else []
    else:  # a region manager: their region's stores
        scope, cursor = [], None
        while True:
            page, cursor = stores.list(cursor, 100)
            scope += [s.store_id for s in page if s.region_id == actor.region_id]
            if not cursor:
                break
    if wanted is not None and wanted not in scope:
        raise Forbidden("a manager's audience is limited to the home members of their own stores",
                        code="audience_out_of_scope", details={"home_store_id": wanted})
    return sorted(scope)


def _stale(record: dict[str, Any]) -> bool:
    moved = record.get("updated_at") or record.get("created_at")
    return moved is None or (clock.now() - datetime.fromisoformat(moved)).total_seconds() >= STALE_SECONDS


# ---- progress ----------------------------------------------------------------------------------------------------
def progress(issue_id: str, actor: Principal, coupons: AudienceJobs, stores: StoreRepository) -> dict[str, Any]:
    allow_role("coupons.read_issue", actor)
    record = coupons.issue_record(issue_id)
    if record is None:
        raise NotFound("no such coupon issue", code="issue_not_found", details={"issue_id": issue_id})
    level = record["body"].get("level", HQ)
    kind, ident = level_parts(level)
    if kind == "store":
        authorize("coupons.read_issue", actor, store=lambda: stores.get(ident) or StoreRef(ident or ""))
    elif kind == "region":
        authorize("coupons.read_issue", actor, store=StoreRef("", ident))
    elif actor.role is not Role.HQ:
        raise Forbidden("an issue from HQ's budget is HQ's to read", code="not_your_issue")
    return view(issue_id, record)


def view(issue_id: str, record: dict[str, Any]) -> dict[str, Any]:
    body = record["body"]
    if record["kind"] == "audience":
        return IssueProgress(
            issue_id=issue_id, template_id=body["template_id"], issuer=body["level"], kind="audience",
            status=record["status"], audience=Audience.model_validate(body["audience"]), matched=record["matched"],
            issued=record["issued"], skipped=record["skipped"], stop_reason=record["stop_reason"],
            created_at=record["created_at"], updated_at=record["updated_at"]).model_dump(mode="json")
    answer = record["answer"]
    skipped: dict[str, int] = {}
    for row in (answer["skipped"] if answer else body.get("skipped", [])):
        skipped[row["reason"]] = skipped.get(row["reason"], 0) + 1
    return IssueProgress(
        issue_id=issue_id, template_id=body["template_id"], issuer=body.get("level", HQ), kind="members",
        status="done" if answer else "issuing", matched=body["requested"],
        issued=answer["issued_count"] if answer else 0, skipped=skipped, created_at=body["issued_at"],
        result=answer).model_dump(mode="json")


# ---- the worker --------------------------------------------------------------------------------------------------
def run(issue_id: str, time_left: Callable[[], bool], coupons: AudienceJobs, ledger: LedgerRepository,
        members: AudienceReader) -> dict[str, Any]:
    """Work on the job until it is done or stopped, or `time_left()` says stop: {"issue_id", "status",
    "finished"}. Safe to run twice at once and to re-run after a crash at any point."""
    record = coupons.issue_record(issue_id)
    if record is None or record["kind"] != "audience":
        logger.warning("no such audience job", extra={"issue_id": issue_id})
        return {"issue_id": issue_id, "status": "unknown", "finished": True}
    if record["status"] not in RUNNING:
        return {"issue_id": issue_id, "status": record["status"], "finished": True}
    coupons.set_audience_status(issue_id, "issuing", ("selecting",))
    total = record["segments"] or coupons.fix_audience_segments(issue_id, segments_for(members.table_item_estimate()))
    job = _Job(issue_id, record | {"segments": total}, coupons, ledger, members, time_left)
    with ThreadPoolExecutor(max(1, min(total, SEGMENT_WORKERS)), thread_name_prefix="audience") as pool:
        outcomes = list(pool.map(job.segment, range(total)))
    if "stopped" in outcomes:
        status = (coupons.issue_record(issue_id) or {}).get("status", "stopped")
        return {"issue_id": issue_id, "status": status, "finished": True}
    if all(o == "done" for o in outcomes):
        coupons.set_audience_status(issue_id, "done", RUNNING)
        final = coupons.issue_record(issue_id) or record
        metrics.add_metric(name="CouponAudienceJobsFinished", unit="Count", value=1)
        logger.info("audience job finished", extra={"issue_id": issue_id, "status": final["status"],
                                                    "matched": final["matched"], "issued": final["issued"]})
        return {"issue_id": issue_id, "status": final["status"], "finished": True}
    return {"issue_id": issue_id, "status": "issuing", "finished": False}


class _Job:
    def __init__(self, issue_id: str, record: dict[str, Any], coupons: AudienceJobs, ledger: LedgerRepository,
                 members: AudienceReader, time_left: Callable[[], bool]) -> None:
        self.issue_id, self.coupons, self.ledger, self.members, self.time_left = (
            issue_id, coupons, ledger, members, time_left)
        body = record["body"]
        self.total = record["segments"]
        self.template_id, self.level = body["template_id"], body["level"]
        self.audience = Audience.model_validate(body["audience"])
        self.home_stores = set(body["home_stores"]) if body.get("home_stores") is not None else None
        a = self.audience
        self.reads = {"states": a.home_store_id is not None or a.segment == NO_PURCHASE or self.home_stores is not None,
                      "results": (a.segment is not None and a.segment != NO_PURCHASE) or bool(a.tags),
                      "staff_tags": bool(a.tags)}

    def matches(self, row: dict[str, Any]) -> bool:
        a = self.audience
        if self.reads["states"] and not row["state"]:
            return False  # gone since the index named it (merged away)
        if a.segment == NO_PURCHASE and row["bought"]:
            return False
        if a.segment is not None and a.segment != NO_PURCHASE and row["segment"] != a.segment:
            return False
        if a.tags and not set(a.tags) <= row["tags"]:
            return False
        if a.home_store_id is not None and row["home_store_id"] != a.home_store_id:
            return False
        return self.home_stores is None or row["home_store_id"] in self.home_stores

    def segment(self, seg: int) -> str:
        """'done', 'stopped' or 'paused' (out of time)."""
        page, start, done = self.coupons.audience_cursor(self.issue_id, seg)
        while not done:
            if not self.time_left():
                return "paused"
            record = self.coupons.issue_record(self.issue_id)
            if record is None or record["status"] not in RUNNING:
                return "stopped"
            rows, last = self.members.audience_page(seg, self.total, start, PAGE, **self.reads)
            matched = [r["member_id"] for r in rows if self.matches(r)]
            answer, stop = self._issue(seg, page, matched)
            if answer is not None or stop is None:
                counts = _counts(answer)
                if self.coupons.commit_audience_chunk(self.issue_id, seg, page, last, last is None, *counts):
                    page, start, done = page + 1, last, last is None
                else:  # another worker committed this page first: continue from where it left the cursor
                    page, start, done = self.coupons.audience_cursor(self.issue_id, seg)
            if stop is not None:
                self.coupons.set_audience_status(self.issue_id, "stopped", RUNNING, stop)
                logger.info("audience job stopped", extra={"issue_id": self.issue_id, "reason": stop})
                return "stopped"
        return "done"

    def _issue(self, seg: int, page: int, matched: list[str]) -> tuple[dict[str, Any] | None, str | None]:
        """The chunk's answer (None: nobody matched, or nothing could be issued) and the reason to stop, if any."""
        if not matched:
            return None, None
        chunk = f"{self.issue_id}~{seg}~{page}"
        try:
            return coupon_issues.issue_chunk(chunk, self.template_id, matched, self.level, self.coupons,
                                             self.ledger), None
        except (Conflict, NotFound) as err:
            if err.code not in STOP_CODES:
                raise
            left = err.details.get("left") if isinstance(err.details, dict) else None
            if err.code in ("budget_exhausted", "quota_exhausted") and left and left < len(matched):
                try:  # what the budget still covers, then stop
                    return coupon_issues.issue_chunk(chunk, self.template_id, matched[:left], self.level,
                                                     self.coupons, self.ledger), err.code
                except (Conflict, NotFound) as again:
                    if again.code not in STOP_CODES:
                        raise
            return None, err.code


def _counts(answer: dict[str, Any] | None) -> tuple[int, int, dict[str, int]]:
    if answer is None:
        return 0, 0, {}
    skipped: dict[str, int] = {}
    for row in answer["skipped"]:
        skipped[row["reason"]] = skipped.get(row["reason"], 0) + 1
    return answer["requested"], answer["issued_count"], skipped
