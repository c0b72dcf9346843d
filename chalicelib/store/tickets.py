"""Tickets, their events, queues, agents, routing rules and the store task list in DynamoDB.

Every change to a ticket is one transaction: the head put on the event count it was derived from (the
optimistic lock), the event put where its action id is free (the dedupe), the agents' open counts moved
with it, and any task written with it. So an action is recorded once or not at all, and the head always
equals the fold of its events."""
from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import asdict, replace
from datetime import date, datetime
from typing import Any

from ..domain import clock
from ..domain.errors import DocumentExists, StaleRead
from ..domain.sla import SLA_SHARDS, Notification, sla_from, sla_shard
from ..domain.tasks import Task, TaskExists, TaskNotOpen, TaskState
from ..domain.ticket_stats import StatRow
from ..domain.tickets import (
    ActionType,
    AgentClaim,
    AgentRecord,
    Channel,
    Event,
    Priority,
    QueueRecord,
    RoutingRule,
    Status,
    Ticket,
    TicketType,
    load_changes,
)
from . import keys
from .db import Db, Tx, TxCancelled, decode_cursor, encode_cursor


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)


# ---- (de)serialising the ticket ------------------------------------------------------------------------------
def ticket_body(t: Ticket) -> dict[str, Any]:
    out = asdict(t)
    for name in ("created_at", "first_response_at", "resolved_at", "closed_at"):
        out[name] = clock.iso(out[name]) if out[name] else None
    out["task_ids"] = list(t.task_ids)
    return {k: (v.value if hasattr(v, "value") else v) for k, v in out.items()}


def ticket_from(body: dict[str, Any]) -> Ticket:
    data = dict(body)
    for name in ("created_at", "first_response_at", "resolved_at", "closed_at"):
        data[name] = datetime.fromisoformat(data[name]) if data.get(name) else None
    data.update(channel=Channel(data["channel"]), type=TicketType(data["type"]), priority=Priority(data["priority"]),
                status=Status(data["status"]), task_ids=tuple(data.get("task_ids") or ()))
    return Ticket(**data)


SLA_NO_STEP = "~"  # the due index's sort key of a breached open ticket with no step left (after any ISO time)


def head_item(t: Ticket, fingerprint: str) -> dict[str, Any]:
    """The head as stored, with its list and due-index keys (the bench seeds tickets with it)."""
    item = {**keys.ticket_key(t.ticket_id), "type": "ticket", "v": t.events, "w": t.writes,
            "fingerprint": fingerprint, "body": _json(ticket_body(t)),
            **keys.ticket_list_keys(t.queue_id, t.store_id, t.assignee, t.status.value, clock.iso(t.created_at),
                                    t.ticket_id)}
    if t.sla is not None:
        sla = sla_from(t.sla)
        due = sla.next_check()
        if due is not None:
            item |= keys.ticket_sla_keys(sla.stage, sla_shard(t.ticket_id), clock.iso(due), t.ticket_id)
        elif sla.stage == "breached" and t.status not in (Status.RESOLVED, Status.CLOSED):
            # Every step taken (HQ told) and still open: still on the breached list, after every due time so
            # the sweep's `<= now` never reads it again.
            item |= keys.ticket_sla_keys(sla.stage, sla_shard(t.ticket_id), SLA_NO_STEP, t.ticket_id)
    return item


def _event_item(ticket_id: str, event: Event, seq: int, fingerprint: str | None) -> dict[str, Any]:
    return {**keys.ticket_event_key(ticket_id, event.action_id), "type": "ticket_event", "seq": seq,
            "fingerprint": fingerprint,
            "body": _json({"action_id": event.action_id, "type": event.type.value, "by": event.by,
                           "by_role": event.by_role, "at": clock.iso(event.at), "data": event.data})}


def event_from(item: dict[str, Any]) -> tuple[int, Event]:
    body = json.loads(item["body"])
    return item["seq"], Event(action_id=body["action_id"], type=ActionType(body["type"]), by=body["by"],
                              by_role=body["by_role"], at=datetime.fromisoformat(body["at"]), data=body["data"])


def _task_item(task: Task) -> dict[str, Any]:
    return {**keys.task_key(task.task_id), "type": "task", "state": task.state.value,
            "body": _json(task.model_dump(mode="json")),
            **keys.task_list_keys(task.store_id, task.state.value, clock.iso(task.due_at), task.task_id)}


def task_from(item: dict[str, Any]) -> Task:
    return Task.model_validate_json(item["body"])


def add_stats(tx: Tx, stats: Sequence[StatRow]) -> None:
    """ADD each row's counters to its day item (created by the first ADD; the bench seeds rows with it); a store
    row also SETs the store's region, so a region's store rows are found without reading the stores."""
    for row in stats:
        names = {f"#c{i}": name for i, name in enumerate(row.counts)}
        values: dict[str, Any] = {f":c{i}": n for i, n in enumerate(row.counts.values())}
        sets = "SET #type = :type"
        names["#type"], values[":type"] = "type", "ticket_stats"
        if row.region is not None:
            sets += ", #region = :region"
            names["#region"], values[":region"] = "region", row.region
        tx.update(keys.ticket_stats_key(row.dim, row.day, row.value, row.shard),
                  f"{sets} ADD " + ", ".join(f"#c{i} :c{i}" for i in range(len(row.counts))), names=names,
                  values=values)


class DynamoTicketRepository:
    def __init__(self, db: Db) -> None:
        self.db = db

    # ---- tickets ---------------------------------------------------------------------------------------
    def get(self, ticket_id: str) -> tuple[Ticket, str] | None:
        item = self.db.get(keys.ticket_key(ticket_id))
        return (ticket_from(json.loads(item["body"])), item["fingerprint"]) if item else None

    def get_with_events(self, ticket_id: str) -> tuple[Ticket, str, str, list[Event]] | None:
        """Head, description and events (in the order they were recorded) in one query."""
        items = list(self.db.query_all(KeyConditionExpression="pk = :pk",
                                       values={":pk": keys.ticket_key(ticket_id)["pk"]}, ConsistentRead=True))
        head = next((i for i in items if i["sk"] == "TICKET"), None)
        if head is None:
            return None
        desc = next((i["text"] for i in items if i["sk"] == "DESC"), "")
        events = sorted((event_from(i) for i in items if i["sk"].startswith(keys.TICKET_EVENT_PREFIX)),
                        key=lambda pair: pair[0])
        return ticket_from(json.loads(head["body"])), head["fingerprint"], desc, [e for _, e in events]

    def get_event(self, ticket_id: str, action_id: str) -> tuple[Event, str | None] | None:
        item = self.db.get(keys.ticket_event_key(ticket_id, action_id))
        return (event_from(item)[1], item.get("fingerprint")) if item else None

    def create(self, ticket: Ticket, description: str, fingerprint: str, claim: AgentClaim | None,
               stats: Sequence[StatRow] = ()) -> None:
        """Head, description, the member's pointer, the chosen agent's claim and the day rollups, together."""
        tx = self.db.tx()
        tx.put(head_item(ticket, fingerprint), condition="attribute_not_exists(pk)")
        tx.put({"pk": keys.ticket_key(ticket.ticket_id)["pk"], "sk": "DESC", "type": "ticket_desc",
                "text": description})
        if ticket.member_id:
            tx.put({**keys.member_ticket_key(ticket.member_id, clock.iso(ticket.created_at), ticket.ticket_id),
                    "type": "ticket_ref", "ticket_id": ticket.ticket_id})
        self._agents(tx, None, ticket, claim)
        add_stats(tx, stats)
        try:
            self.db.commit(tx)
        except TxCancelled as cancelled:
            if cancelled.failed_at(0):
                raise DocumentExists("ticket") from None
            raise StaleRead() from None

    def record(self, before: Ticket, after: Ticket, event: Event, fingerprint: str | None, *, created_print: str,
               claim: AgentClaim | None = None, task: Task | None = None, task_done: Task | None = None,
               stats: Sequence[StatRow] = ()) -> None:
        """One event: the head on the count it was derived from, the event where its id is free, the open
        counts, a task added (where its id is free) or done (while it is open), and what the event adds to the
        day rollups (counted with the event: a replay, refused by the event's key, adds nothing).
        `created_print`: the create request's fingerprint, which the head keeps."""
        tx = self.db.tx()
        after = replace(after, writes=before.writes + 1)
        tx.put(head_item(after, created_print), condition="w = :w", values={":w": before.writes})
        tx.put(_event_item(after.ticket_id, event, after.events, fingerprint), condition="attribute_not_exists(pk)")
        task_at = None
        if task is not None:
            task_at = tx.put(_task_item(task), condition="attribute_not_exists(pk)")
        if task_done is not None:
            task_at = tx.put(_task_item(task_done), condition="#s = :open", names={"#s": "state"},
                             values={":open": TaskState.OPEN.value})
        self._agents(tx, before, after, claim)
        add_stats(tx, stats)
        try:
            self.db.commit(tx)
        except TxCancelled as cancelled:
            if cancelled.failed_at(1):
                raise DocumentExists("ticket") from None
            if task_at is not None and cancelled.failed_at(task_at):
                raise (TaskExists() if task is not None else TaskNotOpen()) from None
            raise StaleRead() from None

    @staticmethod
    def _agents(tx: Tx, before: Ticket | None, after: Ticket, claim: AgentClaim | None) -> None:
        changes = load_changes(before, after)
        if claim is not None:
            key = (claim.queue_id, claim.sub)
            delta = changes.pop(key, 0)
            condition = "available = :t AND " + ("last_assigned_at = :prev" if claim.last_assigned_at
                                                 else "attribute_not_exists(last_assigned_at)")
            values: dict[str, Any] = {":t": True, ":at": claim.at, ":d": delta}
            if claim.last_assigned_at:
                values[":prev"] = claim.last_assigned_at
            tx.update(keys.agent_key(*key), "SET last_assigned_at = :at ADD #o :d", condition=condition,
                      names={"#o": "open"}, values=values)
        for (queue_id, sub), delta in sorted(changes.items()):
            tx.update(keys.agent_key(queue_id, sub), "ADD #o :d", names={"#o": "open"}, values={":d": delta})

    # ---- ticket numbers ------------------------------------------------------------------------------------
    def stat_rows(self, dim: str, first: date, last: date) -> list[dict[str, Any]]:
        """A dimension's day rollups first..last, each with its `day` and group `value`: one Query (paged
        through), eventually consistent (a change just recorded may be missing for a moment)."""
        lo, hi = keys.ticket_stats_range(first, last)
        items = self.db.query_all(KeyConditionExpression="pk = :pk AND sk BETWEEN :lo AND :hi",
                                  values={":pk": keys.ticket_stats_pk(dim), ":lo": lo, ":hi": hi})
        return [{**i, **dict(zip(("day", "value"), keys.ticket_stats_parts(i["sk"]), strict=True))} for i in items]

    # ---- lists ---------------------------------------------------------------------------------------------
    def by_queue(self, queue_id: str, status: str, cursor: str | None, limit: int) -> tuple[list[Ticket], str | None]:
        return self._index_page(keys.GSI_LOOKUP, "gsi1pk", keys.ticket_queue_list(queue_id, status), cursor, limit)

    def by_store(self, store_id: str, status: str, cursor: str | None, limit: int) -> tuple[list[Ticket], str | None]:
        return self._index_page(keys.GSI_LISTS, "gsi4pk", keys.ticket_store_list(store_id, status), cursor, limit)

    def _index_page(self, index: str, attr: str, pk: str, cursor: str | None,
                    limit: int) -> tuple[list[Ticket], str | None]:
        start = decode_cursor(cursor, expect={attr: pk})
        items, last = self.db.query(IndexName=index, KeyConditionExpression=f"{attr} = :pk", values={":pk": pk},
                                    Limit=limit, start=start)
        return [ticket_from(json.loads(i["body"])) for i in items], encode_cursor(last)

    def by_assignee(self, sub: str, status: str | None, cursor: str | None,
                    limit: int) -> tuple[list[Ticket], str | None]:
        pk = keys.ticket_assignee_list(sub)
        start = decode_cursor(cursor, expect={"gsi3pk": pk})
        condition, values = "gsi3pk = :pk", {":pk": pk}
        if status:
            condition += " AND begins_with(gsi3sk, :s)"
            values[":s"] = f"{status}#"
        refs, last = self.db.query(IndexName=keys.GSI_HISTORY, KeyConditionExpression=condition, values=values,
                                   Limit=limit, start=start)
        return self._heads([r["pk"] for r in refs]), encode_cursor(last)

    def by_member(self, member_ids: list[str], cursor: str | None, limit: int) -> tuple[list[Ticket], str | None]:
        """The tickets of a live member and of the members merged into it (their pointers stay where they were
        written: a member holds few tickets, so each partition's are read whole), newest first."""
        live = member_ids[0]
        start = decode_cursor(cursor, expect={"m": live})
        refs = [r for member_id in member_ids for r in self.db.query_all(
            KeyConditionExpression="pk = :pk AND begins_with(sk, :p)",
            values={":pk": keys.member_pk(member_id), ":p": keys.MEMBER_TICKET_PREFIX})]
        refs.sort(key=lambda r: r["sk"], reverse=True)
        if start is not None:
            refs = [r for r in refs if r["sk"] < start.get("sk", "")]
        page = refs[:limit]
        more = len(refs) > limit
        next_cursor = encode_cursor({"m": live, "sk": page[-1]["sk"]}) if more else None
        return self._heads([keys.ticket_key(r["ticket_id"])["pk"] for r in page]), next_cursor

    # ---- the SLA sweep and notifications --------------------------------------------------------------------
    def sla_due(self, stage: str, shard: int, now: datetime) -> Iterator[str]:
        """Tickets of a stage whose next escalation step is due by now, page by page (the sweep's work; no scan)."""
        for item in self.db.query_all(IndexName=keys.GSI_WORK,
                                      KeyConditionExpression="gsi2pk = :pk AND gsi2sk <= :now",
                                      values={":pk": keys.ticket_sla_pk(stage, shard), ":now": f"{clock.iso(now)}#~"},
                                      ProjectionExpression="pk"):
            yield item["pk"].removeprefix(keys.TICKET_PREFIX)

    def sla_page(self, stage: str, cursor: str | None, limit: int) -> tuple[list[Ticket], str | None]:
        """A stage's tickets (at risk, breached), soonest next step first within each shard; the cursor walks the
        shards in turn."""
        state = decode_cursor(cursor, expect={"stage": stage}) if cursor else {"stage": stage, "shard": "0"}
        shard = int(state.get("shard", "0")) if str(state.get("shard", "0")).isdigit() else 0
        start = {k: v for k, v in state.items() if k not in ("stage", "shard")} or None
        out: list[Ticket] = []
        while shard < SLA_SHARDS and len(out) < limit:
            pk = keys.ticket_sla_pk(stage, shard)
            if start is not None and start.get("gsi2pk") != pk:
                start = None
            items, last = self.db.query(IndexName=keys.GSI_WORK, KeyConditionExpression="gsi2pk = :pk",
                                        values={":pk": pk}, Limit=limit - len(out), start=start)
            out += [ticket_from(json.loads(i["body"])) for i in items]
            if last:
                return out, encode_cursor({"stage": stage, "shard": str(shard), **last})
            shard, start = shard + 1, None
        more = shard < SLA_SHARDS
        return out, encode_cursor({"stage": stage, "shard": str(shard)}) if more else None

    def escalate(self, before: Ticket, after: Ticket, created_print: str, notes: list[Notification]) -> None:
        """The head with its steps taken, and their notifications, at once: a notification already there (a
        re-run) cancels the whole write, and the caller reads again."""
        tx = self.db.tx()
        after = replace(after, writes=before.writes + 1)
        tx.put(head_item(after, created_print), condition="w = :w", values={":w": before.writes})
        for note in notes:
            tx.put({**keys.notification_key(note.recipient, note.due_at, note.ticket_id, note.step),
                    "type": "notification", **asdict(note)}, condition="attribute_not_exists(pk)")
        try:
            self.db.commit(tx)
        except TxCancelled as cancelled:
            if cancelled.failed_at(0):
                raise StaleRead() from None
            raise DocumentExists("notification") from None

    def notifications(self, recipients: list[str], limit: int) -> list[Notification]:
        """The newest notifications of each addressee key, merged newest first."""
        found: list[dict[str, Any]] = []
        for recipient in recipients:
            items, _ = self.db.query(KeyConditionExpression="pk = :pk AND begins_with(sk, :n)",
                                     values={":pk": keys.notifications_pk(recipient), ":n": "N#"},
                                     ScanIndexForward=False, Limit=limit)
            found += items
        found.sort(key=lambda i: i["sk"], reverse=True)
        fields = set(Notification.__dataclass_fields__)
        return [Notification(**{k: v for k, v in i.items() if k in fields}) for i in found[:limit]]

    def read_marks(self, sub: str, ids: list[str]) -> set[str]:
        marks = self.db.batch_get([keys.notification_read_key(sub, i) for i in ids[:100]],
                                  lambda item: item["sk"].removeprefix("READ#"))
        return set(marks)

    def mark_read(self, sub: str, ids: list[str]) -> None:
        for i in ids:
            self.db.put({**keys.notification_read_key(sub, i), "type": "notification_read",
                         "at": clock.iso(clock.now())})

    def sla_policy(self) -> dict[str, Any] | None:
        item = self.db.get(keys.sla_policy_key(), consistent=False)
        return json.loads(item["body"]) if item else None

    def put_sla_policy(self, body: dict[str, Any], expected_version: int, actor: str) -> None:
        self._put_versioned(keys.sla_policy_key(), "sla_policy", _json(body), expected_version, actor)

    def _put_versioned(self, key: dict[str, str], kind: str, body: str, expected_version: int, actor: str) -> None:
        """A configuration item replaced on the version it was read at (0: must not exist yet); a version
        changed meanwhile is a StaleRead."""
        item = {**key, "type": kind, "version": expected_version + 1, "body": body, "updated_by": actor,
                "updated_at": clock.iso(clock.now())}
        tx = self.db.tx()
        if expected_version:
            tx.put(item, condition="version = :v", values={":v": expected_version})
        else:
            tx.put(item, condition="attribute_not_exists(pk)")
        try:
            self.db.commit(tx)
        except TxCancelled:
            raise StaleRead() from None

    def _heads(self, pks: list[str]) -> list[Ticket]:
        found = {t.ticket_id: t for t in self.db.batch_get([{"pk": pk, "sk": "TICKET"} for pk in pks],
                                                           lambda i: ticket_from(json.loads(i["body"])))}
        order = [pk.removeprefix(keys.TICKET_PREFIX) for pk in pks]
        return [found[t] for t in order if t in found]

    # ---- queues, agents, routing rules ---------------------------------------------------------------------
    def get_queue(self, queue_id: str) -> QueueRecord | None:
        item = self.db.get(keys.queue_key(queue_id), consistent=False)
        if item is None:
            return None
        return QueueRecord(queue_id=queue_id, kind=item["kind"], name=item["name"], store_id=item.get("store_id"),
                           region_id=item.get("region_id"))

    def put_queue(self, queue: QueueRecord, actor: str) -> bool:
        """Create or replace; True when it was new."""
        existed = self.db.get(keys.queue_key(queue.queue_id)) is not None
        self.db.put({**keys.queue_key(queue.queue_id), "type": "queue", "kind": queue.kind, "name": queue.name,
                     "store_id": queue.store_id, "region_id": queue.region_id, "updated_by": actor,
                     "updated_at": clock.iso(clock.now())})
        return not existed

    def agents(self, queue_id: str) -> list[AgentRecord]:
        items = self.db.query_all(KeyConditionExpression="pk = :pk AND begins_with(sk, :p)",
                                  values={":pk": f"QUEUE#{queue_id}", ":p": "AGENT#"}, ConsistentRead=True)
        return [AgentRecord(queue_id=queue_id, sub=i["sk"].removeprefix("AGENT#"), available=bool(i.get("available")),
                            open=i.get("open", 0), last_assigned_at=i.get("last_assigned_at")) for i in items]

    def get_agent(self, queue_id: str, sub: str) -> AgentRecord | None:
        i = self.db.get(keys.agent_key(queue_id, sub))
        if i is None or "available" not in i:
            return None
        return AgentRecord(queue_id=queue_id, sub=sub, available=bool(i["available"]), open=i.get("open", 0),
                           last_assigned_at=i.get("last_assigned_at"))

    def set_available(self, queue_id: str, sub: str, available: bool) -> AgentRecord:
        item = self.db.update(keys.agent_key(queue_id, sub), "SET available = :a, since = :now, #t = :type "
                              "ADD #o :zero", names={"#o": "open", "#t": "type"},
                              values={":a": available, ":now": clock.iso(clock.now()), ":zero": 0,
                                      ":type": "agent"})
        assert item is not None  # no condition: the update always applies
        return AgentRecord(queue_id=queue_id, sub=sub, available=available, open=item.get("open", 0),
                           last_assigned_at=item.get("last_assigned_at"))

    def routing_rules(self) -> tuple[list[RoutingRule], int]:
        item = self.db.get(keys.routing_rules_key(), consistent=False)
        if item is None:
            return [], 0
        return [RoutingRule.model_validate(r) for r in json.loads(item["body"])], item["version"]

    def put_routing_rules(self, rules: list[RoutingRule], expected_version: int, actor: str) -> None:
        self._put_versioned(keys.routing_rules_key(), "routing_rules",
                            _json([r.model_dump(mode="json") for r in rules]), expected_version, actor)

    # ---- tasks -----------------------------------------------------------------------------------------
    def get_task(self, task_id: str) -> Task | None:
        item = self.db.get(keys.task_key(task_id))
        return task_from(item) if item else None

    def assign_task(self, task: Task, assignee: str) -> Task | None:
        """On the state read: None when the task was done meanwhile."""
        changed = task.model_copy(update={"assignee": assignee})
        item = self.db.update(keys.task_key(task.task_id), "SET body = :b", condition="#s = :open",
                              names={"#s": "state"},
                              values={":b": _json(changed.model_dump(mode="json")), ":open": TaskState.OPEN.value})
        return changed if item is not None else None

    def store_tasks(self, store_id: str, state: str, due_before: str | None, cursor: str | None,
                    limit: int) -> tuple[list[Task], str | None]:
        pk = keys.task_store_list(store_id, state)
        start = decode_cursor(cursor, expect={"gsi1pk": pk})
        condition, values = "gsi1pk = :pk", {":pk": pk}
        if due_before:
            condition += " AND gsi1sk < :before"
            values[":before"] = due_before
        items, last = self.db.query(IndexName=keys.GSI_LOOKUP, KeyConditionExpression=condition, values=values,
                                    Limit=limit, start=start)
        return [task_from(i) for i in items], encode_cursor(last)

    def tasks(self, task_ids: list[str]) -> list[Task]:
        found = {t.task_id: t for t in self.db.batch_get([keys.task_key(t) for t in task_ids], task_from)}
        return [found[t] for t in task_ids if t in found]
