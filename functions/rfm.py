"""Nightly (03:00 Asia/Shanghai) RFM segmentation, one Lambda for every step of the Step Functions state
machine that fans it out (infra: `rfm` in functions.json, the state machine in infra/stack.py):

    plan -> Map(measure segment i, looped until done) -> thresholds -> Map(classify segment i, looped) -> finish

Each event names its step: {"step": "plan", "date"?: "YYYY-MM-DD"} -> {"as_of", "segments": [{"as_of",
"segment"}...], "measure": bool}; {"step": "measure"|"classify", "as_of", "segment"} -> {"as_of", "segment",
"done"}; {"step": "thresholds"|"finish", "as_of"} -> a summary. Every step is checkpointed in the table, so
a retried or re-run step resumes where the last committed page left it, and a second run of a finished
night changes nothing.

Locally `python -m chalicelib.cli run-job rfm` calls `run_locally`: the same steps, segments in a worker pool."""
from __future__ import annotations

from datetime import date
from typing import Any

from chalicelib import bootstrap
from chalicelib.observability import logger, metrics
from chalicelib.services import rfm_job

# Stop taking new pages this long before the Lambda's timeout: a page (2,000 members) commits well within it.
SAFETY_MS = 60_000


@logger.inject_lambda_context
@metrics.log_metrics
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    step = event.get("step", "plan")
    job = _job()
    if step == "plan":
        return job.plan(date.fromisoformat(event["date"]) if event.get("date") else None, event.get("segments"))
    as_of = date.fromisoformat(event["as_of"])
    if step in ("measure", "classify"):
        def time_left() -> bool:
            return context.get_remaining_time_in_millis() > SAFETY_MS
        return job.run_segment(as_of, step, int(event["segment"]), time_left)
    if step == "thresholds":
        return job.thresholds(as_of)
    if step == "finish":
        result = job.finish(as_of)
        metrics.add_metric(name="RfmMembersClassified", unit="Count", value=result["classified"])
        metrics.add_metric(name="RfmRunSucceeded", unit="Count", value=1)
        logger.info("rfm finished", extra=result)
        return result
    raise ValueError(f"unknown step {step!r}")


def run_locally(event: dict[str, Any], context: Any = None, workers: int = 4) -> dict[str, Any]:
    """The whole night as the state machine runs it, with a thread pool standing in for the Map state."""
    return _job().run_all(date.fromisoformat(event["date"]) if event.get("date") else None, workers=workers,
                          segments=event.get("segments"))


def _job() -> rfm_job.RfmJob:
    return rfm_job.RfmJob(bootstrap.rfm(), bootstrap.stores(), bootstrap.tags())
