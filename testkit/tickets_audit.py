"""The ticket auditor and an independent model of a ticket's state, for the ticket proofs.

Like testkit.audit, it reads RAW items with a boto3 client of its own and decodes them itself: none of
chalicelib's repositories, converters or domain rules (in particular not the reducer `apply`, nor `ALLOWED`,
nor `load_changes`). The model below is written again from the issue's rules, as a transition table, so a
mistake in the production reducer is not read back through the same code and found consistent.

The item layout it relies on (see chalicelib/store/keys.py and chalicelib/store/tickets.py; written down
here again on purpose):
  TICKET#<id> / TICKET          the head: v (the count of events it was derived from), body (JSON: the state),
                                gsi1pk TQUEUE#<queue>#<status>, gsi3pk TAGENT#<assignee> (only when assigned)
  TICKET#<id> / ACT#<action_id> one event: seq (1, 2, ...), body (JSON: action_id, type, by, by_role, at, data)
  QUEUE#<queue> / AGENT#<sub>   an agent of a queue: available, open (its working tickets in that queue)
"""
from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from testkit.audit import _client, _table, decode_item

WORKING = ("new", "open", "pending")  # the statuses an assignee is busy with
EVERY = ("new", "open", "pending", "resolved", "closed")

# (status the action finds, action) -> the status it leaves; a pair not listed is refused in that status.
# "same": the status does not change. A reply or an assign by staff moves a new ticket to open (below).
TRANSITIONS: dict[tuple[str, str], str] = {}
for _s in EVERY:
    TRANSITIONS[(_s, "comment")] = "same"
    TRANSITIONS[(_s, "task_done")] = "same"
for _s in WORKING:
    for _a in ("reply", "assign", "transfer", "task_added"):
        TRANSITIONS[(_s, _a)] = "same"
    TRANSITIONS[(_s, "resolve")] = "resolved"
    TRANSITIONS[(_s, "close")] = "closed"
TRANSITIONS[("new", "hold")] = TRANSITIONS[("open", "hold")] = "pending"
TRANSITIONS[("pending", "resume")] = "open"
TRANSITIONS[("resolved", "reopen")] = "open"
TRANSITIONS[("resolved", "close")] = "closed"
TRANSITIONS[("resolved", "rate")] = TRANSITIONS[("closed", "rate")] = "same"


@dataclass(frozen=True)
class Model:
    """What the ticket should be after its events (times as datetimes, compared as instants)."""

    status: str
    queue_id: str
    assignee: str | None
    routed_by: str | None
    first_response_at: datetime | None = None
    resolved_at: datetime | None = None
    closed_at: datetime | None = None
    rating: int | None = None
    reopened: int = 0
    open_tasks: int = 0
    task_ids: tuple[str, ...] = ()
    events: int = 0

    @classmethod
    def created(cls, answer: dict[str, Any]) -> Model:
        """The state a ticket starts in: as the create answer (a staff view) said."""
        return cls(status="new", queue_id=answer["queue_id"], assignee=answer["assignee"],
                   routed_by=answer["routed_by"])


class Illegal(AssertionError):
    """An event the model says the ticket could not take in the state it was in."""


def refusal(m: Model, kind: str) -> str | None:
    """Why the model refuses the action in this state (the 409's code), or None when it is allowed."""
    if (m.status, kind) not in TRANSITIONS:
        return "action_not_allowed"
    if kind == "resolve" and m.open_tasks > 0:
        return "tasks_open"
    if kind == "rate" and m.rating is not None:
        return "already_rated"
    return None


def step(m: Model, e: dict[str, Any]) -> Model:
    """One recorded event (as its raw body) on the model; an event the model would have refused is Illegal."""
    kind, role, data = e["type"], e["by_role"], e["data"]
    at = datetime.fromisoformat(e["at"])
    why = refusal(m, kind)
    if why is not None:
        raise Illegal(f"event {e['action_id']} ({kind}) recorded on a {m.status} ticket: {why}")
    nxt = TRANSITIONS[(m.status, kind)]
    status = m.status if nxt == "same" else nxt
    changes: dict[str, Any] = {"events": m.events + 1}
    staff = role != "member"
    if kind == "reply" and staff:
        if m.first_response_at is None:
            changes["first_response_at"] = at
        if m.status == "new":
            status = "open"
    if kind == "assign":
        changes["assignee"] = data["assignee"]
        if m.status == "new":
            status = "open"
    if kind == "transfer":  # the new queue's routing decided the assignee (none when nobody was there)
        changes.update(queue_id=data["queue_id"], assignee=data.get("assignee"), routed_by=data.get("routed_by"))
    if kind == "resolve":
        changes["resolved_at"] = at
    if kind == "close":
        changes["closed_at"] = at
    if kind == "reopen":
        changes["reopened"] = m.reopened + 1
    if kind == "rate":
        changes["rating"] = data["score"]
    if kind == "task_added":
        changes.update(open_tasks=m.open_tasks + 1, task_ids=(*m.task_ids, data["task_id"]))
    if kind == "task_done":
        if m.open_tasks <= 0:
            raise Illegal(f"task {data['task_id']} done with no task open")
        changes["open_tasks"] = m.open_tasks - 1
    return replace(m, status=status, **changes)


def fold(start: Model, events: list[dict[str, Any]]) -> Model:
    m = start
    for e in events:
        m = step(m, e)
    return m


# ---- reading the raw items --------------------------------------------------------------------------------
@dataclass
class StoredTicket:
    head: dict[str, Any]  # the raw head item, `body` decoded
    state: dict[str, Any]  # the head's body
    events: list[dict[str, Any]]  # the raw event items, `body` decoded, ordered by seq
    others: list[dict[str, Any]] = field(default_factory=list)  # anything else in the partition

    @property
    def bodies(self) -> list[dict[str, Any]]:
        return [e["body"] for e in self.events]

    def event(self, action_id: str) -> dict[str, Any] | None:
        found = [e["body"] for e in self.events if e["body"]["action_id"] == action_id]
        return found[0] if found else None


def read_ticket(ticket_id: str) -> StoredTicket:
    client, table = _client(), _table()
    params: dict[str, Any] = {"TableName": table, "KeyConditionExpression": "pk = :pk", "ConsistentRead": True,
                              "ExpressionAttributeValues": {":pk": {"S": f"TICKET#{ticket_id}"}}}
    items: list[dict[str, Any]] = []
    while True:
        page = client.query(**params)
        items += [decode_item(i) for i in page.get("Items", [])]
        if "LastEvaluatedKey" not in page:
            break
        params["ExclusiveStartKey"] = page["LastEvaluatedKey"]
    heads = [i for i in items if i["sk"] == "TICKET"]
    assert len(heads) == 1, f"ticket {ticket_id}: {len(heads)} heads"
    head = heads[0]
    events = sorted((dict(i, body=json.loads(i["body"])) for i in items if i["sk"].startswith("ACT#")),
                    key=lambda i: i["seq"])
    others = [i for i in items if i["sk"] != "TICKET" and not i["sk"].startswith("ACT#")]
    return StoredTicket(head=head, state=json.loads(head["body"]), events=events, others=others)


def _instant(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


def as_model(state: dict[str, Any]) -> Model:
    """The stored head's state in the model's terms."""
    return Model(status=state["status"], queue_id=state["queue_id"], assignee=state["assignee"],
                 routed_by=state["routed_by"], first_response_at=_instant(state["first_response_at"]),
                 resolved_at=_instant(state["resolved_at"]), closed_at=_instant(state["closed_at"]),
                 rating=state["rating"], reopened=state["reopened"], open_tasks=state["open_tasks"],
                 task_ids=tuple(state["task_ids"]), events=state["events"])


def audit_ticket(ticket_id: str, created: dict[str, Any]) -> StoredTicket:
    """One ticket's books: events numbered 1..n with no gap and each under its own action id, the head's
    lock `v` and `events` == n, the head == the model's fold of the events (in seq order) from the state the
    create answer gave, and the head's list keys naming its queue, status and assignee."""
    stored = read_ticket(ticket_id)
    n = len(stored.events)
    problems = []
    if [e["seq"] for e in stored.events] != list(range(1, n + 1)):
        problems.append(f"event seqs {[e['seq'] for e in stored.events]} are not 1..{n}")
    for e in stored.events:
        if e["sk"] != f"ACT#{e['body']['action_id']}":
            problems.append(f"event under {e['sk']} says it is {e['body']['action_id']}")
    if stored.head["v"] != n or stored.state["events"] != n:
        problems.append(f"head v={stored.head['v']} events={stored.state['events']} but {n} event items")
    try:
        expected = fold(Model.created(created), stored.bodies)
    except Illegal as illegal:
        problems.append(str(illegal))
    else:
        got = as_model(stored.state)
        if got != expected:
            diff = {k: (getattr(got, k), getattr(expected, k)) for k in Model.__dataclass_fields__
                    if getattr(got, k) != getattr(expected, k)}
            problems.append(f"head != fold of its events (stored, model): {diff}")
    s = stored.state
    if stored.head.get("gsi1pk") != f"TQUEUE#{s['queue_id']}#{s['status']}":
        problems.append(f"queue list key {stored.head.get('gsi1pk')} for {s['queue_id']}/{s['status']}")
    want_agent = f"TAGENT#{s['assignee']}" if s["assignee"] else None
    if stored.head.get("gsi3pk") != want_agent:
        problems.append(f"assignee list key {stored.head.get('gsi3pk')} for assignee {s['assignee']}")
    if problems:
        raise AssertionError(f"ticket {ticket_id}: " + "; ".join(problems))
    return stored


def _heads(ticket_ids: list[str] | None = None) -> list[dict[str, Any]]:
    """The bodies of the ticket heads named, or of every head in the table (a Scan)."""
    client, table = _client(), _table()
    if ticket_ids is not None:
        found: list[dict[str, Any]] = []
        for start in range(0, len(ticket_ids), 100):
            pending: dict[str, Any] = {table: {"ConsistentRead": True, "Keys": [
                {"pk": {"S": f"TICKET#{t}"}, "sk": {"S": "TICKET"}} for t in ticket_ids[start:start + 100]]}}
            while pending:
                page = client.batch_get_item(RequestItems=pending)
                found += [json.loads(decode_item(i)["body"]) for i in page.get("Responses", {}).get(table, [])]
                pending = page.get("UnprocessedKeys") or {}
        assert len(found) == len(set(ticket_ids)), "a ticket named has no head"
        return found
    params: dict[str, Any] = {"TableName": table, "ConsistentRead": True, "FilterExpression": "#ty = :t",
                              "ExpressionAttributeNames": {"#ty": "type"},
                              "ExpressionAttributeValues": {":t": {"S": "ticket"}}}
    items: list[dict[str, Any]] = []
    while True:
        page = client.scan(**params)
        items += [json.loads(decode_item(i)["body"]) for i in page.get("Items", [])]
        if "LastEvaluatedKey" not in page:
            return items
        params["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def read_agents(queue_id: str) -> dict[str, dict[str, Any]]:
    client, table = _client(), _table()
    page = client.query(TableName=table, ConsistentRead=True,
                        KeyConditionExpression="pk = :pk AND begins_with(sk, :a)",
                        ExpressionAttributeValues={":pk": {"S": f"QUEUE#{queue_id}"}, ":a": {"S": "AGENT#"}})
    assert "LastEvaluatedKey" not in page, "more agents than one page: page through them"
    return {i["sk"].removeprefix("AGENT#"): i for i in map(decode_item, page["Items"])}


def audit_agents(queue_ids: Iterable[str], ticket_ids: list[str] | None = None) -> dict[str, dict[str, int]]:
    """Every agent's `open` in each queue == the working tickets (new, open, pending) of that queue assigned to
    them; a ticket assigned in a queue to someone who is not its agent is a finding. The tickets read: every
    head in the table (a Scan), or, when the caller knows every ticket that ever entered these queues (fresh
    queues of its own), just `ticket_ids`. Returns {queue: {agent: open}}."""
    wanted = set(queue_ids)
    busy: dict[str, dict[str, int]] = {q: {} for q in wanted}
    for t in _heads(ticket_ids):
        if t["queue_id"] in wanted and t["assignee"] and t["status"] in WORKING:
            per = busy[t["queue_id"]]
            per[t["assignee"]] = per.get(t["assignee"], 0) + 1
    problems, out = [], {}
    for q in sorted(wanted):
        agents = read_agents(q)
        out[q] = {sub: a.get("open", 0) for sub, a in agents.items()}
        for sub in set(agents) | set(busy[q]):
            if sub not in agents:
                problems.append(f"{q}: {busy[q][sub]} tickets assigned to {sub}, who is not its agent")
            elif agents[sub].get("open", 0) != busy[q].get(sub, 0):
                problems.append(f"{q}/{sub}: open {agents[sub].get('open', 0)} but {busy[q].get(sub, 0)} "
                                "working tickets")
    if problems:
        raise AssertionError("; ".join(problems))
    return out
