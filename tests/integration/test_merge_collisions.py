"""Issue 10 #1: a merge finishes when both members hold a record with the same key.

Redemption and adjustment ids are made by the client (two stores can pick the same one) and the expiry job
writes one `points_expiring` fact per member and day, so two members can hold documents with the same sort
key. The rule (docs/decisions.md, 2026-12-02 "Merges that always finish"): a merge moves the ledger, events
and audit trail, whose keys carry a ULID; documents stay under the member id they were written for and are
read through that id, or through the survivor's id when only one member of the family holds that id.
"""
from __future__ import annotations

from collections import Counter
from datetime import date

from chalicelib import bootstrap
from chalicelib.cli import _LocalContext
from chalicelib.domain import clock
from chalicelib.store import keys
from functions.merge_resume import handler as merge_resume
from functions.points_expiry import handler as points_expiry
from testkit.audit import audit_member, read_books
from testkit.ledger import one_month_expiry, order, plain_day
from testkit.support import registration

COUNTER = ["sh-001"]


def _member(api, tokens) -> str:
    status, body = api.post("/members", registration(), tokens.staff(stores=COUNTER))
    assert status == 201, body
    return body["member_id"]


def _buy(api, tokens, member_id: str, amount: int = 10_000, **extra) -> dict:
    body = order(member_id, amount=amount, **extra)
    status, receipt = api.post("/orders", body, tokens.staff(stores=COUNTER))
    assert status == 201, receipt
    return body


def _redeem(api, tokens, member_id: str, redemption_id: str, points: int) -> tuple[int, dict]:
    return api.post(f"/members/{member_id}/points/redemptions",
                    {"redemption_id": redemption_id, "points": points, "reason": "奶茶", "store_id": "sh-001"},
                    tokens.staff(stores=COUNTER))


def _balance(api, tokens, member_id: str) -> int:
    status, view = api.get(f"/members/{member_id}/points", tokens.hq())
    assert status == 200, view
    return view["balance"]


def _pending_for(*member_ids: str) -> list:
    return [r for r in bootstrap.members().pending_merges(limit=1000)
            if {r.target_member_id, r.source_member_id} & set(member_ids)]


def _merged(api, tokens, target: str, source: str) -> dict:
    status, record = api.post(f"/members/{target}/merge", {"source_member_id": source}, tokens.hq())
    assert status == 200, record
    return record


SHARED_ID_PROBLEMS = ("a redemption applied twice", "a redemption cancelled twice")


def _audit(member_id: str) -> None:
    """The auditor, with redemptions told apart by the member they were made for. After a merge the
    survivor's ledger may hold two redemptions with the same client-made id, one its own and one moved from
    the duplicate (`origin_member_id`); testkit/audit.py counts redemption ids alone. Every other check of
    the auditor must pass, and each (member, id) must still be applied, and cancelled, at most once."""
    try:
        audit_member(member_id)
        return
    except AssertionError as found:
        problems = str(found).split(": ", 1)[1].split("; ")
        if set(problems) - set(SHARED_ID_PROBLEMS):
            raise
    entries = read_books(member_id).entries

    def made_for(e) -> str:
        return e.detail.get("redemption_member_id") or e.raw.get("origin_member_id") or member_id

    for kind in ("redemption", "redemption_cancel"):
        made = Counter((made_for(e), e.ref) for e in entries if e.kind == kind)
        assert all(n == 1 for n in made.values()), f"{kind} applied twice: {made}"


def _assert_finished(target: str, source: str) -> None:
    """The merge is done, merge-resume has nothing left of it, and every ledger entry is with the survivor."""
    record = bootstrap.members().get_merge(target, source)
    assert record is not None and record.state == "done", record
    assert merge_resume({"source": "aws.scheduler"}, _LocalContext("merge-resume"))["unfinished"] == 0
    assert _pending_for(target, source) == []
    assert read_books(source).entries == []


def test_a_merge_finishes_when_both_members_redeemed_with_the_same_id(api, tokens):
    # Given T and S with 100 points each, and each redeemed 10 with the same client-made id
    target, source = _member(api, tokens), _member(api, tokens)
    _buy(api, tokens, target)
    bought = _buy(api, tokens, source)
    for member in (target, source):
        assert _redeem(api, tokens, member, "RD-COLLIDE", 10)[0] == 201

    # When HQ merges S into T
    record = _merged(api, tokens, target, source)

    # Then the merge finishes at once (before: `moving` with nothing moved, for ever)
    assert record["state"] == "done", record
    _assert_finished(target, source)
    # and all 180 points are with the survivor and spendable; S's order is in T's history
    assert _balance(api, tokens, target) == 180
    history = api.get(f"/members/{target}/orders", tokens.hq())[1]["items"]
    assert bought["order_id"] in {o["order_id"] for o in history}
    _audit(target)
    status, spent = _redeem(api, tokens, target, "RD-ALL", 180)
    assert status == 201 and spent["balance"] == 0, spent
    _audit(target)


def test_a_merge_finishes_when_both_members_hold_the_same_expiry_fact(stack, fresh_table, api, tokens):
    # Given two members whose lots lapse on the same day, both told so by the expiry job
    hq = tokens.hq()
    rules = one_month_expiry(api, hq)
    target, source = _member(api, tokens), _member(api, tokens)
    paid = plain_day(1)
    for member in (target, source):
        _buy(api, tokens, member, paid_at=paid)
    lapse_day = api.get(f"/members/{target}/points", hq)[1]["expiring_soon"][0]["date"]
    today = clock.business_day(clock.now())
    rules["expiring_soon_days"] = (date.fromisoformat(lapse_day) - today).days
    assert api.put("/points/rules", rules, hq)[0] == 200
    assert points_expiry({"date": today.isoformat()}, _LocalContext("points-expiry"))["expiring_soon_facts"] == 2
    for member in (target, source):
        assert bootstrap.ledger().get_document("fact", member, f"points_expiring#{lapse_day}") is not None

    # When HQ merges S into T
    record = _merged(api, tokens, target, source)

    # Then the merge finishes and both facts are still there, each under the member it was written for
    assert record["state"] == "done", record
    _assert_finished(target, source)
    for member in (target, source):
        fact = bootstrap.ledger().get_document("fact", member, f"points_expiring#{lapse_day}")
        assert fact is not None and fact["points"] == 100
    assert _balance(api, tokens, target) == 200
    _audit(target)


def test_retries_through_the_old_id_answer_the_documents_written_before_the_merge(api, tokens):
    # Given S redeemed (the same id as T did) and was adjusted before being merged into T
    target, source = _member(api, tokens), _member(api, tokens)
    _buy(api, tokens, target)
    _buy(api, tokens, source)
    assert _redeem(api, tokens, target, "RD-COLLIDE", 30)[0] == 201
    status, first = _redeem(api, tokens, source, "RD-COLLIDE", 70)
    assert status == 201
    adjustment = {"adjustment_id": "ADJ-COLLIDE", "points": 5, "reason": "补偿"}
    status, adjusted = api.post(f"/members/{source}/points/adjustments", adjustment, tokens.hq())
    assert status == 201
    assert _merged(api, tokens, target, source)["state"] == "done"

    # When the counter retries the redemption through S's old id
    status, again = _redeem(api, tokens, source, "RD-COLLIDE", 70)
    # Then it answers S's stored answer, not T's redemption and not a second spend
    assert (status, again) == (200, first)
    status, again = api.post(f"/members/{source}/points/adjustments", adjustment, tokens.hq())
    assert (status, again) == (200, adjusted)
    # and the same id through T's id is T's redemption (a different body is a reuse, 409)
    status, reused = _redeem(api, tokens, target, "RD-COLLIDE", 70)
    assert status == 409 and reused["code"] == "redemption_id_reused", reused
    assert _balance(api, tokens, target) == 105
    _audit(target)


def test_cancelling_after_the_merge_cancels_the_redemption_of_the_id_named(api, tokens):
    # Given T and S each redeemed with RD-COLLIDE (T 30, S 70), and S's RD-ONLY, then S merged into T
    target, source = _member(api, tokens), _member(api, tokens)
    _buy(api, tokens, target)
    _buy(api, tokens, source, amount=20_000)
    assert _redeem(api, tokens, target, "RD-COLLIDE", 30)[0] == 201
    assert _redeem(api, tokens, source, "RD-COLLIDE", 70)[0] == 201
    assert _redeem(api, tokens, source, "RD-ONLY", 20)[0] == 201
    assert _merged(api, tokens, target, source)["state"] == "done"
    assert _balance(api, tokens, target) == 180
    clerk = tokens.staff(stores=COUNTER)

    # When the counter cancels RD-COLLIDE through S's old id
    status, cancelled = api.post(f"/members/{source}/points/redemptions/RD-COLLIDE/cancel", None, clerk)
    # Then S's redemption is cancelled (its 70 points), not T's
    assert status == 200 and (cancelled["member_id"], cancelled["points"]) == (source, 70), cancelled
    assert _balance(api, tokens, target) == 250
    # and a retry through the old id answers the same, never T's redemption
    assert api.post(f"/members/{source}/points/redemptions/RD-COLLIDE/cancel", None, clerk) == (200, cancelled)
    # Through T's id, RD-COLLIDE is T's own
    status, own = api.post(f"/members/{target}/points/redemptions/RD-COLLIDE/cancel", None, clerk)
    assert status == 200 and (own["member_id"], own["points"]) == (target, 30), own
    # and an id only S used is found through the survivor's id too
    status, only = api.post(f"/members/{target}/points/redemptions/RD-ONLY/cancel", None, clerk)
    assert status == 200 and (only["member_id"], only["points"]) == (source, 20), only
    assert _balance(api, tokens, target) == 300
    _audit(target)


def test_documents_stay_under_the_member_they_were_written_for(stack, api, tokens):
    """The layout the lookups rely on: the survivor's partition holds the ledger, the source's the documents."""
    target, source = _member(api, tokens), _member(api, tokens)
    _buy(api, tokens, source)
    assert _redeem(api, tokens, source, "RD-KEPT", 10)[0] == 201
    assert _merged(api, tokens, target, source)["state"] == "done"
    items = stack.client("dynamodb").query(
        TableName=stack.table_name, KeyConditionExpression="pk = :pk",
        ExpressionAttributeValues={":pk": {"S": keys.member_pk(source)}}, ConsistentRead=True)["Items"]
    assert sorted(i["sk"]["S"] for i in items) == ["COUPONS", "PROFILE", "REDEEM#RD-KEPT"]  # counts: folded
