"""What every points use case shares: optimistic retries, finding the live member, request fingerprints."""
from __future__ import annotations

import base64
import hashlib
import json
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from ..domain import clock
from ..domain.errors import Conflict, DocumentExists, Invalid, NotFound, StaleRead, Unavailable
from ..domain.ledger import Lot, MemberHead, MemberState
from ..domain.points import InsufficientPoints, LotView, oldest_open, plan_consumption
from .ports import LedgerRepository

T = TypeVar("T")
ATTEMPTS = 12
MAX_HOPS = 10


def optimistic(attempt: Callable[[], T]) -> T:
    """Run read-compute-write until the write finds what was read unchanged. Under heavy contention on
    one member (32 POS retries at once) a few rounds are normal; past ATTEMPTS the client gets a 503
    `contention` and retries (every write here is idempotent)."""
    for n in range(ATTEMPTS):
        try:
            return attempt()
        except StaleRead:
            time.sleep(random.uniform(0.002, 0.01) * min(2 ** n, 16))
    raise Unavailable("too many concurrent changes to this member; retry", code="contention")


def live_member(ledger: LedgerRepository, member_id: str,
                erased_ok: bool = False) -> tuple[MemberHead, MemberState]:
    """The member's profile item and points state, following merges (one query per hop). `erased_ok`: the
    ledger outlives an erased profile (its points still expire)."""
    for _ in range(MAX_HOPS):
        profile, state = ledger.load_member(member_id)
        if profile is None:
            raise NotFound("member not found", code="member_not_found", details={"member_id": member_id})
        if profile.status == "merged" and profile.merged_into:
            member_id = profile.merged_into
            continue
        if profile.status == "erased" and not erased_ok:
            raise NotFound("member has been erased", code="member_erased", details={"member_id": member_id})
        return profile, state
    raise NotFound("member not found", code="member_not_found", details={"member_id": member_id})


def live_members(ledger: LedgerRepository, member_ids: list[str]) -> dict[str, tuple[str | None, str]]:
    """Many members at once, following merges: each id -> (the live member it is now, "") or (None, why:
    "unknown_member" or "erased"). One BatchGetItem of profiles per 100 ids and per hop."""
    resolved: dict[str, tuple[str | None, str]] = {}
    current = {m: m for m in member_ids}
    for _ in range(MAX_HOPS):
        if not current:
            break
        heads = ledger.heads(sorted(set(current.values())))
        following: dict[str, str] = {}
        for asked, now in current.items():
            head = heads.get(now)
            if head is None:
                resolved[asked] = (None, "unknown_member")
            elif head.status == "merged" and head.merged_into:
                following[asked] = head.merged_into
            else:
                resolved[asked] = (now, "") if head.status == "active" else (None, "erased")
        current = following
    resolved.update({asked: (None, "unknown_member") for asked in current})  # longer than any real chain
    return resolved


@dataclass(frozen=True)
class Spend:
    """Points taken from the soonest-expiring lots: the lots as they become (each with the remainder read),
    the member's state after, and the takes a receipt lists."""

    updated: list[tuple[Lot, int]]
    state: MemberState
    takes: list[dict[str, Any]]


def spend(ledger: LedgerRepository, state: MemberState, points: int, now: datetime, max_lots: int,
          doing: str) -> Spend:
    """Plan spending `points` (a redemption, an exchange): 409 `insufficient_points` when the spendable balance
    (lots valid today, less debt) is short, 409 `too_many_lots` when the lots it needs would not fit one
    transaction beside the use case's other items."""
    today = clock.business_day(now)
    lots = ledger.open_lots(state.member_id, state.open_lots_from)
    if sum(lot.remaining for lot in lots) < state.available:
        # A merge folded the source's points into this state but is still moving its lots here: spend them
        # where they are (each lot is written on the remaining it was read with, and the move's batch holds
        # the survivor's state version, so a lot is never both spent and moved on an old read).
        for source in ledger.moving_sources(state.member_id):
            lots += ledger.open_lots(source, None)
    spendable = sum(lot.remaining for lot in lots if lot.expires_on >= today) - state.owed
    if points > spendable:
        raise Conflict("not enough points", code="insufficient_points",
                       details={"balance": spendable, "requested": points})
    try:
        plan = plan_consumption([LotView(lot.lot_id, lot.expires_on, lot.remaining) for lot in lots], points, today)
    except InsufficientPoints as short:
        raise Conflict("not enough points", code="insufficient_points",
                       details={"balance": short.available, "requested": points}) from None
    if len(plan) > max_lots:
        raise Conflict(f"the points are spread over too many lots for one {doing}; use fewer points at once",
                       code="too_many_lots", details={"lots": len(plan), "max": max_lots})
    by_id = {lot.lot_id: lot for lot in lots}
    updated = [(by_id[v.lot_id].evolve(remaining=v.remaining - take), v.remaining) for v, take in plan]
    after = {**by_id, **{lot.lot_id: lot for lot, _ in updated}}
    spent = state.evolve(version=state.version + 1, available=state.available - points,
                         open_lots_from=oldest_open(after.values(), now))
    takes = [{"lot_id": view.lot_id, "earned_at": clock.iso(by_id[view.lot_id].at),
              "expires_on": view.expires_on.isoformat(), "points": take} for view, take in plan]
    return Spend(updated, spent, takes)


def fingerprint(fields: dict[str, Any]) -> str:
    """Same request body -> same fingerprint: a retried id with a different body is a 409, not a replay."""
    digest = hashlib.sha256(json.dumps(fields, sort_keys=True, separators=(",", ":"), default=str).encode()).digest()
    return base64.urlsafe_b64encode(digest[:16]).decode().rstrip("=")  # 128 bits: 22 bytes on every order


def replay(ledger: LedgerRepository, kind: str, owner: str, doc_id: str, print_: str) -> dict[str, Any] | None:
    """The stored answer of an idempotent request, or None; the same id with another body is a 409."""
    done = ledger.get_document(kind, owner, doc_id)
    if done is None:
        return None
    if done["fingerprint"] != print_:
        raise Conflict(f"{kind}_id already used for a different request", code=f"{kind}_id_reused",
                       details={f"{kind}_id": doc_id})
    return done["answer"]


class AlreadyDone(Exception):  # noqa: N818 - a signal, not an error
    """Raised inside an attempt that found its own stored answer: the request is a retry."""

    def __init__(self, answer: dict[str, Any]) -> None:
        super().__init__("replay")
        self.answer = answer


def replay_at_live_member(ledger: LedgerRepository, kind: str, named: str, live: str, doc_id: str,
                          print_: str) -> None:
    """A request made through a merged-away id keeps its document with the member that was live then: its
    retry, through the same old id, finds it along the merge path (that member may have been merged on
    since) before it is judged against the balance it already spent. Reads only when the id named is not
    the live member's: one query per hop and one GetItem per member on the path."""
    current = named
    for _ in range(MAX_HOPS):
        if current == live:
            return
        head, _ = ledger.load_member(current)
        if head is None or not head.merged_into:
            return
        current = head.merged_into
        done = ledger.get_document(kind, current, doc_id)
        # Ids are the clients': another request under this id with another body, on a member further along,
        # is not this one (it is a 409 only where this request would write, the live member).
        if done is not None and done["fingerprint"] == print_:
            raise AlreadyDone(done["answer"])


def idempotent(ledger: LedgerRepository, kind: str, owner: str, doc_id: str, print_: str,
               attempt: Callable[[], dict[str, Any]]) -> tuple[dict[str, Any], bool]:
    """Replay first (a retried redemption must not be judged against the balance it already spent), then
    do it; a concurrent twin that wins the document's key turns into a replay too."""
    previous = replay(ledger, kind, owner, doc_id, print_)
    if previous is not None:
        return previous, False

    def stored() -> dict[str, Any] | None:
        # A document stays under the member it was written for (merges do not move documents): `owner`'s,
        # or, written through a merged-away id, the live member's.
        answer = replay(ledger, kind, owner, doc_id, print_)
        if answer is None and kind != "refund":
            live = live_member(ledger, owner, erased_ok=True)[1].member_id
            answer = replay(ledger, kind, live, doc_id, print_) if live != owner else None
        return answer

    try:
        return optimistic(attempt), True
    except AlreadyDone as done:
        return done.answer, False
    except DocumentExists:
        answer = stored()
        if answer is None:
            raise
        return answer, False
    except (Conflict, Invalid):
        # Refused on what it read (not enough points, over a limit): a twin of this very request may have
        # written between the first replay check and that read, and spent what this one would have. Its
        # answer is this request's answer.
        answer = stored()
        if answer is None:
            raise
        return answer, False
