"""Monthly (1st, 03:00 Asia/Shanghai): tier re-evaluation. Members above the lowest tier whose rolling
12-month progress no longer holds their tier drop one level; the rest are confirmed; members who will drop
at the next review get a "tier_will_downgrade" fact with the amount missing.

The event may carry {"date": "YYYY-MM-DD"} to run as of that business day."""
from __future__ import annotations

from datetime import date
from typing import Any

from chalicelib import bootstrap
from chalicelib.domain import clock
from chalicelib.observability import logger, metrics
from chalicelib.services.tiers import review_tiers


@logger.inject_lambda_context
@metrics.log_metrics
def handler(event: dict[str, Any], context: Any) -> dict[str, int]:
    today = date.fromisoformat(event["date"]) if event.get("date") else clock.business_day(clock.now())
    result = review_tiers(bootstrap.ledger(), today)
    metrics.add_metric(name="TierReviewRunSucceeded", unit="Count", value=1)
    logger.info("tier review finished", extra={**result, "as_of": today.isoformat()})
    return result
