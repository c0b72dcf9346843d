"""Issue 10 #9 and #10: merges in a chain, in a cycle, and the same merge sent several times at once.

Every merge answers 200 or a clean 4xx, never a 500; every merge record ends `done` and leaves the pending
index; every ledger entry and lot of every member ends with the survivor, where all of it can be spent."""
from __future__ import annotations

import threading
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from chalicelib import bootstrap
from chalicelib.cli import _LocalContext
from chalicelib.domain.access import Principal, Role
from chalicelib.services import merges
from chalicelib.store.members import DynamoMemberRepository
from functions.merge_resume import handler as merge_resume
from testkit.audit import audit_member, read_books
from testkit.ledger import order
from testkit.support import auth, registration

ROUNDS = 6
COUNTER = ["sh-001"]


def _member_with_two_orders(api, tokens) -> tuple[str, list[dict]]:
    """A member with two ¥100 orders: 200 points."""
    staff = tokens.staff(stores=COUNTER)
    status, body = api.post("/members", registration(), staff)
    assert status == 201, body
    bought = [order(body["member_id"], amount=10_000) for _ in range(2)]
    for one in bought:
        assert api.post("/orders", one, staff)[0] == 201
    return body["member_id"], bought


def _post(session, url: str, token: str, body: dict | None = None) -> tuple[int, dict]:
    resp = session.post(url, json=body, headers=auth(token), timeout=60)
    return resp.status_code, resp.json()


def _merge_as_a_client_would(live, token: str, target: str, source: str) -> list[tuple[int, dict]]:
    """POST the merge; retry a 409 (and a 503) with the same body; on 422 'merge into the survivor', do so."""
    answers = []
    with requests.Session() as session:
        for _ in range(20):
            status, body = _post(session, f"{live.url}/members/{target}/merge", token, {"source_member_id": source})
            answers.append((status, body))
            if status in (409, 503):
                continue
            survivor = (body.get("details") or {}).get("survivor_member_id") if status == 422 else None
            if survivor and survivor != source:
                target = survivor
                continue
            break
    return answers


def _at_once(calls) -> list:
    barrier = threading.Barrier(len(calls))

    def run(call):
        barrier.wait()
        return call()

    with ThreadPoolExecutor(len(calls)) as pool:
        return list(pool.map(run, calls))


def _survivor(api, hq: str, member_id: str) -> str:
    status, view = api.get(f"/members/{member_id}", hq)
    assert status == 200, view
    return view["member_id"]


def _pending_for(members: set[str]) -> list:
    return [r for r in bootstrap.members().pending_merges(limit=1000)
            if {r.target_member_id, r.source_member_id} & members]


def _assert_everything_with_the_survivor(api, tokens, members: dict[str, list[dict]]) -> str:
    """merge-resume leaves nothing pending; all ids resolve to one survivor holding every entry and lot;
    a refund of any member's order books on the survivor; all that is left can be spent at once."""
    hq, clerk = tokens.hq(), tokens.staff(stores=COUNTER)
    assert merge_resume({"source": "aws.scheduler"}, _LocalContext("merge-resume"))["unfinished"] == 0
    assert _pending_for(set(members)) == []
    (survivor,) = {_survivor(api, hq, m) for m in members}
    for member in members:
        if member != survivor:
            assert read_books(member).entries == [], f"ledger entries left behind with {member}"
    report = audit_member(survivor)
    assert (report["balance"], report["orders"]) == (200 * len(members), 2 * len(members)), report
    assert api.get(f"/members/{survivor}/points", hq)[1]["balance"] == 200 * len(members)
    for bought in members.values():
        status, refund = api.post(f"/orders/{bought[0]['order_id']}/refunds",
                                  {"refund_id": f"r-{uuid.uuid4().hex[:6]}", "amount": 10_000}, clerk)
        assert status == 201 and (refund["member_id"], refund["points_removed"]) == (survivor, 100), refund
    left = 100 * len(members)
    status, spent = api.post(f"/members/{survivor}/points/redemptions",
                             {"redemption_id": f"all-{uuid.uuid4().hex[:6]}", "points": left, "reason": "全部",
                              "store_id": "sh-001"}, clerk)
    assert status == 201 and spent["balance"] == 0, spent
    audit_member(survivor)
    return survivor


def _clean(answers: list[tuple[int, dict]]) -> None:
    for status, body in answers:
        assert status == 200 or 400 <= status < 500, (status, body)
        if status != 200:
            assert set(body) == {"code", "message", "details"}, body


def test_a_merge_into_a_member_merged_away_meanwhile_finishes_into_the_survivor(api, tokens, monkeypatch):
    """Deterministic: C is being merged into A when A is merged into B (between C's first two batches)."""
    # Given A, B, C with 200 points each
    members = dict(_member_with_two_orders(api, tokens) for _ in range(3))
    a, b, c = members
    hq = tokens.hq()
    outer: list = []
    real_move = DynamoMemberRepository.move_batch

    def move_then_merge_the_target_away(self, target_id, source_id):
        if (target_id, source_id) == (a, c) and not outer:
            outer.append(merges.merge_members(b, a, Principal(sub="hq-2", role=Role.HQ), bootstrap.members(),
                                              bootstrap.ledger()))
        return real_move(self, target_id, source_id)

    monkeypatch.setattr(DynamoMemberRepository, "move_batch", move_then_merge_the_target_away)

    # When HQ merges C into A, and A is merged into B while C's items move
    status, record = api.post(f"/members/{a}/merge", {"source_member_id": c}, hq)

    # Then the inner merge answers its record (before: 500, the record had moved to B)
    assert status == 200, record
    assert outer and outer[0].state == "done"
    monkeypatch.setattr(DynamoMemberRepository, "move_batch", real_move)
    # and a retry answers the record too (before: 422, "target has itself been merged")
    status, again = api.post(f"/members/{a}/merge", {"source_member_id": c}, hq)
    assert status == 200 and again["state"] == "done", again
    assert bootstrap.members().get_merge(a, c).state == "done"
    # and C's lots are with B, spendable (before: stranded under C, B showing 600 with 400 in its ledger)
    _assert_everything_with_the_survivor(api, tokens, members)


def test_an_unfinished_merge_into_a_member_merged_away_is_finished_by_the_job(api, tokens, monkeypatch):
    # Given C merged into A with nothing moved yet (the request died), then A merged into B
    members = dict(_member_with_two_orders(api, tokens) for _ in range(3))
    a, b, c = members
    hq = tokens.hq()
    monkeypatch.setattr(merges, "MERGE_BATCHES_INLINE", 0)
    assert api.post(f"/members/{a}/merge", {"source_member_id": c}, hq)[1]["state"] == "moving"
    monkeypatch.setattr(merges, "MERGE_BATCHES_INLINE", 20)
    assert api.post(f"/members/{b}/merge", {"source_member_id": a}, hq)[1]["state"] == "done"

    # When merge-resume runs, Then the first merge finishes into B (before: counted finished, left pending)
    _assert_everything_with_the_survivor(api, tokens, members)
    assert bootstrap.members().get_merge(a, c).state == "done"


@pytest.mark.parametrize("shape", ["chain", "cycle"])
def test_concurrent_merges_in_a_chain_or_cycle_lose_nothing(live, api, tokens, shape):
    hq = tokens.hq()
    for _ in range(ROUNDS):
        # Given A, B, C with two ¥100 orders each
        members = dict(_member_with_two_orders(api, tokens) for _ in range(3))
        a, b, c = members
        # When, at the same moment, B takes A and A takes C (or A takes B, B takes C and C takes A)
        pairs = [(b, a), (a, c)] if shape == "chain" else [(a, b), (b, c), (c, a)]
        results = _at_once([lambda t=t, s=s: _merge_as_a_client_would(live, hq, t, s) for t, s in pairs])
        # Then every answer is 200 or a clean 4xx, never a 500
        for answers in results:
            _clean(answers)
        # and every point of the three ends with the one survivor, spendable
        _assert_everything_with_the_survivor(api, tokens, members)


def test_the_same_merge_sent_four_times_at_once_answers_its_record_each_time(live, api, tokens):
    hq = tokens.hq()
    for _ in range(ROUNDS):
        # Given T and A with 200 points each
        members = dict(_member_with_two_orders(api, tokens) for _ in range(2))
        target, source = members

        # When four identical merges are sent at once
        def send() -> tuple[int, dict]:
            with requests.Session() as session:
                return _post(session, f"{live.url}/members/{target}/merge", hq, {"source_member_id": source})

        answers = _at_once([send] * 4)

        # Then each answers the merge's record (before: one 200, the others 404 member_not_found or 409)
        assert [status for status, _ in answers] == [200] * 4, answers
        assert {(r["target_member_id"], r["source_member_id"], r["started_at"]) for _, r in answers} == \
            {(target, source, answers[0][1]["started_at"])}
        _assert_everything_with_the_survivor(api, tokens, members)
        assert bootstrap.members().get_merge(target, source).state == "done"


def test_points_folded_by_a_merge_still_moving_can_be_spent_at_once(api, tokens, monkeypatch):
    """A merge folds the source's balance into the survivor at once and moves its lots in batches after: a
    redemption in between spends lots where they still are (before: 409 insufficient_points, balance 200)."""
    members = dict(_member_with_two_orders(api, tokens) for _ in range(2))
    target, source = members
    hq, staff = tokens.hq(), tokens.staff(stores=COUNTER)
    monkeypatch.setattr(merges, "MERGE_BATCHES_INLINE", 0)
    assert api.post(f"/members/{target}/merge", {"source_member_id": source}, hq)[1]["state"] == "moving"
    status, spent = api.post(f"/members/{target}/points/redemptions",
                             {"redemption_id": f"r-{uuid.uuid4().hex[:8]}", "points": 350, "reason": "兑换",
                              "store_id": COUNTER[0]}, staff)
    assert status == 201, spent  # 200 of the target's own + 150 of the source's, not yet moved
    assert spent["balance"] == 50
    monkeypatch.setattr(merges, "MERGE_BATCHES_INLINE", 20)
    merge_resume({}, _LocalContext("merge-resume"))  # the job finishes the move
    assert bootstrap.members().get_merge(target, source).state == "done"
    report = audit_member(target)
    assert (report["balance"], report["available"]) == (50, 50)
