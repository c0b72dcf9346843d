"""Daily (00:20 Asia/Shanghai): mark expired the available coupons whose last valid day has passed, found
through the sparse coupon expiry index (no scan), catching up any nights missed; then write the "coupon
expiring" facts (one per coupon, 3 days before its last valid day).

The event may carry {"date": "YYYY-MM-DD"} to run as of that business day (re-running a missed night)."""
from __future__ import annotations

from datetime import date
from typing import Any

from chalicelib import bootstrap
from chalicelib.domain import clock
from chalicelib.observability import logger, metrics
from chalicelib.services.coupon_expiry import expire_due_coupons


@logger.inject_lambda_context
@metrics.log_metrics
def handler(event: dict[str, Any], context: Any) -> dict[str, int]:
    today = date.fromisoformat(event["date"]) if event.get("date") else clock.business_day(clock.now())
    result = expire_due_coupons(bootstrap.coupons(), bootstrap.ledger(), today)
    metrics.add_metric(name="CouponExpiryRunSucceeded", unit="Count", value=1)
    logger.info("coupon expiry finished", extra={**result, "as_of": today.isoformat()})
    return result
