"""Daily (00:10 Asia/Shanghai): expire the lots whose last valid day has passed, found through the sparse
expiry index (no scan), one expiry ledger entry per lot; then write the "points expiring in N days" facts.

The event may carry {"date": "YYYY-MM-DD"} to run as of that business day (re-running a missed night)."""
from __future__ import annotations

from datetime import date
from typing import Any

from chalicelib import bootstrap
from chalicelib.domain import clock
from chalicelib.observability import logger, metrics
from chalicelib.services.expiry import expire_due


@logger.inject_lambda_context
@metrics.log_metrics
def handler(event: dict[str, Any], context: Any) -> dict[str, int]:
    today = date.fromisoformat(event["date"]) if event.get("date") else clock.business_day(clock.now())
    result = expire_due(bootstrap.ledger(), today)
    metrics.add_metric(name="PointsExpiryRunSucceeded", unit="Count", value=1)
    logger.info("points expiry finished", extra={**result, "as_of": today.isoformat()})
    return result
