"""Folding a duplicate member into the survivor: the redirect, then the move of its items in batches."""
from __future__ import annotations

import random
import time
from collections.abc import Callable

from ..domain import clock
from ..domain.access import Principal
from ..domain.errors import Conflict, Invalid, NotFound, Unavailable
from ..domain.ledger import MemberState
from ..domain.members import MemberStatus, MergeRecord
from ..domain.points import fold_states
from ..domain.policy import authorize
from ..observability import audit as audit_line
from ..observability import metrics
from . import program
from .members import audit_entry, resolve
from .ports import LedgerRepository, MemberRepository

MERGE_BATCHES_INLINE = 20  # ~1,000 items; beyond that the merge-resume job finishes the move
STEP1_ATTEMPTS = 4  # step 1 re-read and retried when the members changed meanwhile (then 409 merge_conflict)
FAILED_BATCHES_IN_A_ROW = 8


def merge_members(target_id: str, source_id: str, actor: Principal, members: MemberRepository,
                  ledger: LedgerRepository) -> MergeRecord:
    """The HTTP use case: HQ folds `source_id` into `target_id`, tiers folded by the program's order."""
    authorize("members.merge", actor)
    tiers = program.tiers(ledger)
    return merge(target_id, source_id, actor, members, tiers.index, tiers.tiers[0].tier_id)


def merge(target_id: str, source_id: str, actor: Principal, members: MemberRepository,
          tier_rank: Callable[[str | None], int] = lambda _: 0, lowest_tier: str | None = None) -> MergeRecord:
    """Fold source into target. Step 1 (one transaction) redirects the source; then its items move in
    batches. A retry of the same merge answers the record (and finishes the move if it was interrupted),
    also while its twin is still running, and after the target has been merged into another member."""
    if target_id == source_id:
        raise Invalid("a member cannot be merged into itself", code="invalid_merge",
                      details=[{"loc": ["body", "source_member_id"], "msg": "same as target"}])
    for attempt in range(STEP1_ATTEMPTS):
        if members.get_merge(target_id, source_id) is not None:
            break
        try:
            _redirect(target_id, source_id, actor, members, tier_rank, lowest_tier)
            break
        except (NotFound, Conflict, Unavailable) as refused:
            # An identical request may have won meanwhile (the source is then "not active", or the two
            # transactions collided): that is this merge, answer its record.
            if members.get_merge(target_id, source_id) is not None:
                break
            if isinstance(refused, NotFound):
                raise
            if attempt == STEP1_ATTEMPTS - 1:  # the members kept changing (orders, another merge): 409, retry
                raise Conflict("one of the members changed meanwhile (merged, erased, points moved); retry",
                               code="merge_conflict") from None
            time.sleep(random.uniform(0.005, 0.02) * (attempt + 1))
    continue_merge(members, target_id, source_id, max_batches=MERGE_BATCHES_INLINE)
    record = members.get_merge(target_id, source_id)
    if record is None:  # merge records are never moved or deleted
        raise RuntimeError(f"merge record {target_id} <- {source_id} not found after step 1")
    return record


def _redirect(target_id: str, source_id: str, actor: Principal, members: MemberRepository,
              tier_rank: Callable[[str | None], int], lowest_tier: str | None) -> None:
    """Step 1: the tombstone, the redirects, the folded points state and the merge record, in one transaction."""
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
        folded = fold_states(target.state or MemberState(member_id=target_id, home_store_id=target.home_store_id),
                             source.state, tier_rank)
    members.start_merge(target, source, record, audit_entry(actor, "member.merged", [f"merged_from:{source_id}"]),
                        folded, lowest_tier)
    metrics.add_metric(name="MemberMerged", unit="Count", value=1)
    audit_line("member.merge", actor=actor.sub, role=actor.role.value, member_id=target_id,
               source_member_id=source_id)


def continue_merge(members: MemberRepository, target_id: str, source_id: str, max_batches: int) -> bool:
    """Move remaining items; True when the merge is complete. Safe to run twice at once (each batch is a
    conditional transaction; a lost race just looks again). A batch that keeps losing (the survivor busy with
    orders, another worker on the same items) is left to the next run after FAILED_BATCHES_IN_A_ROW tries,
    rather than retried in a loop; it never blocks for good, since nothing a merge moves can find its key
    taken at the survivor (store/keys.MERGE_MOVES)."""
    record = members.get_merge(target_id, source_id)
    if record is None or record.state == "done":
        return True
    moved_batches = failed_in_a_row = 0
    while moved_batches < max_batches:
        try:
            moved = members.move_batch(target_id, source_id)
        except Unavailable:
            moved = -1
        if moved == 0:
            members.finish_merge(target_id, source_id)
            return True
        if moved > 0:
            moved_batches, failed_in_a_row = moved_batches + 1, 0
            continue
        failed_in_a_row += 1
        if failed_in_a_row >= FAILED_BATCHES_IN_A_ROW:
            return False
        time.sleep(random.uniform(0.005, 0.02) * failed_in_a_row)
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
