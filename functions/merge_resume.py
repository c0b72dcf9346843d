"""Scheduled: finish member merges whose batched move was interrupted (a Lambda timeout, a crash).

Merges move history inline; this job finds the rest through the sparse work index (no scan)."""
from __future__ import annotations

from typing import Any

from chalicelib import bootstrap
from chalicelib.observability import logger, metrics
from chalicelib.services.merges import resume_pending_merges


@logger.inject_lambda_context
@metrics.log_metrics
def handler(event: dict[str, Any], context: Any) -> dict[str, int]:
    result = resume_pending_merges(bootstrap.members())
    metrics.add_metric(name="MergesResumed", unit="Count", value=result["finished"])
    logger.info("merge resume finished", extra=result)
    return result
