"""Any sequence of ticket actions, run through the API against DynamoDB Local, ends where an independent model
says, and the stored events replay to the stored head.

Hypothesis draws sequences of reply / comment / assign / transfer / hold / resume / resolve / reopen / close /
rate, tasks added and completed, and retries of earlier requests, each sent by a store's staff, its manager
or the ticket's member. A small model written here (the roles' rights from the access policy, the state
rules from testkit.tickets_audit's transition table; never the production reducer `apply` or `ALLOWED`)
predicts every answer: 201 and the state after, 200 for a retry of what was recorded, 403 / 409 / 422 with
the reason. After each sequence:
  - the raw events, ordered by their seq, are exactly the accepted requests in the order they were made
    (nothing refused is stored, nothing is stored twice), and folding them with the model from the state the
    ticket was created in gives the stored head (status, assignee, queue, routing, first_response_at,
    resolved_at, closed_at, rating, reopened, open_tasks, the task ids, the event count);
  - every agent's open count equals their working tickets in each queue;
  - every answer the member got (the create, each action, GET /tickets/{id} and GET /members/{id}/tickets after
    every step) holds no internal comment, no agent's sub, no queue id or routing detail; the replies the
    member sees are the public replies, in order.
"""
from __future__ import annotations

import json
import uuid
from collections import Counter
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chalicelib.domain import clock
from testkit.support import registration
from testkit.tickets_audit import Model, as_model, audit_agents, audit_ticket, read_ticket, refusal, step

KINDS = ["reply", "reply", "comment", "assign", "transfer", "hold", "resume", "resolve", "resolve", "reopen",
         "reopen", "close", "rate", "rate"]
ACTORS = ["staff", "manager", "member"]
# The rights of each caller here (docs/access-policy.md: tickets.reply / work / manage / reopen / rate; the
# staff and the manager work both stores' queues, so their rights do not change with a transfer).
RIGHTS = {
    "member": {"reply", "reopen", "rate"},
    "staff": {"reply", "comment", "hold", "resume", "resolve", "close", "reopen", "task"},
    "manager": {"reply", "comment", "hold", "resume", "resolve", "close", "reopen", "assign", "transfer", "task"},
}
REACHED: Counter[tuple[str, int]] = Counter()  # (request, status) over a run: a run that never reopened proves little
HIDDEN_KEYS = {"queue_id", "assignee", "routed_by", "events", "created_by", "by_role", "from_queue"}


def uid(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@dataclass
class World:
    """Two fresh stores A and B of a fresh region. Queue A's one available agent is `sa`, queue B's `sb`;
    the manager is an agent of both but away, so round robin (create, transfer) always picks sa / sb."""

    api: Any
    stores: dict[str, str]  # "A"/"B" -> store id
    queues: dict[str, str]  # "A"/"B" -> queue id
    sa: str
    sb: str
    manager_sub: str
    member_id: str
    tokens: dict[str, str]  # actor -> token
    tickets: list[str] = field(default_factory=list)  # every ticket opened in A's and B's queues

    def agents_of(self, queue_id: str) -> set[str]:
        return {self.queues["A"]: {self.sa, self.manager_sub}, self.queues["B"]: {self.sb, self.manager_sub}}[queue_id]

    def available_in(self, queue_id: str) -> str:
        return {self.queues["A"]: self.sa, self.queues["B"]: self.sb}[queue_id]

    @property
    def secrets(self) -> set[str]:
        """What no member answer may contain, whatever else: agents' subs and the queue ids."""
        return {self.sa, self.sb, self.manager_sub, *self.queues.values()}


@pytest.fixture(scope="module")
def world(api, tokens) -> World:
    hq = tokens.hq()
    region = uid("r")
    stores = {k: uid("st") for k in "AB"}
    for s in stores.values():
        status, view = api.put(f"/stores/{s}", {"name": "回放店", "region_id": region, "city": "上海",
                                               "store_type": "standard"}, hq)
        assert status in (200, 201), view
    queues = {k: f"store-{s}" for k, s in stores.items()}
    sa, sb, manager_sub = uid("agent-a"), uid("agent-b"), uid("mgr")
    both = list(stores.values())
    staff_a = tokens.staff(stores=both, sub=sa)
    staff_b = tokens.staff(stores=both, sub=sb)
    manager = tokens.staff("store_manager", stores=both, sub=manager_sub)
    for token, queue, available in ((staff_a, queues["A"], True), (staff_b, queues["B"], True),
                                    (manager, queues["A"], False), (manager, queues["B"], False)):
        status, view = api.put(f"/queues/{queue}/agents/me", {"available": available}, token)
        assert status == 200, view
    status, member = api.post("/members", registration(), tokens.staff(stores=["sh-001"]))
    assert status == 201, member
    return World(api=api, stores=stores, queues=queues, sa=sa, sb=sb, manager_sub=manager_sub,
                 member_id=member["member_id"],
                 tokens={"staff": staff_a, "manager": manager, "member": tokens.member(member["member_id"])})


# ---- the run: requests, what the model expects of them, what came back ----------------------------------------
@dataclass
class Request:
    actor: str
    path: str
    body: dict[str, Any]
    what: str  # an action type, "task" or "complete"


@dataclass
class Run:
    world: World
    ticket_id: str
    model: Model
    recorded: list[str] = field(default_factory=list)  # event ids in the order they must be stored
    answers: dict[str, dict[str, Any]] = field(default_factory=dict)  # event id -> the 201 answer
    tasks: list[str] = field(default_factory=list)  # task ids added (201)
    done: dict[str, str] = field(default_factory=dict)  # task id -> the outcome it was completed with
    sent: list[Request] = field(default_factory=list)
    replies: list[str] = field(default_factory=list)  # public reply bodies, in order
    comments: set[str] = field(default_factory=set)  # internal bodies sent (recorded or not)

    def expect(self, req: Request) -> tuple[int, str | None, Model | None, dict[str, Any]]:
        """(status, error code, the model after a 201 / a completed task, the event's data)."""
        w, m, kind = self.world, self.model, req.what
        if kind == "complete":
            if req.actor == "member":
                return 403, None, None, {}
            task_id = req.path.split("/")[2]
            if task_id in self.done:  # the same outcome again replays; another is refused
                return (200, None, None, {}) if self.done[task_id] == req.body["outcome"] else \
                    (409, "task_done", None, {})
            return 200, None, _event(m, "task_done", req.actor, {"task_id": task_id}), {}
        if kind == "task":
            if req.body["task_id"] in self.tasks:
                return 200, None, None, {}
            if req.actor == "member":
                return 403, None, None, {}
            why = refusal(m, "task_added")
            if why:
                return 409, why, None, {}
            data = {"task_id": req.body["task_id"], "store_id": req.body["store_id"]}
            return 201, None, _event(m, "task_added", req.actor, data), data
        if req.body["action_id"] in self.answers:
            return 200, None, None, {}
        if kind not in RIGHTS[req.actor]:
            return 403, None, None, {}
        data = {k: v for k, v in req.body.items() if k not in ("action_id", "type")}
        if kind == "assign" and req.body["assignee"] not in w.agents_of(m.queue_id):
            return 422, "not_an_agent", None, {}
        if kind == "transfer":
            if req.body["queue_id"] == m.queue_id:
                return 422, "same_queue", None, {}
            data = {"queue_id": req.body["queue_id"], "from_queue": m.queue_id,
                    "assignee": w.available_in(req.body["queue_id"]), "routed_by": "transfer"}
        why = refusal(m, kind)
        if why:
            return 409, why, None, {}
        return 201, None, _event(m, kind, req.actor, data), data


def _event(m: Model, kind: str, actor: str, data: dict[str, Any]) -> Model:
    role = {"member": "member", "staff": "staff", "manager": "store_manager"}[actor]
    return step(m, {"action_id": "?", "type": kind, "by_role": role, "at": clock.iso(clock.now()), "data": data})


def _walk(value: Any, found: list[tuple[str, Any]]) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            found.append((k, v))
            _walk(v, found)
    elif isinstance(value, list):
        for v in value:
            _walk(v, found)


def assert_private(run: Run, answer: Any, where: str) -> None:
    """A member's answer: no internal comment, no agent's sub, no queue id, no routing detail."""
    text = json.dumps(answer, ensure_ascii=False)
    leaked = [s for s in run.world.secrets | run.comments if s in text]
    pairs: list[tuple[str, Any]] = []
    _walk(answer, pairs)
    keys = {k for k, _ in pairs} & HIDDEN_KEYS
    routed = [v for k, v in pairs if v == "transfer" and k != "type"]
    bys = {v for k, v in pairs if k == "by"} - {"you", "staff"}
    assert not (leaked or keys or routed or bys), f"{where} shows the member {leaked} {keys} {routed} {bys}: {text}"


def check_member_views(run: Run) -> None:
    w = run.world
    me = w.tokens["member"]
    status, view = w.api.get(f"/tickets/{run.ticket_id}", me)
    assert status == 200, view
    assert_private(run, view, "GET /tickets/{id}")
    assert [r["body"] for r in view["replies"]] == run.replies  # public replies only, in order
    assert (view["status"], view["rating"]) == (run.model.status, run.model.rating)
    status, page = w.api.get(f"/members/{w.member_id}/tickets?limit=100", me)
    assert status == 200, page
    assert_private(run, page, "GET /members/{id}/tickets")
    mine = [t for t in page["items"] if t["ticket_id"] == run.ticket_id]
    assert len(mine) == 1 and mine[0]["status"] == run.model.status, page


def send(run: Run, req: Request) -> None:
    w = run.world
    expected, code, after, _ = run.expect(req)
    status, answer = w.api.post(req.path, req.body, w.tokens[req.actor])
    REACHED[(req.what, status)] += 1
    assert status == expected, (req, run.model, status, answer)
    if code is not None:
        assert answer["code"] == code, (req, answer)
        if code == "action_not_allowed":
            assert answer["details"]["status"] == run.model.status, answer  # the refusal names the state
    if req.actor == "member":
        assert_private(run, answer, f"the answer to {req.what}")
    if req.what == "comment" and req.actor != "member":
        run.comments.add(req.body["body"])
    if req.what == "complete":
        if status == 200 and after is not None:
            task_id = req.path.split("/")[2]
            run.done[task_id] = req.body["outcome"]
            run.recorded.append(f"*task-done:{task_id}")
    elif req.what == "task":
        if status == 201:
            run.tasks.append(req.body["task_id"])
            run.recorded.append(f"*task-added:{req.body['task_id']}")
    elif status == 201:
        run.recorded.append(req.body["action_id"])
        run.answers[req.body["action_id"]] = answer
        if req.what == "reply":
            run.replies.append(req.body["body"])
    elif status == 200:  # a retry: the event as it was first answered
        first = run.answers[req.body["action_id"]]
        assert (answer["action_id"], answer["type"], answer["at"]) == \
            (first["action_id"], first["type"], first["at"]), (first, answer)
    if after is not None:
        run.model = after
    if status in (200, 201) and req.actor != "member" and req.what not in ("task", "complete"):
        t = answer["ticket"]
        assert (t["status"], t["queue_id"], t["assignee"], t["open_tasks"]) == \
            (run.model.status, run.model.queue_id, run.model.assignee, run.model.open_tasks), (req, answer)
    check_member_views(run)


# ---- the generated sequences --------------------------------------------------------------------------------
# "right": the caller whose right it is (most steps, so sequences get somewhere); a named one to be refused too
ACTOR = st.sampled_from(["right", "right", "right", "staff", "manager", "member"])
STEPS = [*KINDS, "task", "complete", "again"]
steps = st.lists(st.tuples(st.sampled_from(STEPS), ACTOR, st.integers(0, 59)), min_size=4, max_size=16)


def _actor(drawn: str, kind: str, n: int) -> str:
    if drawn != "right":
        return drawn
    if kind in ("assign", "transfer"):
        return "manager"
    if kind == "rate" or (kind in ("reply", "reopen") and n % 3 == 0):  # the member's own
        return "member"
    return "staff" if n % 2 else "manager"


def build(run: Run, drawn: tuple[str, str, int]) -> Request | None:
    """The request a drawn step stands for (None: nothing to send, e.g. completing a task when none exists)."""
    w, tid = run.world, run.ticket_id
    what, actor, n = drawn
    actor = _actor(actor, what, n)
    if what == "again":
        return run.sent[n % len(run.sent)] if run.sent else None
    if what == "task":
        body = {"task_id": uid("task"), "store_id": w.stores["AB"[n % 2]], "title": "B 店收货并交给顾客",
                "due_at": clock.iso(clock.now() + timedelta(days=1))}
        return Request(actor, f"/tickets/{tid}/tasks", body, "task")
    if what == "complete":
        if not run.tasks:
            return None
        task_id = run.tasks[n % len(run.tasks)]
        return Request(actor, f"/tasks/{task_id}/complete", {"outcome": "failed" if n % 5 == 0 else "done"},
                       "complete")
    body: dict[str, Any] = {"action_id": uid("a"), "type": what}
    if what == "reply":
        body["body"] = f"您好，已处理 {uuid.uuid4().hex[:8]}"
    if what == "comment":
        body["body"] = f"内部备注 {uuid.uuid4().hex[:8]}"
    if what == "assign":
        body["assignee"] = [w.sa, w.sb, w.manager_sub][n % 3]
    if what == "transfer":
        body["queue_id"] = w.queues["AB"[n % 2]]
    if what == "rate":
        body["score"] = 1 + n % 5
    return Request(actor, f"/tickets/{tid}/actions", body, what)


def open_ticket(world: World) -> tuple[str, Model, Run]:
    body = {"ticket_id": uid("tk"), "channel": "miniprogram", "type": "cross_store", "subject": "A 店下单 B 店取",
            "description": "在 A 店下单，想在 B 店取货", "store_id": world.stores["A"]}
    status, mine = world.api.post("/tickets", body, world.tokens["member"])
    assert status == 201, mine
    status, full = world.api.get(f"/tickets/{body['ticket_id']}", world.tokens["manager"])
    assert status == 200, full
    assert (full["queue_id"], full["assignee"], full["routed_by"], full["status"]) == \
        (world.queues["A"], world.sa, None, "new"), full
    world.tickets.append(body["ticket_id"])
    run = Run(world=world, ticket_id=body["ticket_id"], model=Model.created(full))
    assert_private(run, mine, "the create answer")
    return body["ticket_id"], Model.created(full), run


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                 HealthCheck.too_slow])
@given(drawn=steps)
def test_any_action_sequence_replays_to_the_stored_ticket(world, drawn):
    ticket_id, created, run = open_ticket(world)
    for d in drawn:
        req = build(run, d)
        if req is None:
            continue
        send(run, req)
        run.sent.append(req)

    stored = audit_ticket(ticket_id, {"queue_id": created.queue_id, "assignee": created.assignee,
                                      "routed_by": created.routed_by})
    assert [e["body"]["action_id"] for e in stored.events] == run.recorded  # each accepted request once, in order
    head = as_model(stored.state)
    assert replace(head, first_response_at=None, resolved_at=None, closed_at=None) == \
        replace(run.model, first_response_at=None, resolved_at=None, closed_at=None)
    for name in ("first_response_at", "resolved_at", "closed_at"):  # set or not as the model says
        assert (getattr(head, name) is None) == (getattr(run.model, name) is None), name
    audit_agents(world.queues.values(), world.tickets)


# ---- the replay regression, step by step ------------------------------------------------------------------
def test_a_retried_transfer_or_assign_answers_what_was_recorded(world):
    """Regression: a transfer sent again found the ticket in the queue it had moved it to and answered 422
    same_queue, an assign sent again after a transfer 422 not_an_agent, although both were recorded."""
    ticket_id, _, run = open_ticket(world)
    manager = world.tokens["manager"]
    move = {"action_id": uid("a"), "type": "transfer", "queue_id": world.queues["B"]}
    assign = {"action_id": uid("a"), "type": "assign", "assignee": world.sb}
    back = {"action_id": uid("a"), "type": "transfer", "queue_id": world.queues["A"]}
    first = [world.api.post(f"/tickets/{ticket_id}/actions", b, manager) for b in (move, assign, back)]
    assert [s for s, _ in first] == [201, 201, 201], first
    again = [world.api.post(f"/tickets/{ticket_id}/actions", b, manager) for b in (move, assign, back)]
    assert [s for s, _ in again] == [200, 200, 200], again
    assert [(a["action_id"], a["at"]) for _, a in again] == [(a["action_id"], a["at"]) for _, a in first]
    stored = read_ticket(ticket_id)
    assert [e["body"]["action_id"] for e in stored.events] == [move["action_id"], assign["action_id"],
                                                                back["action_id"]]
    assert stored.head["v"] == 3 and stored.state["queue_id"] == world.queues["A"]
    # the same action id with another body is still refused, and nothing is stored
    status, err = world.api.post(f"/tickets/{ticket_id}/actions", {**move, "queue_id": world.queues["A"]}, manager)
    assert status == 409 and err["code"] == "action_id_taken", err
    assert read_ticket(ticket_id).head["v"] == 3
    audit_agents(world.queues.values())  # every ticket in the table: none but this module's in these queues
