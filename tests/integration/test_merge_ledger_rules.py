"""Points through a merged-away id: what the ledger state machine (test_ledger_state_machine.py) found when it
learnt to merge, pinned as small deterministic tests.

The rules (docs/architecture.md "Members", docs/decisions.md 2026-12-02 "Merges that always finish", issue 10
#3): an old id acts for the survivor; a document written through an old id after the merge sits with the live
member; a retry answers 200 with the stored answer, whichever id the client used, and is never judged against
the balance it already spent (services/ledger_common.idempotent: "Replay first").

Every scenario: S merged into T (nothing to move), then T earns 100 points (a ¥100 order) and the counter
redeems some of them through S's old id (the document is stored with T). Chains: HQ also credits 25 points
through S's old id, then T is merged into U.

What the machine found:
  - a retry through S, while T is the live member and its balance no longer covers the redemption, was judged
    against the balance it had already spent: 409 insufficient_points (fixed in f933ad7: the retry replays
    from the live member first);
  - after T's own merge into U, a retry through S looked under S and under the live member U, not under T
    where the document is, and was done again: a second redemption (points spent twice), a second adjustment
    (points credited twice). Fixed: the replay follows the merge path from the id named.
"""
from __future__ import annotations

import uuid
from typing import Any

import pytest

from testkit.audit import audit_member
from testkit.ledger import order, plain_one_month_rules
from testkit.support import registration

COUNTER = ["sh-001"]


class Till:
    """Two members at the counter of sh-001, S already merged into T, through the API."""

    def __init__(self, api: Any, tokens: Any) -> None:
        self.api, self.staff, self.hq = api, tokens.staff(stores=COUNTER), tokens.hq()
        self.target, self.source = self.register(), self.register()
        status, record = api.post(f"/members/{self.target}/merge", {"source_member_id": self.source}, self.hq)
        assert (status, record["state"]) == (200, "done"), record
        status, receipt = api.post("/orders", order(self.target, amount=10_000), self.staff)
        assert (status, receipt["points_earned"]) == (201, 100), receipt

    def register(self) -> str:
        status, body = self.api.post("/members", registration(), self.staff)
        assert status == 201, body
        return body["member_id"]

    def redeem(self, member_id: str, redemption_id: str, points: int) -> tuple[int, Any]:
        return self.api.post(f"/members/{member_id}/points/redemptions",
                             {"redemption_id": redemption_id, "points": points, "reason": "奶茶", "store_id": "sh-001"},
                             self.staff)

    def balance(self) -> int:
        status, view = self.api.get(f"/members/{self.target}/points", self.staff)
        assert status == 200, view
        return view["balance"]


@pytest.fixture
def desk(stack, fresh_table, api, tokens) -> Till:  # noqa: ANN001
    plain_one_month_rules(api, tokens.hq())
    return Till(api, tokens)


def test_control_a_retry_through_the_old_id_replays_while_the_balance_still_covers_it(desk):
    # Given 40 of T's 100 points redeemed through S's old id (60 left: the retry's 40 would still fit)
    rid = f"r-{uuid.uuid4().hex[:8]}"
    status, first = desk.redeem(desk.source, rid, 40)
    assert (status, first["member_id"], first["balance"]) == (201, desk.target, 60), first

    # When the counter retries it through the same old id, Then it answers the stored answer, nothing spent twice
    assert desk.redeem(desk.source, rid, 40) == (200, first)
    assert desk.balance() == 60
    audit_member(desk.target)


def test_a_retry_through_the_old_id_replays_even_when_the_balance_no_longer_covers_it(desk):
    """Failed before f933ad7 (409 insufficient_points: judged against the balance it had already spent)."""
    # Given 70 of T's 100 points redeemed through S's old id (30 left)
    rid = f"r-{uuid.uuid4().hex[:8]}"
    status, first = desk.redeem(desk.source, rid, 70)
    assert (status, first["member_id"], first["balance"]) == (201, desk.target, 30), first

    # When the counter retries it through the same old id (a timeout at the till)
    status, again = desk.redeem(desk.source, rid, 70)

    # Then it answers the stored answer (before f933ad7: 409 insufficient_points, balance 30, requested 70)
    assert (status, again) == (200, first)
    assert desk.balance() == 30
    audit_member(desk.target)


class Chain(Till):
    """S merged into T, T earned 100 points and 40 were redeemed through S's old id (stored with T); then T
    itself was merged into U: S -> T -> U."""

    def __init__(self, api: Any, tokens: Any) -> None:
        super().__init__(api, tokens)
        self.rid = f"r-{uuid.uuid4().hex[:8]}"
        status, self.first = self.redeem(self.source, self.rid, 40)
        assert (status, self.first["member_id"], self.first["balance"]) == (201, self.target, 60), self.first
        self.adjustment = {"adjustment_id": f"a-{uuid.uuid4().hex[:8]}", "points": 25, "reason": "补偿"}
        status, self.adjusted = api.post(f"/members/{self.source}/points/adjustments", self.adjustment, self.hq)
        assert (status, self.adjusted["member_id"], self.adjusted["balance"]) == (201, self.target, 85), self.adjusted
        self.survivor = self.register()
        status, record = api.post(f"/members/{self.survivor}/merge", {"source_member_id": self.target}, self.hq)
        assert (status, record["state"]) == (200, "done"), record

    def balance(self) -> int:
        status, view = self.api.get(f"/members/{self.survivor}/points", self.staff)
        assert status == 200, view
        return view["balance"]


@pytest.fixture
def chain(desk, api, tokens) -> Chain:  # noqa: ANN001  (desk: the program's rules on a fresh table)
    return Chain(api, tokens)


def test_control_in_a_chain_a_cancel_through_the_old_id_finds_the_redemption(chain, api):
    status, cancelled = api.post(f"/members/{chain.source}/points/redemptions/{chain.rid}/cancel", None, chain.staff)
    assert (status, cancelled["member_id"], cancelled["points"]) == (200, chain.target, 40), cancelled
    assert chain.balance() == 125
    audit_member(chain.survivor)


def test_in_a_chain_a_retry_through_the_old_id_replays_the_redemption(chain):
    status, again = chain.redeem(chain.source, chain.rid, 40)
    assert (status, again) == (200, chain.first)
    assert chain.balance() == 85
    audit_member(chain.survivor)


def test_in_a_chain_a_retry_through_the_old_id_replays_the_adjustment(chain, api):
    status, again = api.post(f"/members/{chain.source}/points/adjustments", chain.adjustment, chain.hq)
    assert (status, again) == (200, chain.adjusted)
    assert chain.balance() == 85
    audit_member(chain.survivor)


def test_in_a_chain_an_id_another_member_used_is_a_new_redemption_through_the_old_id(api, tokens):
    """T redeemed with X before anything was merged; S -> T -> U. A redemption through S with X and another
    body is not T's (it writes with the live U, where X is free): 201, never 409 redemption_id_reused.
    The state machine found it (a replay that followed the merge path judged T's own X a reuse)."""
    staff, hq = tokens.staff(stores=COUNTER), tokens.hq()

    def member() -> str:
        status, body = api.post("/members", registration(), staff)
        assert status == 201, body
        assert api.post("/orders", order(body["member_id"], amount=10_000), staff)[0] == 201
        return body["member_id"]

    s, t, u = member(), member(), member()
    rid = f"X-{uuid.uuid4().hex[:8]}"
    body = {"redemption_id": rid, "points": 10, "reason": "奶茶", "store_id": "sh-001"}
    assert api.post(f"/members/{t}/points/redemptions", body, staff)[0] == 201
    assert api.post(f"/members/{t}/merge", {"source_member_id": s}, hq)[1]["state"] == "done"
    assert api.post(f"/members/{u}/merge", {"source_member_id": t}, hq)[1]["state"] == "done"
    status, answer = api.post(f"/members/{s}/points/redemptions", {**body, "points": 20}, staff)
    assert (status, answer["member_id"], answer["points"]) == (201, u, 20), answer
    assert api.post(f"/members/{s}/points/redemptions", {**body, "points": 20}, staff) == (200, answer)
    audit_member(u)
