"""Purchase history after merges: the source's orders join the survivor's history where they were paid.

The history is a sparse index on each order's earn entry (`HIST#<member>`, sorted by paid_at); a merge moves
those entries into the survivor's partition and must rewrite their index key to the survivor's."""
from __future__ import annotations

from datetime import timedelta

from chalicelib import bootstrap
from chalicelib.domain import clock
from chalicelib.services import merges as member_service
from chalicelib.store import keys
from testkit.ledger import order
from testkit.support import registration


def _member(api, tokens) -> str:
    status, body = api.post("/members", registration(), tokens.staff(stores=["sh-001"]))
    assert status == 201
    return body["member_id"]


def _paid(days_ago: int) -> str:
    at = (clock.now() - timedelta(days=days_ago)).replace(hour=9, minute=15, second=0, microsecond=0)
    return clock.iso(at)


def _buy(api, tokens, member_id: str, days_ago: int) -> str:
    body = order(member_id, amount=1_000 + days_ago, paid_at=_paid(days_ago))
    assert api.post("/orders", body, tokens.staff(stores=["sh-001"]))[0] == 201
    return body["order_id"]


def _history(api, member_id: str, token: str, limit: int = 2) -> list[str]:
    ids, cursor = [], None
    for _ in range(30):
        path = f"/members/{member_id}/orders?limit={limit}" + (f"&cursor={cursor}" if cursor else "")
        status, page = api.get(path, token)
        assert status == 200, page
        ids += [o["order_id"] for o in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            return ids
    raise AssertionError("the cursor never ends")


def _history_keys_in_partition(stack, member_id: str) -> set[str]:
    """The history index partitions that the earn entries kept in the member's partition name."""
    items = stack.client("dynamodb").query(
        TableName=stack.table_name, KeyConditionExpression="pk = :pk",
        ExpressionAttributeValues={":pk": {"S": keys.member_pk(member_id)}}, ConsistentRead=True)["Items"]
    return {i["gsi3pk"]["S"] for i in items if i.get("kind", {}).get("S") == "earn"}


def _index_partition(stack, member_id: str) -> list[dict]:
    return stack.client("dynamodb").query(
        TableName=stack.table_name, IndexName=keys.GSI_HISTORY, KeyConditionExpression="gsi3pk = :h",
        ExpressionAttributeValues={":h": {"S": keys.history_pk(member_id)}})["Items"]


def test_the_survivors_history_holds_the_merged_orders_by_purchase_time(stack, api, tokens):
    # Given a survivor who bought 6, 4 and 2 days ago, and a duplicate who bought 5, 3 and 1 days ago,
    # the duplicate's orders synced late (posted newest paid first)
    target, source = _member(api, tokens), _member(api, tokens)
    own = {d: _buy(api, tokens, target, d) for d in (6, 4, 2)}
    theirs = {d: _buy(api, tokens, source, d) for d in (1, 3, 5)}
    source_cursor = api.get(f"/members/{source}/orders?limit=1", tokens.hq())[1]["next_cursor"]

    # When HQ merges the duplicate into the survivor
    status, record = api.post(f"/members/{target}/merge", {"source_member_id": source}, tokens.hq())
    assert status == 200 and record["state"] == "done"

    # Then the survivor's history interleaves both by paid_at, page by page
    expected = [theirs[1], own[2], theirs[3], own[4], theirs[5], own[6]]
    assert _history(api, target, tokens.member(target)) == expected
    assert _history(api, target, tokens.hq(), limit=20) == expected
    # and the old id answers the survivor's history
    assert _history(api, source, tokens.hq(), limit=4) == expected
    # and every moved earn entry names the survivor's history; none is left under the source's
    assert _history_keys_in_partition(stack, target) == {keys.history_pk(target)}
    assert _index_partition(stack, source) == []
    assert len(_index_partition(stack, target)) == 6
    # a cursor taken from the duplicate's history before the merge is not one of the survivor's
    status, err = api.get(f"/members/{target}/orders?limit=1&cursor={source_cursor}", tokens.hq())
    assert status == 422 and err["code"] == "invalid_cursor"


def test_history_while_a_merge_moves_in_batches_and_after_it_resumes(stack, api, tokens, monkeypatch):
    # Given a duplicate whose orders come after 60 other items of its partition (two batches of 49)
    target, source = _member(api, tokens), _member(api, tokens)
    own = _buy(api, tokens, target, 3)
    theirs = {d: _buy(api, tokens, source, d) for d in (1, 2, 4)}
    db = bootstrap.db()
    for i in range(60):  # AUDIT# sorts before LEDGER#: the first batch moves no earn entry
        db.put({"pk": keys.member_pk(source), "sk": f"AUDIT#2020-01-01T00:00:00.000+08:00#{i:06d}", "type": "audit",
                "actor": "test", "role": "hq", "action": "test.history", "at": "2020-01-01T00:00:00.000+08:00"})
    monkeypatch.setattr(member_service, "MERGE_BATCHES_INLINE", 1)

    # When the merge stops after its first batch
    status, record = api.post(f"/members/{target}/merge", {"source_member_id": source}, tokens.hq())
    assert status == 200 and record["state"] == "moving"

    # Then the history shows what has arrived so far, each order once
    during = _history(api, target, tokens.hq())
    assert own in during and len(during) == len(set(during))

    # And once the merge-resume work finishes the move, the whole history is there by paid_at
    assert member_service.continue_merge(bootstrap.members(), target, source, 10)
    assert _history(api, target, tokens.hq()) == [theirs[1], theirs[2], own, theirs[4]]
    assert _index_partition(stack, source) == []


def test_a_chain_of_merges_carries_history_to_the_last_survivor(stack, api, tokens):
    # Given C bought 5 days ago, B 3 days ago, A 4 days ago; C is merged into B, then B into A
    a, b, c = (_member(api, tokens) for _ in range(3))
    bought = {"c": _buy(api, tokens, c, 5), "b": _buy(api, tokens, b, 3), "a": _buy(api, tokens, a, 4)}
    hq = tokens.hq()
    assert api.post(f"/members/{b}/merge", {"source_member_id": c}, hq)[1]["state"] == "done"
    assert _history(api, b, hq) == [bought["b"], bought["c"]]
    assert api.post(f"/members/{a}/merge", {"source_member_id": b}, hq)[1]["state"] == "done"

    # Then A's history holds all three by paid_at, and every older id answers it
    expected = [bought["b"], bought["a"], bought["c"]]
    for member_id in (a, b, c):
        assert _history(api, member_id, hq, limit=1) == expected
    assert _history_keys_in_partition(stack, a) == {keys.history_pk(a)}
