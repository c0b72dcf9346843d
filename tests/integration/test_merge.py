"""Merging duplicates: redirect first, then move history in resumable batches, never doubling or losing."""
from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from chalicelib import bootstrap
from chalicelib.cli import _LocalContext
from chalicelib.domain import clock
from chalicelib.services import members as member_service
from chalicelib.store.ledger import DynamoLedgerRepository
from functions.points_expiry import handler
from testkit.audit import audit_member
from testkit.ledger import one_month_expiry, order, plain_day
from testkit.support import registration, unique_phone


def _register(api, tokens, **kw):
    status, body = api.post("/members", registration(**kw), tokens.staff(stores=["sh-001", "sh-002"]))
    assert status == 201
    return body


def _partition(stack, member_id):
    items = stack.client("dynamodb").query(
        TableName=stack.table_name, KeyConditionExpression="pk = :pk",
        ExpressionAttributeValues={":pk": {"S": f"MEMBER#{member_id}"}}, ConsistentRead=True)["Items"]
    return {i["sk"]["S"]: i for i in items}


def _add_history(source_id, n):
    """Stand-in history (the ledger, orders... of later features) so the move spans several batches."""
    db = bootstrap.db()
    for i in range(n):
        db.put({"pk": f"MEMBER#{source_id}", "sk": f"AUDIT#2020-01-01T00:00:00.000+08:00#{i:06d}", "type": "audit",
                "actor": "test", "role": "hq", "action": "test.history", "at": "2020-01-01T00:00:00.000+08:00"})


def test_merge_moves_everything_once_and_old_id_and_phone_resolve(stack, api, tokens):
    target = _register(api, tokens)
    source_phone = unique_phone()
    source = _register(api, tokens, phone=source_phone, store_id="sh-002", channel="app")
    _add_history(source["member_id"], 120)
    source_keys = set(_partition(stack, source["member_id"])) - {"PROFILE"}

    status, record = api.post(f"/members/{target['member_id']}/merge",
                              {"source_member_id": source["member_id"]}, tokens.hq())
    assert status == 200 and record["state"] == "done"
    assert record["moved"] == {"audit": len(source_keys)}

    assert set(_partition(stack, source["member_id"])) == {"PROFILE"}  # only the tombstone stays
    target_items = _partition(stack, target["member_id"])
    assert source_keys <= set(target_items)
    assert all(target_items[k]["moved_from"]["S"] == source["member_id"] for k in source_keys)

    hq = tokens.hq()
    status, view = api.get(f"/members/{source['member_id']}", hq)
    assert status == 200 and view["member_id"] == target["member_id"]
    assert view["resolved_from"] == source["member_id"]
    assert view["channels"] == ["app", "store"] and view["stores_visited"] == ["sh-001", "sh-002"]
    assert view["merged_from"] == [source["member_id"]]
    status, found = api.get(f"/members?phone={source_phone}", tokens.staff(stores=["gz-001"]))
    assert [m["member_id"] for m in found["items"]] == [target["member_id"]]
    # registering the old phone again finds the survivor, never a new member
    status, again = api.post("/members", registration(source_phone), tokens.staff(stores=["sh-001"]))
    assert status == 200 and again["member_id"] == target["member_id"]

    # a retried merge answers the same record and moves nothing again
    status, replay = api.post(f"/members/{target['member_id']}/merge",
                              {"source_member_id": source["member_id"]}, hq)
    assert status == 200 and replay == record
    assert len(_partition(stack, target["member_id"])) == len(target_items)


def test_interrupted_merge_is_finished_by_the_job_without_duplicates(stack, api, tokens, monkeypatch):
    target, source = _register(api, tokens), _register(api, tokens)
    _add_history(source["member_id"], 150)
    expected = len(_partition(stack, source["member_id"])) - 1 + len(_partition(stack, target["member_id"]))

    monkeypatch.setattr(member_service, "MERGE_BATCHES_INLINE", 1)  # the request "dies" after one batch
    status, record = api.post(f"/members/{target['member_id']}/merge",
                              {"source_member_id": source["member_id"]}, tokens.hq())
    assert status == 200 and record["state"] == "moving"
    assert sum(record["moved"].values()) == 49

    # two resume workers at once (a re-run overlapping a slow run) must not double anything
    barrier = threading.Barrier(2)

    def resume():
        barrier.wait()
        return member_service.continue_merge(bootstrap.members(), target["member_id"], source["member_id"], 50)

    with ThreadPoolExecutor(2) as pool:
        assert all(pool.map(lambda _: resume(), range(2)))

    merged = bootstrap.members().get_merge(target["member_id"], source["member_id"])
    assert merged.state == "done"
    assert set(_partition(stack, source["member_id"])) == {"PROFILE"}
    target_items = _partition(stack, target["member_id"])
    assert len(target_items) == expected + 2  # + the merge record and the target's 'merged' audit entry
    assert sum(merged.moved.values()) == 150 + 1  # history + the source's registration audit entry


def test_merge_chain_resolves_to_the_last_survivor(api, tokens):
    a, b, c = _register(api, tokens), _register(api, tokens), _register(api, tokens)
    hq = tokens.hq()
    assert api.post(f"/members/{b['member_id']}/merge", {"source_member_id": a["member_id"]}, hq)[0] == 200
    assert api.post(f"/members/{c['member_id']}/merge", {"source_member_id": b["member_id"]}, hq)[0] == 200
    status, view = api.get(f"/members/{a['member_id']}", hq)
    assert status == 200 and view["member_id"] == c["member_id"] and view["resolved_from"] == a["member_id"]


@pytest.mark.parametrize("case", ["self", "merged_source", "merged_target"])
def test_invalid_merges_change_nothing(api, tokens, case):
    hq = tokens.hq()
    a, b = _register(api, tokens), _register(api, tokens)
    if case == "self":
        status, body = api.post(f"/members/{a['member_id']}/merge", {"source_member_id": a["member_id"]}, hq)
        assert status == 422
    else:
        c = _register(api, tokens)
        api.post(f"/members/{c['member_id']}/merge", {"source_member_id": b["member_id"]}, hq)
        if case == "merged_source":  # b is already a tombstone
            status, body = api.post(f"/members/{a['member_id']}/merge", {"source_member_id": b["member_id"]}, hq)
            assert status == 404
        else:  # b is gone into c: merging into b must name the survivor
            status, body = api.post(f"/members/{b['member_id']}/merge", {"source_member_id": a["member_id"]}, hq)
            assert status == 422 and body["details"]["survivor_member_id"] == c["member_id"]
    assert set(body) == {"code", "message", "details"}
    assert api.get(f"/members/{a['member_id']}", hq)[1]["member_id"] == a["member_id"]  # a untouched


def test_concurrent_cross_merges_leave_exactly_one_survivor(api, tokens):
    hq = tokens.hq()
    a, b = _register(api, tokens), _register(api, tokens)
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda pair: api.post(f"/members/{pair[0]}/merge", {"source_member_id": pair[1]}, hq),
                                [(a["member_id"], b["member_id"]), (b["member_id"], a["member_id"])]))
    statuses = sorted(s for s, _ in results)
    assert statuses[0] == 200 and statuses[1] in (409, 404, 422, 503)
    view_a, view_b = api.get(f"/members/{a['member_id']}", hq)[1], api.get(f"/members/{b['member_id']}", hq)[1]
    assert view_a["member_id"] == view_b["member_id"]


# ---- the ledger during a merge ----------------------------------------------------------------------------
def _shop(api, tokens, member_id, amount):
    body = order(member_id, amount=amount)
    status, _ = api.post("/orders", body, tokens.staff(stores=["sh-001"]))
    assert status == 201
    return body


def test_spending_while_a_merge_moves_lots_never_hides_them(stack, api, tokens, monkeypatch):
    """The source's lots are older than the survivor's. A redemption while they are still moving sees
    only the survivor's own lots and raises its open-lots bound past the source's; the move must lower it
    again, or those points could never be spent."""
    target, source = _register(api, tokens), _register(api, tokens)
    _shop(api, tokens, source["member_id"], 30_000)  # credited first: the oldest lot
    _shop(api, tokens, target["member_id"], 10_000)
    _add_history(source["member_id"], 60)  # sorts before the ledger: the first batch moves no lot
    monkeypatch.setattr(member_service, "MERGE_BATCHES_INLINE", 1)
    hq, clerk = tokens.hq(), tokens.staff(stores=["sh-001"])
    assert api.post(f"/members/{target['member_id']}/merge",
                    {"source_member_id": source["member_id"]}, hq)[1]["state"] == "moving"

    spend = {"redemption_id": "during", "points": 10, "reason": "tea", "store_id": "sh-001"}
    assert api.post(f"/members/{target['member_id']}/points/redemptions", spend, clerk)[0] == 201
    assert member_service.continue_merge(bootstrap.members(), target["member_id"], source["member_id"], 10)

    audit_member(target["member_id"])  # fails on a lot holding points below the bound
    everything = {"redemption_id": "all", "points": 390, "reason": "gift", "store_id": "sh-001"}
    status, spent = api.post(f"/members/{target['member_id']}/points/redemptions", everything, clerk)
    assert status == 201 and spent["balance"] == 0
    audit_member(target["member_id"])


def test_a_lot_changed_while_being_moved_is_moved_as_it_is_now(stack, api, tokens, monkeypatch):
    """A refund lands on the source's lot between the move's read and its write: the move must not put
    the stale copy (with the refunded points still in it) under the survivor."""
    target, source = _register(api, tokens), _register(api, tokens)
    bought = _shop(api, tokens, source["member_id"], 20_000)
    monkeypatch.setattr(member_service, "MERGE_BATCHES_INLINE", 0)
    hq, clerk = tokens.hq(), tokens.staff(stores=["sh-001"])
    assert api.post(f"/members/{target['member_id']}/merge",
                    {"source_member_id": source["member_id"]}, hq)[1]["state"] == "moving"

    db = bootstrap.db()
    real_commit = db.commit
    refunded = []

    def commit_after_a_refund(tx, **kw):
        moving_a_lot = any(a.get("Delete", {}).get("Key", {}).get("sk", {}).get("S", "").startswith("LEDGER#")
                           for a in tx.actions)
        if moving_a_lot and not refunded:
            refunded.append(api.post(f"/orders/{bought['order_id']}/refunds",
                                     {"refund_id": "mid-move", "amount": 5_000}, clerk))
        return real_commit(tx, **kw)

    monkeypatch.setattr(db, "commit", commit_after_a_refund)
    assert member_service.continue_merge(bootstrap.members(), target["member_id"], source["member_id"], 10)
    status, refund = refunded[0]
    assert status == 201 and refund["points_removed"] == 50  # found the lot where it still was
    monkeypatch.setattr(db, "commit", real_commit)
    assert api.get(f"/members/{target['member_id']}/points", hq)[1]["available"] == 150
    audit_member(target["member_id"])


def test_a_move_landing_inside_a_redemption_makes_it_look_again(stack, api, tokens, monkeypatch):
    """The redemption reads the survivor's lots, then the move lands the source's lot (credited between
    the survivor's two), then the redemption writes. Computed from what it saw, its bound would pass the
    newly arrived lot; the move's write to the survivor's state makes it re-read instead."""
    target, source = _register(api, tokens)["member_id"], _register(api, tokens)["member_id"]
    clerk, hq = tokens.staff(stores=["sh-001"]), tokens.hq()
    for member, amount, days_ago in ((target, 10_000, 60), (source, 20_000, 30), (target, 5_000, 1)):
        assert api.post("/orders", order(member, amount=amount, paid_at=plain_day(days_ago)), clerk)[0] == 201
    monkeypatch.setattr(member_service, "MERGE_BATCHES_INLINE", 0)
    assert api.post(f"/members/{target}/merge", {"source_member_id": source}, hq)[1]["state"] == "moving"

    real_open_lots, moved = DynamoLedgerRepository.open_lots, []

    def open_lots_then_the_move_lands(self, member_id, since):
        lots = real_open_lots(self, member_id, since)
        if not moved:
            moved.append(member_service.continue_merge(bootstrap.members(), target, source, 10))
        return lots

    monkeypatch.setattr(DynamoLedgerRepository, "open_lots", open_lots_then_the_move_lands)
    spend = {"redemption_id": "race", "points": 100, "reason": "tea", "store_id": "sh-001"}
    assert api.post(f"/members/{target}/points/redemptions", spend, clerk)[0] == 201
    assert moved == [True]
    monkeypatch.setattr(DynamoLedgerRepository, "open_lots", real_open_lots)
    audit_member(target)
    rest = {"redemption_id": "rest", "points": 250, "reason": "gift", "store_id": "sh-001"}
    assert api.post(f"/members/{target}/points/redemptions", rest, clerk)[1]["balance"] == 0


def test_a_refund_that_only_forgives_is_not_undone_by_the_move(stack, fresh_table, api, tokens, monkeypatch):
    """The lot expired, so a refund changes only its `forgiven` (remaining stays 0): a move that compared
    `remaining` alone would put back the copy it read, and a second refund would forgive the same points."""
    hq, clerk = tokens.hq(), tokens.staff(stores=["sh-001"])
    one_month_expiry(api, hq)
    target, source = _register(api, tokens)["member_id"], _register(api, tokens)["member_id"]
    bought = order(source, amount=20_000, paid_at=plain_day(45))
    assert api.post("/orders", bought, clerk)[0] == 201
    assert handler({"date": clock.business_day(clock.now()).isoformat()}, _LocalContext("x"))["lots_expired"] == 1
    monkeypatch.setattr(member_service, "MERGE_BATCHES_INLINE", 0)
    assert api.post(f"/members/{target}/merge", {"source_member_id": source}, hq)[1]["state"] == "moving"

    db, refunded = bootstrap.db(), []
    real_commit = db.commit

    def commit_after_a_refund(tx, **kw):
        if not refunded and any(a.get("Delete", {}).get("Key", {}).get("sk", {}).get("S", "").startswith("LEDGER#")
                                for a in tx.actions):
            refunded.append(api.post(f"/orders/{bought['order_id']}/refunds",
                                     {"refund_id": "first", "amount": 10_000}, clerk)[1])
        return real_commit(tx, **kw)

    monkeypatch.setattr(db, "commit", commit_after_a_refund)
    assert member_service.continue_merge(bootstrap.members(), target, source, 10)
    monkeypatch.setattr(db, "commit", real_commit)
    assert refunded[0]["points_forgiven"] == 100
    (lot,) = [e.lot for e in bootstrap.ledger().all_entries(target) if e.lot]
    assert lot.forgiven == 100
    second = api.post(f"/orders/{bought['order_id']}/refunds", {"refund_id": "second", "amount": 10_000}, clerk)[1]
    assert (second["points_forgiven"], second["points_owed"]) == (100, 0)  # the other expired half
    audit_member(target)


def test_a_refund_finds_its_lot_through_a_chain_of_merges(stack, api, tokens, monkeypatch):
    """A merged into B (done), B into C (still moving): the lot sits with B, neither with the buyer A nor
    with the survivor C. Not finding it must never read as 'the points paid a debt'."""
    a, b, c = (_register(api, tokens)["member_id"] for _ in range(3))
    clerk, hq = tokens.staff(stores=["sh-001"]), tokens.hq()
    bought = order(a, amount=20_000)
    assert api.post("/orders", bought, clerk)[0] == 201
    assert api.post(f"/members/{b}/merge", {"source_member_id": a}, hq)[1]["state"] == "done"
    monkeypatch.setattr(member_service, "MERGE_BATCHES_INLINE", 0)
    assert api.post(f"/members/{c}/merge", {"source_member_id": b}, hq)[1]["state"] == "moving"

    status, refund = api.post(f"/orders/{bought['order_id']}/refunds", {"refund_id": "r", "amount": 10_000}, clerk)
    assert status == 201 and (refund["member_id"], refund["points_removed"], refund["points_owed"]) == (c, 100, 0)
    assert member_service.continue_merge(bootstrap.members(), c, b, 10)
    audit_member(c)
