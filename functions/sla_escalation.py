"""Every 5 minutes: tickets whose next SLA step has come (found through the due index, no scan) are
escalated once per step: at risk -> the assignee (or the queue's agents); first response breached -> the
store's managers; resolution breached -> the region's manager, then HQ. Escalation notifies; it never moves
a ticket.

The event may carry {"now": "<ISO 8601 with offset>"} to run as of that instant (tests, a catch-up)."""
from __future__ import annotations

from datetime import datetime
from typing import Any

from chalicelib import bootstrap
from chalicelib.domain import clock
from chalicelib.observability import logger, metrics
from chalicelib.services.sla_escalation import sweep


@logger.inject_lambda_context
@metrics.log_metrics
def handler(event: dict[str, Any], context: Any) -> dict[str, int]:
    now = datetime.fromisoformat(event["now"]) if event.get("now") else clock.now()
    result = sweep(now, bootstrap.tickets(), bootstrap.stores(), logger).as_dict()
    metrics.add_metric(name="SlaStepsEscalated", unit="Count", value=result["escalated"])
    metrics.add_metric(name="SlaEscalationFailures", unit="Count", value=result["failed"])
    metrics.add_metric(name="SlaEscalationRunSucceeded", unit="Count", value=1)
    logger.info("sla escalation finished", extra={**result, "as_of": clock.iso(now)})
    return result
