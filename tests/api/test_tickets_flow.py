"""Service tickets end to end through the API (chalice test client, DynamoDB Local): opening from each kind of
caller, routing by rules and by store, agents coming and going (round robin, least open, nobody), the
actions and their state rules, cross-store tasks holding the resolve, lists by index, and what members see."""
from __future__ import annotations

import uuid
from datetime import datetime, timedelta

import pytest

from chalicelib.domain import clock
from testkit.ledger import order
from testkit.support import registration


def uid(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def ticket(**extra):
    body = {"ticket_id": uid("tk"), "channel": "store", "type": "complaint", "subject": "奶茶太甜",
            "description": "点了三分糖，喝起来是全糖"}
    body.update(extra)
    return body


@pytest.fixture
def store(api, tokens):
    """A fresh store of region east: its queue starts with no agents and no tickets."""
    store_id = uid("st")
    status, _ = api.put(f"/stores/{store_id}", {"name": "测试店", "region_id": "east", "city": "上海",
                                               "store_type": "standard"}, tokens.hq())
    assert status in (200, 201)
    return store_id


@pytest.fixture
def member(api, tokens):
    return api.post("/members", registration(), tokens.staff(stores=["sh-001"]))[1]["member_id"]


def agent(api, tokens, store_id, sub, available=True, role="staff"):
    token = tokens.staff(role, stores=[store_id], sub=sub)
    status, view = api.put(f"/queues/store-{store_id}/agents/me", {"available": available}, token)
    assert status == 200, view
    return token


def action(api, token, ticket_id, kind, **fields):
    body = {"action_id": uid("a"), "type": kind, **fields}
    return api.post(f"/tickets/{ticket_id}/actions", body, token)


def test_staff_ticket_goes_to_its_store_queue_round_robin_and_waits_when_nobody_is_there(api, tokens, store):
    clerk = tokens.staff(stores=[store], sub=uid("clerk"))
    status, first = api.post("/tickets", ticket(store_id=store), clerk)
    assert status == 201, first
    assert first["queue_id"] == f"store-{store}" and first["assignee"] is None and first["status"] == "new"
    assert first["priority"] == "normal" and first["routed_by"] is None

    a, b = uid("agent-a"), uid("agent-b")
    agent(api, tokens, store, a)
    agent(api, tokens, store, b)
    got = [api.post("/tickets", ticket(store_id=store), clerk)[1]["assignee"] for _ in range(4)]
    assert sorted(got[:2]) == sorted([a, b]) and got[2:] == got[:2]  # turns alternate

    agent(api, tokens, store, a, available=False)
    assert {api.post("/tickets", ticket(store_id=store), clerk)[1]["assignee"] for _ in range(2)} == {b}
    agent(api, tokens, store, b, available=False)
    waiting = api.post("/tickets", ticket(store_id=store), clerk)[1]
    assert waiting["assignee"] is None
    status, page = api.get(f"/tickets?queue=store-{store}&status=new", tokens.staff(stores=[store]))
    assert status == 200 and waiting["ticket_id"] in [t["ticket_id"] for t in page["items"]]


def test_rules_route_by_type_and_tier_least_open_and_replay(api, tokens, store, member):
    hq = tokens.hq()
    queue = uid("refunds")
    assert api.put(f"/queues/{queue}", {"kind": "hq", "name": "退款组"}, hq)[0] == 201
    current = api.get("/routing-rules", hq)[1]
    rules = [{"name": "refunds", "types": ["refund"], "store_ids": [store], "queue_id": queue,
              "assignment": "least_open", "priority": "high"}] + current["rules"]
    status, saved = api.put("/routing-rules", {"rules": rules, "version": current["version"]}, hq)
    assert status == 200, saved
    assert api.put("/routing-rules", {"rules": rules, "version": current["version"]}, hq)[1]["code"] == \
        "version_conflict"

    x, y = uid("hq-x"), uid("hq-y")
    tok_x = tokens.staff("hq", sub=x)
    for sub in (x, y):
        assert api.put(f"/queues/{queue}/agents/me", {"available": True}, tokens.staff("hq", sub=sub))[0] == 200
    clerk = tokens.staff(stores=[store])
    opened = [api.post("/tickets", ticket(store_id=store, type="refund"), clerk)[1] for _ in range(3)]
    assert {t["queue_id"] for t in opened} == {queue} and {t["priority"] for t in opened} == {"high"}
    assert {t["routed_by"] for t in opened} == {"refunds"}
    counts = {s: [t["assignee"] for t in opened].count(s) for s in (x, y)}
    assert sorted(counts.values()) == [1, 2]
    # least open: resolving the busier agent's tickets makes them the choice again
    busy = max(counts, key=counts.get)
    for t in opened:
        if t["assignee"] == busy:
            assert action(api, hq, t["ticket_id"], "resolve")[0] == 201
    assert api.post("/tickets", ticket(store_id=store, type="refund"), clerk)[1]["assignee"] == busy
    assert tok_x  # x's token is a real agent's (used above through the loop)

    body = ticket(store_id=store)
    assert api.post("/tickets", body, clerk)[0] == 201
    assert api.post("/tickets", body, clerk)[0] == 200  # replay
    status, err = api.post("/tickets", {**body, "subject": "别的"}, clerk)
    assert status == 409 and err["code"] == "ticket_id_taken"

    # restore the shared rules for other tests
    now = api.get("/routing-rules", hq)[1]
    assert api.put("/routing-rules", {"rules": [r for r in now["rules"] if r["queue_id"] != queue],
                                      "version": now["version"]}, hq)[0] == 200


def test_member_opens_sees_public_replies_only_and_rates_once(api, tokens, store, member):
    me = tokens.member(member)
    posted = order(member, amount=3_000)
    posted["store_id"] = "sh-001"
    assert api.post("/orders", posted, tokens.staff(stores=["sh-001"]))[0] == 201
    status, mine = api.post("/tickets", ticket(channel="miniprogram", type="product", store_id=store,
                                               order_id=posted["order_id"]), me)
    assert status == 201, mine
    assert set(mine) >= {"ticket_id", "status"} and not {"queue_id", "assignee", "routed_by"} & set(mine)
    tid = mine["ticket_id"]
    other = api.post("/members", registration(), tokens.staff(stores=["sh-001"]))[1]["member_id"]
    status, err = api.post("/tickets", ticket(member_id=other), me)
    assert status == 403 and err["code"] == "not_your_member"
    status, err = api.post("/tickets", ticket(order_id=order(other)["order_id"]), tokens.hq())
    assert status == 422 and err["code"] == "unknown_order"

    staff = agent(api, tokens, store, uid("agent"))
    assert action(api, staff, tid, "comment", body="内部：顾客是常客")[0] == 201
    assert action(api, staff, tid, "reply", body="您好，我们马上处理")[0] == 201
    assert action(api, me, tid, "reply", body="好的谢谢")[0] == 201
    status, err = action(api, me, tid, "comment", body="我想看内部")
    assert status == 403
    status, view = api.get(f"/tickets/{tid}", me)
    assert status == 200
    assert [r["by"] for r in view["replies"]] == ["staff", "you"]
    text = str(view)
    assert "内部" not in text and "agent" not in text and "queue" not in text
    status, full = api.get(f"/tickets/{tid}", staff)
    assert [e["type"] for e in full["events"]] == ["comment", "reply", "reply"]

    status, err = action(api, me, tid, "rate", score=5)
    assert status == 409 and err["code"] == "action_not_allowed" and err["details"]["status"] == "open"
    assert action(api, staff, tid, "resolve")[0] == 201
    assert action(api, me, tid, "rate", score=4)[0] == 201
    status, err = action(api, me, tid, "rate", score=5)
    assert status == 409 and err["code"] == "already_rated"
    status, page = api.get(f"/members/{member}/tickets", me)
    assert status == 200 and page["items"][0]["ticket_id"] == tid and page["items"][0]["rating"] == 4
    assert "assignee" not in page["items"][0]
    status, err = api.get(f"/tickets/{tid}", tokens.member(other))
    assert status == 404


def test_actions_are_idempotent_and_state_rules_name_the_state(api, tokens, store):
    staff = agent(api, tokens, store, uid("agent"))
    tid = api.post("/tickets", ticket(store_id=store), staff)[1]["ticket_id"]
    body = {"action_id": uid("a"), "type": "hold"}
    first = api.post(f"/tickets/{tid}/actions", body, staff)
    assert first[0] == 201 and first[1]["ticket"]["status"] == "pending"
    again = api.post(f"/tickets/{tid}/actions", body, staff)
    assert again[0] == 200 and again[1]["action_id"] == body["action_id"]
    status, err = api.post(f"/tickets/{tid}/actions", {**body, "type": "resolve"}, staff)
    assert status == 409 and err["code"] == "action_id_taken"
    status, err = action(api, staff, tid, "hold")
    assert status == 409 and err["code"] == "action_not_allowed" and err["details"]["status"] == "pending"
    status, err = action(api, staff, tid, "transfer", queue_id="store-sh-001")
    assert status == 403 and err["code"] == "role_not_allowed"  # staff may not transfer
    manager = tokens.staff("store_manager", stores=[store])
    status, err = action(api, manager, tid, "assign", assignee="nobody-here")
    assert status == 422 and err["code"] == "not_an_agent"
    status, moved = action(api, manager, tid, "transfer", queue_id="store-sh-001")
    assert status == 201 and moved["ticket"]["queue_id"] == "store-sh-001"
    status, err = action(api, staff, tid, "reply", body="还在吗")
    assert status == 403 and err["code"] == "queue_out_of_scope"  # no longer their queue
    status, _ = api.get(f"/tickets/{tid}", staff)
    assert status == 200  # still their store's ticket: they may read it


def test_cross_store_tasks_hold_the_resolve_and_list_by_store(api, tokens, store):
    staff = agent(api, tokens, store, uid("agent"))
    tid = api.post("/tickets", ticket(store_id=store, type="cross_store"), staff)[1]["ticket_id"]
    due = (clock.now() - timedelta(hours=1)).isoformat()
    task = {"task_id": uid("task"), "store_id": "sh-002", "title": "收货并交给顾客", "due_at": due}
    status, made = api.post(f"/tickets/{tid}/tasks", task, staff)
    assert status == 201, made
    assert api.post(f"/tickets/{tid}/tasks", task, staff)[0] == 200
    status, err = api.post(f"/tickets/{tid}/tasks", {**task, "title": "别的"}, staff)
    assert status == 409 and err["code"] == "task_id_taken"
    status, err = action(api, staff, tid, "resolve")
    assert status == 409 and err["code"] == "tasks_open"

    other = tokens.staff(stores=["sh-002"])
    status, page = api.get("/stores/sh-002/tasks?state=overdue", other)
    assert status == 200 and task["task_id"] in [t["task_id"] for t in page["items"]]
    assert all(t["overdue"] for t in page["items"])
    assert api.get("/stores/sh-002/tasks", staff)[0] == 403  # another store's list
    status, err = api.post(f"/tasks/{task['task_id']}/complete", {"outcome": "done"}, staff)
    assert status == 403
    assert api.post(f"/tasks/{task['task_id']}/assign", {"assignee": "clerk-9"}, other)[1]["assignee"] == "clerk-9"
    status, done = api.post(f"/tasks/{task['task_id']}/complete", {"outcome": "done", "note": "已交付"}, other)
    assert status == 200 and done["state"] == "done" and done["completed_at"]
    assert api.post(f"/tasks/{task['task_id']}/complete", {"outcome": "done", "note": "已交付"}, other)[0] == 200
    status, err = api.post(f"/tasks/{task['task_id']}/complete", {"outcome": "failed"}, other)
    assert status == 409 and err["code"] == "task_done"
    assert action(api, staff, tid, "resolve")[0] == 201
    full = api.get(f"/tickets/{tid}", staff)[1]
    assert [e["type"] for e in full["events"]] == ["task_added", "task_done", "resolve"]
    assert full["tasks"][0]["state"] == "done" and full["open_tasks"] == 0

    status, page = api.get(f"/tickets?store_id={store}&status=resolved", tokens.staff("store_manager",
                                                                                        stores=[store]))
    assert status == 200 and tid in [t["ticket_id"] for t in page["items"]]
    status, page = api.get("/tickets?assignee=me&status=resolved", staff)
    assert status == 200


def test_unsupported_list_filters_are_422_never_a_scan(api, tokens, store):
    staff = tokens.staff(stores=[store])
    status, err = api.post("/tickets", ticket(ticket_id="stats", store_id=store), staff)
    assert status == 422 and err["details"][0]["loc"] == ["body", "ticket_id"]  # the stats route's own path
    for query in ("", "?status=new", f"?queue=store-{store}&store_id={store}", f"?store_id={store}&assignee=me"):
        status, err = api.get(f"/tickets{query}", staff)
        assert status == 422 and err["code"] == "unsupported_filter", query
    status, err = api.get("/tickets?queue=store-gz-001", staff)
    assert status == 403


def test_reopen_window_for_members(api, tokens, store, member, monkeypatch):
    me = tokens.member(member)
    staff = agent(api, tokens, store, uid("agent"))
    tid = api.post("/tickets", ticket(store_id=store), me)[1]["ticket_id"]
    assert action(api, staff, tid, "resolve")[0] == 201
    later = clock.now() + timedelta(days=8)
    monkeypatch.setattr(clock, "now", lambda: later)
    status, err = action(api, me, tid, "reopen")
    assert status == 409 and err["code"] == "reopen_window_passed"
    status, reopened = action(api, staff, tid, "reopen")
    assert status == 201 and reopened["ticket"]["status"] == "open" and reopened["ticket"]["reopened"] == 1
    assert isinstance(datetime.fromisoformat(reopened["at"]), datetime)


def test_a_merged_members_tickets_are_the_survivors(api, tokens, store):
    staff = tokens.staff(stores=["sh-001"])
    survivor = api.post("/members", registration(), staff)[1]["member_id"]
    source = api.post("/members", registration(), staff)[1]["member_id"]
    old = api.post("/tickets", ticket(store_id=store), tokens.member(source))[1]["ticket_id"]
    new = api.post("/tickets", ticket(store_id=store), tokens.member(survivor))[1]["ticket_id"]
    assert api.post(f"/members/{survivor}/merge", {"source_member_id": source}, tokens.hq())[0] == 200
    status, page = api.get(f"/members/{survivor}/tickets?limit=1", tokens.member(survivor))
    assert status == 200 and [t["ticket_id"] for t in page["items"]] == [new] and page["next_cursor"]
    status, rest = api.get(f"/members/{survivor}/tickets?limit=1&cursor={page['next_cursor']}",
                           tokens.member(survivor))
    assert [t["ticket_id"] for t in rest["items"]] == [old] and rest["next_cursor"] is None
    assert api.get(f"/tickets/{old}", tokens.member(survivor))[0] == 200  # followed through the tombstone
    status, err = api.get(f"/members/{survivor}/tickets?cursor=bm90LWEtY3Vyc29y", tokens.member(survivor))
    assert status == 422 and err["code"] == "invalid_cursor"
