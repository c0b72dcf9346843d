"""The SLA sweep (functions/sla_escalation) against DynamoDB Local, for what tests/api/test_sla_flow.py does not
already prove: a run that dies half-way is finished by the next with nobody told twice; a reopened ticket's
resolution steps fire again against its new deadline; hold pauses the resolution clock (no resolution step while
on hold); escalation never moves a ticket (queue, assignee, status, history unchanged); a breached ticket with
every step taken stays on the breached list while it is open, and the sweep does not read it again.

Each test has a table of its own (only its tickets are due) and a policy in wall time, so every deadline below
is computed by hand: first response 30 minutes (at risk at 75 %: 22:30), resolution 120 minutes (at risk at 90),
HQ told 240 minutes after the resolution deadline."""
from __future__ import annotations

import uuid
from collections import Counter
from datetime import datetime
from typing import Any

import pytest

from chalicelib import bootstrap
from chalicelib.cli import _LocalContext
from chalicelib.domain import clock
from chalicelib.store import keys
from chalicelib.store.tickets import DynamoTicketRepository
from functions import sla_escalation
from testkit.support import create_stores

TZ = clock.BUSINESS_TZ
POLICY = {"rules": [{"priority": "normal", "first_response": {"minutes": 30, "clock": "wall"},
                     "resolution": {"minutes": 120, "clock": "wall"}}], "at_risk_pct": 75, "hq_after_minutes": 240}
RECIPIENTS = ("queue:store-sh-001", "store_managers:sh-001", "region_manager:east", "hq")  # an unassigned ticket's


def at(hh: int, mm: int = 0, ss: int = 0, day: int = 10) -> datetime:
    """June 2026 (a sweep of this table reaches only this test's tickets, whatever the date)."""
    return datetime(2026, 6, day, hh, mm, ss, tzinfo=TZ)


def iso(when: datetime) -> str:
    return when.isoformat()


def uid(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def world(api, tokens, fresh_table, monkeypatch):  # noqa: ANN001
    create_stores()
    hq = tokens.hq()
    status, policy = api.put("/sla-policies", {**POLICY, "version": 0}, hq)
    assert status == 200, policy
    return World(api, tokens, monkeypatch)


class World:
    def __init__(self, api: Any, tokens: Any, monkeypatch: pytest.MonkeyPatch) -> None:
        self.api, self.tokens, self.mp = api, tokens, monkeypatch
        self.hq = tokens.hq()

    def as_of(self, when: datetime, call: Any) -> Any:
        with self.mp.context() as m:
            m.setattr(clock, "now", lambda: when)
            return call()

    def open(self, when: datetime, token: str | None = None) -> dict[str, Any]:
        body = {"ticket_id": uid("t"), "channel": "store", "type": "complaint", "subject": "奶茶太甜",
                "description": "点了三分糖", "store_id": "sh-001"}
        status, ticket = self.as_of(when, lambda: self.api.post("/tickets", body, token or self.hq))
        assert status == 201, ticket
        assert (ticket["sla"]["first_response"]["due_at"], ticket["sla"]["resolution"]["due_at"]) == \
            (iso(when.replace(minute=when.minute + 30)), iso(when.replace(hour=when.hour + 2))), ticket["sla"]
        return ticket

    def act(self, when: datetime, ticket_id: str, kind: str, **fields: Any) -> dict[str, Any]:
        body = {"action_id": uid("a"), "type": kind, **fields}
        status, done = self.as_of(when, lambda: self.api.post(f"/tickets/{ticket_id}/actions", body, self.hq))
        assert status == 201, done
        return done["ticket"]

    def ticket(self, ticket_id: str) -> dict[str, Any]:
        status, view = self.api.get(f"/tickets/{ticket_id}", self.hq)
        assert status == 200, view
        return view

    def sweep(self, when: datetime) -> dict[str, int]:
        result = sla_escalation.handler({"now": iso(when)}, _LocalContext("sla-escalation"))
        assert result["failed"] == 0 and not result["left_for_next_run"], result
        return result


def stored_notes(ticket_ids: set[str] | None = None) -> list[tuple[str, str, str, str]]:
    """Every notification in the table, as (addressee, ticket, step, step's due time), read raw (duplicates
    would show: the API's list could hide them)."""
    out = []
    for recipient in RECIPIENTS:
        for item in bootstrap.db().query_all(KeyConditionExpression="pk = :pk AND begins_with(sk, :n)",
                                             values={":pk": keys.notifications_pk(recipient), ":n": "N#"},
                                             ConsistentRead=True):
            if ticket_ids is None or item["ticket_id"] in ticket_ids:
                out.append((item["recipient"], item["ticket_id"], item["step"], item["due_at"]))
    return sorted(out)


def steps_of(ticket_id: str) -> list[tuple[str, str, str]]:
    return sorted((recipient, step, due) for recipient, t, step, due in stored_notes({ticket_id}))


# ---- a run that dies half-way ---------------------------------------------------------------------------
class Crash(BaseException):
    """The process dying (a Lambda timeout or kill): not an Exception, so no per-ticket handler catches it."""


@pytest.mark.parametrize("where", ["before a write", "after a write landed", "reading the due index"])
def test_a_run_that_dies_half_way_is_finished_by_the_next_with_nobody_told_twice(world, monkeypatch, where):  # noqa: ANN001
    ids = {world.open(at(12, 0))["ticket_id"] for _ in range(6)}
    real_escalate, real_due = DynamoTicketRepository.escalate, DynamoTicketRepository.sla_due
    writes = Counter[str]()

    def escalate(self: Any, *args: Any, **kwargs: Any) -> None:
        writes["calls"] += 1
        if writes["calls"] == 3 and where == "before a write":
            raise Crash()
        real_escalate(self, *args, **kwargs)
        if writes["calls"] == 3 and where == "after a write landed":
            raise Crash()

    def sla_due(self: Any, *args: Any, **kwargs: Any) -> Any:
        for ticket_id in real_due(self, *args, **kwargs):
            writes["read"] += 1  # over every stage and shard the run reads
            if writes["read"] == 3 and where == "reading the due index":
                raise Crash()
            yield ticket_id

    with monkeypatch.context() as m:
        m.setattr(DynamoTicketRepository, "escalate", escalate)
        m.setattr(DynamoTicketRepository, "sla_due", sla_due)
        with pytest.raises(Crash):
            sla_escalation.handler({"now": iso(at(12, 31))}, _LocalContext("sla-escalation"))
    landed = 3 if where == "after a write landed" else 2
    told = stored_notes(ids)
    assert len(told) == 2 * landed  # first response at risk (to the queue) and breached (to the managers)
    assert len({t for _, t, _, _ in told}) == landed

    finished = world.sweep(at(12, 32))  # the next run: the rest was still due
    assert (finished["checked"], finished["escalated"], finished["notified"]) == \
        (6 - landed, 2 * (6 - landed), 2 * (6 - landed)), finished
    expected = sorted((r, t, s, d) for t in ids for r, s, d in (
        ("queue:store-sh-001", "first_response_at_risk", "2026-06-10T12:22:30.000+08:00"),
        ("store_managers:sh-001", "first_response_breached", "2026-06-10T12:30:00.000+08:00")))
    assert stored_notes(ids) == expected  # each step told once, to each addressee once
    again = world.sweep(at(12, 33))
    assert (again["checked"], again["notified"]) == (0, 0), again
    for ticket_id in ids:
        assert world.ticket(ticket_id)["sla"]["escalated"] == ["first_response_at_risk", "first_response_breached"]
    # and as the API shows it: one note per step for a manager of sh-001
    manager = world.tokens.staff("store_manager", stores=["sh-001"], sub=uid("mgr"))
    page = world.api.get("/notifications/me?limit=100", manager)[1]["items"]
    assert Counter((n["ticket_id"], n["step"]) for n in page) == Counter(
        {(t, s): 1 for t in ids for s in ("first_response_at_risk", "first_response_breached")})


# ---- reopen ----------------------------------------------------------------------------------------------
def test_a_reopened_tickets_resolution_steps_fire_again_against_its_new_deadline(world):  # noqa: ANN001
    tid = world.open(at(12, 0))["ticket_id"]
    world.act(at(12, 5), tid, "reply", body="马上处理")  # first response met: no first-response step ever
    world.sweep(at(13, 31))  # resolution at risk at 13:30 (90 of 120 minutes)
    world.act(at(13, 40), tid, "resolve")  # 100 minutes used: met
    assert world.ticket(tid)["sla"]["resolution"]["state"] == "met"
    assert world.sweep(at(16, 0))["checked"] == 0  # resolved: out of the due index
    reopened = world.act(at(15, 0), tid, "reopen")
    # 20 minutes left from 15:00; at risk at once (90 minutes were already past)
    res = reopened["sla"]["resolution"]
    assert (res["due_at"], res["at_risk_at"], res["used_seconds"]) == \
        ("2026-06-10T15:20:00+08:00", "2026-06-10T15:00:00+08:00", 100 * 60), res
    assert reopened["sla"]["escalated"] == []  # the resolution steps may fire again; no first-response step taken
    world.sweep(at(15, 1))
    world.sweep(at(15, 21))
    world.sweep(at(19, 21))  # HQ: 4 hours past the new deadline
    assert steps_of(tid) == sorted([
        ("queue:store-sh-001", "resolution_at_risk", "2026-06-10T13:30:00.000+08:00"),  # before the resolve
        ("queue:store-sh-001", "resolution_at_risk", "2026-06-10T15:00:00.000+08:00"),  # again, after the reopen
        ("region_manager:east", "resolution_breached", "2026-06-10T15:20:00.000+08:00"),
        ("hq", "resolution_breached_hq", "2026-06-10T19:20:00.000+08:00"),
    ])
    final = world.ticket(tid)["sla"]
    assert (final["first_response"]["state"], final["resolution"]["state"]) == ("met", "breached")
    assert final["escalated"] == ["resolution_at_risk", "resolution_breached", "resolution_breached_hq"]


# ---- hold ------------------------------------------------------------------------------------------------
def test_hold_pauses_the_resolution_clock_so_no_resolution_step_fires_while_on_hold(world):  # noqa: ANN001
    tid = world.open(at(12, 0))["ticket_id"]
    world.act(at(12, 5), tid, "reply", body="请提供小票")
    held = world.act(at(12, 30), tid, "hold")
    res = held["sla"]["resolution"]
    assert (res["running"], res["used_seconds"], res["due_at"]) == (False, 30 * 60, None), res
    for when in (at(13, 31), at(14, 1), at(18, 1), at(9, 0, day=11)):  # past every step of the first deadline
        result = world.sweep(when)
        assert (result["checked"], result["notified"]) == (0, 0), (when, result)
    assert steps_of(tid) == []
    assert world.ticket(tid)["sla"]["resolution"]["state"] == "within"
    resumed = world.act(at(10, 0, day=11), tid, "resume")  # 90 minutes left from 10:00 the next day
    res = resumed["sla"]["resolution"]
    assert (res["at_risk_at"], res["due_at"]) == ("2026-06-11T11:00:00+08:00", "2026-06-11T11:30:00+08:00"), res
    assert world.sweep(at(10, 59, day=11))["notified"] == 0
    world.sweep(at(11, 1, day=11))
    assert steps_of(tid) == [("queue:store-sh-001", "resolution_at_risk", "2026-06-11T11:00:00.000+08:00")]
    world.sweep(at(11, 31, day=11))
    assert steps_of(tid)[-1] == ("region_manager:east", "resolution_breached", "2026-06-11T11:30:00.000+08:00")


# ---- escalation notifies; it never moves the ticket -----------------------------------------------------
def test_escalation_never_moves_the_ticket(world, api, tokens):  # noqa: ANN001
    agent_sub = uid("agent")
    agent = tokens.staff(stores=["sh-001"], sub=agent_sub)
    assert api.put("/queues/store-sh-001/agents/me", {"available": True}, agent)[0] == 200
    opened = world.open(at(12, 0), token=agent)
    tid = opened["ticket_id"]
    assert (opened["queue_id"], opened["assignee"], opened["status"]) == ("store-sh-001", agent_sub, "new"), opened
    before = {k: v for k, v in world.ticket(tid).items() if k != "sla"}
    agent_before = bootstrap.tickets().get_agent("store-sh-001", agent_sub)
    for when in (at(12, 31), at(14, 1), at(18, 1)):  # every step: at risk, breached, the region, HQ
        world.sweep(when)
    after = world.ticket(tid)
    assert after["sla"]["escalated"] == ["first_response_at_risk", "first_response_breached", "resolution_at_risk",
                                         "resolution_breached", "resolution_breached_hq"]
    assert {k: v for k, v in after.items() if k != "sla"} == before  # queue, assignee, status, history as they were
    assert bootstrap.tickets().get_agent("store-sh-001", agent_sub) == agent_before  # nobody's load moved
    assert [(r, s) for r, s, _ in steps_of(tid)] == sorted([  # at risk went to the assignee, not the queue
        ("region_manager:east", "resolution_breached"), ("hq", "resolution_breached_hq"),
        ("store_managers:sh-001", "first_response_breached")])
    mine = api.get("/notifications/me?limit=100", agent)[1]["items"]
    assert sorted(n["step"] for n in mine if n["ticket_id"] == tid) == ["first_response_at_risk",
                                                                       "resolution_at_risk"]


# ---- the breached list keeps a ticket every step was taken for -----------------------------------------
def test_a_breached_ticket_with_every_step_taken_stays_listed_until_resolved(world):  # noqa: ANN001
    # Regression: with no step left it fell out of the due index, and so off GET /tickets?sla=breached.
    tid = world.open(at(12, 0))["ticket_id"]
    world.sweep(at(18, 1))  # every step at once
    assert len(world.ticket(tid)["sla"]["escalated"]) == 5

    def breached() -> list[str]:
        status, page = world.api.get("/tickets?sla=breached&limit=100", world.hq)
        assert status == 200, page
        return [t["ticket_id"] for t in page["items"]]

    assert breached() == [tid]
    assert world.sweep(at(9, 0, day=11))["checked"] == 0  # listed, but never read by the sweep again
    world.act(at(9, 30, day=11), tid, "resolve")
    assert breached() == []
