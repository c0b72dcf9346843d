"""SLA end to end (chalice test client, DynamoDB Local): a ticket opened just before closing is due the next
opening morning; the sweep escalates each step once (at risk to the assignee, first response breached to the
store's managers), notifications reach the right people with per-person read state, the at-risk and
breached lists come from the due index, a reply stops the first-response clock, and one failing ticket does
not stop a run."""
from __future__ import annotations

import uuid
from datetime import datetime

import pytest

from chalicelib.cli import _LocalContext
from chalicelib.domain import clock
from functions import sla_escalation

TZ = clock.BUSINESS_TZ


def at(day: int, hh: int, mm: int = 0, ss: int = 0) -> datetime:
    """In November 2026: the sweeps these tests run as of those days reach no ticket other tests open now."""
    return datetime(2026, 11, day, hh, mm, ss, tzinfo=TZ)


def uid(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def store(api, tokens):
    """A store open 10:00-22:00 every day, with one available agent."""
    store_id = uid("sla")
    hours = {d: {"open": "10:00", "close": "22:00"} for d in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")}
    status, _ = api.put(f"/stores/{store_id}", {"name": "SLA店", "region_id": "east", "city": "上海",
                                               "store_type": "standard", "business_hours": hours}, tokens.hq())
    assert status in (200, 201)
    return store_id


def frozen(monkeypatch, when: datetime) -> None:
    monkeypatch.setattr(clock, "now", lambda: when)


def sweep(when: datetime) -> dict[str, int]:
    return sla_escalation.handler({"now": when.isoformat()}, _LocalContext("sla-escalation"))


def notes(api, token, ticket_id):
    status, page = api.get("/notifications/me?limit=100", token)
    assert status == 200, page
    return [n for n in page["items"] if n["ticket_id"] == ticket_id]


def test_opened_before_closing_escalates_each_step_once(api, tokens, store, monkeypatch):
    agent = tokens.staff(stores=[store], sub=uid("agent"))
    assert api.put(f"/queues/store-{store}/agents/me", {"available": True}, agent)[0] == 200
    frozen(monkeypatch, at(2, 21, 55))
    status, opened = api.post("/tickets", {"ticket_id": uid("t"), "channel": "store", "type": "complaint",
                                           "subject": "打烊前的投诉", "description": "…", "store_id": store}, agent)
    assert status == 201, opened
    tid = opened["ticket_id"]
    fr = opened["sla"]["first_response"]
    assert datetime.fromisoformat(fr["due_at"]) == at(3, 10, 25)  # 5 minutes tonight, 25 tomorrow
    assert datetime.fromisoformat(fr["at_risk_at"]) == at(3, 10, 17, 30)  # 75 %: 22.5 minutes
    assert opened["sla"]["resolution"]["clock"] == "wall"
    assert datetime.fromisoformat(opened["sla"]["resolution"]["due_at"]) == at(3, 21, 55)

    monkeypatch.undo()
    sweep(at(3, 10, 0))
    assert notes(api, agent, tid) == []  # nothing due yet
    first = sweep(at(3, 10, 18))
    assert first["failed"] == 0
    mine = notes(api, agent, tid)
    assert [n["step"] for n in mine] == ["first_response_at_risk"] and mine[0]["read"] is False
    sweep(at(3, 10, 19))  # a re-run notifies nobody twice
    assert len(notes(api, agent, tid)) == 1

    manager = tokens.staff("store_manager", stores=[store], sub=uid("mgr"))
    assert notes(api, manager, tid) == []
    sweep(at(3, 10, 26))
    assert [n["step"] for n in notes(api, manager, tid)] == ["first_response_breached"]
    assert tid in [t["ticket_id"] for t in api.get("/tickets?sla=breached&limit=100", tokens.hq())[1]["items"]]
    other_store = tokens.staff("store_manager", stores=["gz-001"])
    assert notes(api, other_store, tid) == []
    listed = api.get("/tickets?sla=breached&limit=100", other_store)[1]["items"]
    assert tid not in [t["ticket_id"] for t in listed]  # not theirs to read

    note_id = notes(api, manager, tid)[0]["notification_id"]
    assert api.post("/notifications/me/read", {"notification_ids": [note_id]}, manager)[0] == 200
    assert notes(api, manager, tid)[0]["read"] is True
    another_manager = tokens.staff("store_manager", stores=[store], sub=uid("mgr2"))
    assert notes(api, another_manager, tid)[0]["read"] is False  # read state is per person

    ticket = api.get(f"/tickets/{tid}", tokens.hq())[1]
    assert ticket["sla"]["first_response"]["state"] == "breached"
    assert ticket["sla"]["escalated"] == ["first_response_at_risk", "first_response_breached"]


def test_a_reply_stops_first_response_and_policy_edits_apply_to_new_tickets(api, tokens, store, monkeypatch):
    hq = tokens.hq()
    current = api.get("/sla-policies", hq)[1]
    policy = {"rules": [{"priority": "urgent", "first_response": {"minutes": 10, "clock": "wall"},
                         "resolution": {"minutes": 120, "clock": "business"}}],
              "at_risk_pct": 50, "version": current["version"]}
    status, saved = api.put("/sla-policies", policy, hq)
    assert status == 200 and saved["version"] == current["version"] + 1
    status, err = api.put("/sla-policies", policy, hq)
    assert status == 409 and err["code"] == "version_conflict"

    agent = tokens.staff(stores=[store], sub=uid("agent"))
    frozen(monkeypatch, at(4, 12, 0))
    urgent = api.post("/tickets", {"ticket_id": uid("t"), "channel": "hotline", "type": "complaint",
                                   "subject": "急", "description": "…", "store_id": store, "priority": "urgent"},
                      agent)[1]
    normal = api.post("/tickets", {"ticket_id": uid("t"), "channel": "hotline", "type": "complaint",
                                   "subject": "不急", "description": "…", "store_id": store}, agent)[1]
    assert urgent["sla"]["policy_version"] == saved["version"]
    assert datetime.fromisoformat(urgent["sla"]["first_response"]["due_at"]) == at(4, 12, 10)
    assert datetime.fromisoformat(urgent["sla"]["first_response"]["at_risk_at"]) == at(4, 12, 5)
    assert datetime.fromisoformat(normal["sla"]["first_response"]["due_at"]) == at(4, 12, 30)  # the default

    frozen(monkeypatch, at(4, 12, 3))
    body = {"action_id": uid("a"), "type": "reply", "body": "马上处理"}
    status, replied = api.post(f"/tickets/{urgent['ticket_id']}/actions", body, agent)
    assert status == 201, replied
    monkeypatch.undo()
    sweep(at(4, 13, 0))
    steps = [n["step"] for n in notes(api, agent, urgent["ticket_id"])]
    assert not any(s.startswith("first_response") for s in steps)  # answered in time: no first-response step
    final = api.get(f"/tickets/{urgent['ticket_id']}", hq)[1]["sla"]["first_response"]
    assert final["state"] == "met" and datetime.fromisoformat(final["done_at"]) == at(4, 12, 3)
    assert api.put("/sla-policies", {"rules": [], "version": saved["version"]}, hq)[0] == 200  # back to defaults


def test_one_failing_ticket_does_not_stop_the_run(api, tokens, store, monkeypatch):
    agent = tokens.staff(stores=[store], sub=uid("agent"))
    frozen(monkeypatch, at(6, 12, 0))
    ids = [api.post("/tickets", {"ticket_id": uid("t"), "channel": "store", "type": "service", "subject": "x",
                                 "description": "…", "store_id": store}, agent)[1]["ticket_id"] for _ in range(3)]
    monkeypatch.undo()
    real = sla_escalation.sweep.__globals__["escalate_one"]

    def flaky(ticket_id, *args, **kwargs):
        if ticket_id == ids[1]:
            raise RuntimeError("a bad ticket")
        return real(ticket_id, *args, **kwargs)

    monkeypatch.setitem(sla_escalation.sweep.__globals__, "escalate_one", flaky)
    result = sweep(at(6, 12, 25))
    assert result["failed"] == 1
    assert all(notes(api, agent, t) for t in (ids[0], ids[2])) and not notes(api, agent, ids[1])
    monkeypatch.undo()
    sweep(at(6, 12, 26))  # the next run finishes what the last one could not
    assert notes(api, agent, ids[1])


def test_a_store_without_hours_counts_around_the_clock(api, tokens, monkeypatch):
    """An online store (no opening hours at all) still gets deadlines: its business time is all the time."""
    store_id = uid("online")
    assert api.put(f"/stores/{store_id}", {"name": "线上", "region_id": "online", "city": "上海",
                                          "store_type": "online"}, tokens.hq())[0] in (200, 201)
    frozen(monkeypatch, at(7, 23, 50))
    opened = api.post("/tickets", {"ticket_id": uid("t"), "channel": "miniprogram", "type": "inquiry",
                                   "subject": "物流", "description": "…", "store_id": store_id},
                      tokens.staff(stores=[store_id]))[1]
    assert datetime.fromisoformat(opened["sla"]["first_response"]["due_at"]) == at(8, 0, 20)
