"""What the SLA sweep costs: one run over many open tickets, some due (requests, units, local wall time)."""
from __future__ import annotations

import time
import uuid
from datetime import timedelta
from typing import Any

from chalicelib import bootstrap
from chalicelib.domain import clock
from chalicelib.domain.sla import ALWAYS, SlaPolicy, open_sla, sla_body
from chalicelib.domain.tickets import Channel, Priority, Ticket, TicketType
from chalicelib.observability import logger
from chalicelib.services.sla_escalation import sweep
from chalicelib.store.db import to_item
from chalicelib.store.tickets import head_item

from .capacity import CapacityMeter, Usage

OPEN_TICKETS = 10_000
DUE_SHARE = 10  # percent of them with a step due at the run


def _seed(n: int, due: int) -> None:
    """n open tickets of one store, written straight as heads (25 per BatchWriteItem): `due` of them opened
    25 minutes before the run (their first response is at risk: 22.5 of 30 minutes), the rest a minute before."""
    client, table = bootstrap.dynamodb_client(), bootstrap.settings().table_name
    now = clock.now()
    batch: list[dict[str, Any]] = []
    for k in range(n):
        opened = now - timedelta(minutes=25 if k < due else 1)
        ticket = Ticket(ticket_id=f"bs-{uuid.uuid4().hex[:16]}", channel=Channel.HOTLINE, type=TicketType.SERVICE,
                        subject="排队太久", description="", store_id="sh-001", member_id=None, order_id=None,
                        queue_id="store-sh-001", priority=Priority.NORMAL, created_at=clock.to_ms(opened),
                        created_by="bench")
        ticket = ticket.evolve(sla=sla_body(open_sla(SlaPolicy(), ticket, lambda _: ALWAYS)))
        batch.append({"PutRequest": {"Item": to_item(head_item(ticket, "bench"))}})
        if len(batch) == 25 or k == n - 1:
            request = {table: batch}
            while request:
                request = client.batch_write_item(RequestItems=request).get("UnprocessedItems") or {}
            batch = []


def measure(n: int = OPEN_TICKETS, due_share: int = DUE_SHARE) -> list[tuple[str, Usage, float, dict[str, int]]]:
    """A run that escalates the due tickets, then a re-run that finds nothing new."""
    due = n * due_share // 100
    _seed(n, due)
    rows = []
    with CapacityMeter(bootstrap.dynamodb_client()) as meter:
        for label in (f"run over {n:,} open tickets, {due:,} due", "re-run at once (nothing new due)"):
            meter.take()
            start = time.perf_counter()
            result = sweep(clock.now(), bootstrap.tickets(), bootstrap.stores(), logger).as_dict()
            rows.append((label, meter.take(), time.perf_counter() - start, result))
    return rows
