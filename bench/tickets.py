"""What service tickets cost: requests and capacity per create, per action, per read and list page, per task."""
from __future__ import annotations

import random
import uuid
from datetime import date, timedelta
from typing import Any

from chalicelib import bootstrap
from chalicelib.domain import clock
from chalicelib.domain.access import Principal, Role
from chalicelib.domain.tasks import CompleteInput, TaskInput
from chalicelib.domain.ticket_stats import SHARDS, StatRow, histogram
from chalicelib.domain.tickets import ActionInput, TicketInput, TicketType
from chalicelib.services import tasks, ticket_actions, ticket_queues, ticket_stats, tickets
from chalicelib.store.tickets import add_stats

from .dynamo import CLERK, HQ, MANAGER, REGION_MANAGER, STORE, Scenario

AGENTS = [Principal(sub=f"bench-agent-{n}", role=Role.STAFF, store_ids=frozenset({STORE})) for n in range(2)]
LIST_PAGE = 20


def _ids(prefix: str, n: int) -> list[str]:
    return [f"{prefix}-{uuid.uuid4().hex[:12]}" for _ in range(n)]


def _agents_available() -> None:
    for agent in AGENTS:
        ticket_queues.set_availability(f"store-{STORE}", True, agent, bootstrap.tickets(), bootstrap.stores())


def _input(ticket_id: str) -> TicketInput:
    return TicketInput(ticket_id=ticket_id, channel="store", type="complaint", subject="奶茶太甜",
                       description="点了三分糖，喝起来是全糖。" * 20, store_id=STORE)


def _open(ticket_id: str) -> str:
    ticket, created = tickets.open_ticket(_input(ticket_id), CLERK, bootstrap.tickets(), bootstrap.ledger(),
                                          bootstrap.stores(), bootstrap.calendars())
    if not created or ticket.assignee is None:
        raise RuntimeError("expected a new ticket, assigned")
    return ticket.ticket_id


def _tickets(n: int) -> list[str]:
    _agents_available()
    return [_open(t) for t in _ids("bt", n)]


def _act(ticket_id: str, actor: Principal, **body: Any) -> None:
    _, _, created = ticket_actions.act(ticket_id, ActionInput(action_id=uuid.uuid4().hex[:16], **body), actor,
                                       bootstrap.tickets(), bootstrap.ledger(), bootstrap.stores(), lambda ids: [],
                                       bootstrap.calendars())
    if not created:
        raise RuntimeError("the action was not recorded")


def _with_events(n: int) -> list[str]:
    out = _tickets(n)
    for ticket_id in out:
        for k in range(2):
            _act(ticket_id, AGENTS[0], type="comment", body=f"内部备注 {k}")
        _act(ticket_id, AGENTS[0], type="reply", body="您好，我们马上处理")
    return out


def _with_tasks(n: int) -> list[str]:
    out = []
    for ticket_id in _tickets(n):
        task_id = _ids("btask", 1)[0]
        ticket_actions.add_task(ticket_id, TaskInput(task_id=task_id, store_id="sh-002", title="收货并交给顾客",
                                                     due_at=clock.now() + timedelta(days=1)),
                                AGENTS[0], bootstrap.tickets(), bootstrap.ledger(), bootstrap.stores())
        out.append(task_id)
    return out


def _queue_page(n: int) -> list[None]:
    _tickets(LIST_PAGE)
    return [None] * n


def _list_queue(_: None) -> None:
    page, _ = tickets.list_tickets(MANAGER, bootstrap.tickets(), bootstrap.stores(), queue_id=f"store-{STORE}",
                                   store_id=None, assignee=None, status="new", cursor=None, limit=LIST_PAGE)
    if len(page) < LIST_PAGE:
        raise RuntimeError("expected a full page")


def _list_mine(_: None) -> None:
    page, _ = tickets.list_tickets(AGENTS[0], bootstrap.tickets(), bootstrap.stores(), queue_id=None, store_id=None,
                                   assignee="me", status="new", cursor=None, limit=LIST_PAGE)
    if len(page) < LIST_PAGE:
        raise RuntimeError("expected a full page")


def _complete(task_id: str) -> None:
    clerk_b = Principal(sub="bench-clerk-b", role=Role.STAFF, store_ids=frozenset({"sh-002"}))
    _, created = tasks.complete(task_id, CompleteInput(outcome="done"), clerk_b, bootstrap.tickets(),
                                bootstrap.stores())
    if not created:
        raise RuntimeError("the task was not completed")


# The numbers HQ reads: STATS_DAYS days of day rollups for STATS_STORES stores (half in the region manager's
# region) and for every ticket type, on days long past that nothing else writes.
STATS_STORES = 100
STATS_DAYS = 30
STATS_FIRST = date(2019, 1, 1)
STATS_LAST = STATS_FIRST + timedelta(days=STATS_DAYS - 1)
STATS_TICKETS = 20  # a store's tickets a day (first responses, decisions, ratings alike)
_stats_seeded: list[bool] = []


def _day_counts(rng: random.Random, n: int) -> dict[str, int]:
    """A day of n tickets: their first-response waits (a few minutes to some hours) in the histogram's buckets,
    most met, a few breached, two in three rated."""
    waits = [int(rng.lognormvariate(7, 1.2)) for _ in range(n)]
    counts = {f"frh{k}": c for k, c in histogram(waits).items()}
    met = sum(w <= 1800 for w in waits)
    rated = 2 * n // 3
    return {"opened": n, **counts, "fr_met": met, "fr_breached": n - met, "res_met": n - n // 10,
            "res_breached": n // 10, "rate_sum": 4 * rated, "rate_n": rated}


def _seed_stats() -> None:
    """Written once, straight as rollup items (25 per transaction), as ticket changes would have added them."""
    if _stats_seeded:
        return
    rng = random.Random(14)
    rows = []
    for d in range(STATS_DAYS):
        day = STATS_FIRST + timedelta(days=d)
        for n in range(STATS_STORES):
            region = REGION_MANAGER.region_id if n % 2 else "south"
            rows.append(StatRow("store", f"bench-stats-{n:03d}", day, None, _day_counts(rng, STATS_TICKETS), region))
        per_shard = STATS_STORES * STATS_TICKETS // len(TicketType) // SHARDS
        rows += [StatRow("type", kind.value, day, shard, _day_counts(rng, per_shard))
                 for kind in TicketType for shard in range(SHARDS)]
    db = bootstrap.db()
    for k in range(0, len(rows), 25):
        tx = db.tx()
        add_stats(tx, rows[k:k + 25])
        db.commit(tx)
    _stats_seeded.append(True)


def _stats_queries(n: int) -> list[None]:
    _seed_stats()
    return [None] * n


def _read_stats(group_by: str, actor: Any, groups: int) -> None:
    found = ticket_stats.stats(STATS_FIRST, STATS_LAST, group_by, actor, bootstrap.tickets())
    if len(found) != groups or any(g.opened == 0 or g.first_response_median_seconds is None for g in found):
        raise RuntimeError(f"stats by {group_by}: {len(found)} groups, expected {groups}")


def _resolve(ticket_id: str) -> None:
    _act(ticket_id, AGENTS[0], type="resolve")


SCENARIOS = [
    Scenario("ticket: open (store queue, 2 agents, round robin)",
             lambda n: (_agents_available(), _ids("bt", n))[1], _open),
    Scenario("ticket: reply (public)", _tickets, lambda t: _act(t, AGENTS[0], type="reply", body="您好")),
    Scenario("ticket: assign (moves two agents' open counts)", _tickets,
             lambda t: _act(t, MANAGER, type="assign", assignee=AGENTS[1].sub)),
    Scenario("ticket: transfer (re-routed, new agent chosen)", _tickets,
             lambda t: _act(t, MANAGER, type="transfer", queue_id="store-sh-002")),
    Scenario("ticket: read one, staff (3 events)", _with_events,
             lambda t: tickets.details(t, HQ, bootstrap.tickets(), bootstrap.ledger(), bootstrap.stores())),
    Scenario(f"ticket list: a queue's page of {LIST_PAGE} (gsi1)", _queue_page, _list_queue),
    Scenario(f"ticket list: my assigned, page of {LIST_PAGE} (gsi3 + heads)", _queue_page, _list_mine),
    Scenario("task: complete (with its ticket's event)", _with_tasks, _complete),
    Scenario("ticket: comment (adds to no rollup)", _tickets,
             lambda t: _act(t, AGENTS[0], type="comment", body="内部备注")),
    Scenario("ticket: resolve before any reply (both clocks decided: 4 rollup items)", _tickets, _resolve),
    Scenario(f"ticket stats: {STATS_DAYS} days by store, {STATS_STORES} stores, HQ ({STATS_DAYS * STATS_STORES:,} "
             "items)", _stats_queries, lambda _: _read_stats("store", HQ, STATS_STORES)),
    Scenario(f"ticket stats: {STATS_DAYS} days by store, region manager (same items, half kept)", _stats_queries,
             lambda _: _read_stats("store", REGION_MANAGER, STATS_STORES // 2)),
    Scenario(f"ticket stats: {STATS_DAYS} days by type ({STATS_DAYS * len(TicketType) * SHARDS} shard items)",
             _stats_queries, lambda _: _read_stats("type", HQ, len(TicketType))),
]
