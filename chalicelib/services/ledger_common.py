"""What every points use case shares: optimistic retries, finding the live member, request fingerprints."""
from __future__ import annotations

import base64
import hashlib
import json
import random
import time
from collections.abc import Callable
from typing import Any, TypeVar

from ..domain.errors import NotFound, StaleRead, Unavailable
from ..domain.ledger import MemberState
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
                erased_ok: bool = False) -> tuple[dict[str, Any], MemberState]:
    """The member's profile item and points state, following merges (one query per hop). `erased_ok`: the
    ledger outlives an erased profile (its points still expire)."""
    for _ in range(MAX_HOPS):
        profile, state = ledger.load_member(member_id)
        if profile is None:
            raise NotFound("member not found", code="member_not_found", details={"member_id": member_id})
        if profile["status"] == "merged" and profile.get("merged_into"):
            member_id = profile["merged_into"]
            continue
        if profile["status"] == "erased" and not erased_ok:
            raise NotFound("member has been erased", code="member_erased", details={"member_id": member_id})
        return profile, state
    raise NotFound("member not found", code="member_not_found", details={"member_id": member_id})


def fingerprint(fields: dict[str, Any]) -> str:
    """Same request body -> same fingerprint: a retried id with a different body is a 409, not a replay."""
    digest = hashlib.sha256(json.dumps(fields, sort_keys=True, separators=(",", ":"), default=str).encode()).digest()
    return base64.urlsafe_b64encode(digest[:16]).decode().rstrip("=")  # 128 bits: 22 bytes on every order
