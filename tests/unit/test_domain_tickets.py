"""Ticket rules (chalicelib/domain/tickets.py): routing, the choice of agent, and the state machine, checked
against an independent model written here (a table of transitions), never against the reducer itself."""
from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from chalicelib.domain import clock
from chalicelib.domain.tickets import (
    ActionInput,
    ActionRefused,
    ActionType,
    Agent,
    Channel,
    Event,
    Facts,
    Priority,
    RoutingRule,
    Ticket,
    TicketType,
    apply,
    check,
    choose_agent,
    route,
)

T0 = datetime(2026, 12, 1, 10, 0, tzinfo=clock.BUSINESS_TZ)


def facts(**kw) -> Facts:
    base = dict(type=TicketType.COMPLAINT, channel=Channel.HOTLINE, store_id="sh-001", region_id="east",
                priority=None, member_tier=None)
    base.update(kw)
    return Facts(**base)


def rule(**kw) -> RoutingRule:
    return RoutingRule.model_validate({"name": "r", "queue_id": "complaints", **kw})


# ---- routing
def test_first_matching_rule_wins_and_defaults_apply():
    rules = [rule(name="refunds", types=["refund"], queue_id="refund-desk"),
             rule(name="east complaints", types=["complaint"], region_ids=["east"], queue_id="{store}",
                  priority="high")]
    got = route(rules, facts())
    assert (got.queue_id, got.priority, got.rule) == ("store-sh-001", Priority.HIGH, "east complaints")
    assert route(rules, facts(type=TicketType.REFUND)).queue_id == "refund-desk"
    assert route(rules, facts(type=TicketType.INQUIRY)).queue_id == "store-sh-001"  # no rule: its store
    assert route(rules, facts(type=TicketType.INQUIRY, store_id=None)).queue_id == "hq-service"
    assert route(rules, facts(priority=Priority.LOW)).priority is Priority.LOW  # the ticket's own wins


def test_a_vip_tier_raises_priority_never_lowers_it():
    vip = [rule(name="vip", member_tiers=["gold"], raise_to="high")]
    assert route(vip, facts(member_tier="gold")).priority is Priority.HIGH
    assert route(vip, facts(member_tier="gold", priority=Priority.URGENT)).priority is Priority.URGENT
    assert route(vip, facts(member_tier="silver")).rule is None


# ---- agents
def test_round_robin_and_least_open():
    agents = [Agent("b", 3, T0), Agent("a", 1, T0 + timedelta(minutes=5)), Agent("c", 1, None)]
    assert choose_agent(agents, "round_robin") == "c"  # never assigned goes first
    assert choose_agent(agents[:2], "round_robin") == "b"  # then whoever waited longest
    assert choose_agent(agents, "least_open") == "c"  # 1 open, never assigned
    assert choose_agent(agents[:2], "least_open") == "a"
    assert choose_agent([], "round_robin") is None and choose_agent(agents, "none") is None


# ---- actions
def test_action_bodies_carry_what_their_type_needs():
    assert ActionInput(action_id="a", type="reply", body="您好").data() == {"body": "您好"}
    for bad in ({"type": "reply"}, {"type": "assign"}, {"type": "rate", "score": 6},
                {"type": "hold", "body": "x"}, {"type": "comment", "body": "x", "article_ids": ["k1"]}):
        with pytest.raises(ValidationError):
            ActionInput(action_id="a", **bad)


def ticket() -> Ticket:
    return Ticket(ticket_id="t1", channel=Channel.HOTLINE, type=TicketType.COMPLAINT, subject="s", description="d",
                  store_id="sh-001", member_id="M", order_id=None, queue_id="store-sh-001",
                  priority=Priority.NORMAL, created_at=T0, created_by="hotline")


def event(kind: str, minutes: int = 1, role: str = "staff", **data) -> Event:
    return Event(action_id=f"{kind}-{minutes}", type=ActionType(kind), by="agent-1" if role != "member" else "M",
                 by_role=role, at=T0 + timedelta(minutes=minutes), data=data)


def test_state_named_when_refused_and_member_rules():
    t = apply(ticket(), event("resolve"))
    with pytest.raises(ActionRefused) as refused:
        check(t, event("hold", 2), by_member=False)
    assert refused.value.details["status"] == "resolved"
    late = event("reopen", 60 * 24 * 8, role="member")
    with pytest.raises(ActionRefused):
        check(t, late, by_member=True)
    check(t, late, by_member=False)  # staff may reopen later
    rated = apply(t, event("rate", 3, role="member", score=5))
    with pytest.raises(ActionRefused):
        check(rated, event("rate", 4, role="member", score=1), by_member=True)
    with pytest.raises(ActionRefused):
        check(ticket().evolve(open_tasks=1), event("resolve"), by_member=False)


# An independent model: the transition table as the issue states it, in one place, and the facts it tracks.
MODEL = {
    ("new", "reply"): "open", ("open", "reply"): "open", ("pending", "reply"): "pending",
    ("new", "assign"): "open", ("open", "assign"): "open", ("pending", "assign"): "pending",
    ("new", "transfer"): "new", ("open", "transfer"): "open", ("pending", "transfer"): "pending",
    ("new", "hold"): "pending", ("open", "hold"): "pending", ("pending", "resume"): "open",
    ("new", "resolve"): "resolved", ("open", "resolve"): "resolved", ("pending", "resolve"): "resolved",
    ("resolved", "reopen"): "open",
    ("new", "close"): "closed", ("open", "close"): "closed", ("pending", "close"): "closed",
    ("resolved", "close"): "closed", ("resolved", "rate"): "resolved", ("closed", "rate"): "closed",
    **{(s, "comment"): s for s in ("new", "open", "pending", "resolved", "closed")},
    **{(s, "task_added"): s for s in ("new", "open", "pending")},
    **{(s, "task_done"): s for s in ("new", "open", "pending", "resolved", "closed")},
}


@given(st.lists(st.tuples(st.sampled_from(list(ActionType)), st.booleans()), max_size=30))
def test_reducer_agrees_with_the_model(steps):
    t, status, first_response, rating, applied, tasks = ticket(), "new", None, None, 0, 0
    for n, (kind, agent) in enumerate(steps, start=1):
        if kind is ActionType.TASK_DONE and not tasks:
            continue  # the service records a task done only for a task that was added and is open
        role = "staff" if agent else "member"
        data = {"score": 4} if kind is ActionType.RATE else {"queue_id": "q2"} if kind is ActionType.TRANSFER \
            else {"assignee": "agent-2"} if kind is ActionType.ASSIGN else \
            {"task_id": f"task-{n}"} if kind is ActionType.TASK_ADDED else {}
        e = event(kind.value, n, role=role, **data)
        allowed = (status, kind.value) in MODEL and not (kind is ActionType.RATE and rating is not None) \
            and not (kind is ActionType.RESOLVE and tasks)
        if kind is ActionType.REPLY and status == "new" and not agent:
            expected = "new"  # the member adding to their own ticket does not open it
        else:
            expected = MODEL.get((status, kind.value))
        try:
            check(t, e, by_member=not agent)
        except ActionRefused:
            assert not allowed, (status, kind)
            continue
        assert allowed, (status, kind)
        t = apply(t, e)
        applied += 1
        status = expected
        if kind is ActionType.REPLY and agent and first_response is None:
            first_response = e.at
        if kind is ActionType.RATE:
            rating = 4
        tasks += {ActionType.TASK_ADDED: 1, ActionType.TASK_DONE: -1}.get(kind, 0)
        assert (t.status.value, t.first_response_at, t.rating, t.open_tasks) == (status, first_response, rating,
                                                                                 tasks)
    assert t.events == applied  # every applied event counted once (the next action's optimistic lock)
