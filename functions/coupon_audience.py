"""The consumer of the coupon audience queue (SQS, one message per batch): each message `{"issue_id"}` names a
segment-audience coupon issue job (services/coupon_audience.py). The job runs chunk by chunk, each committed
with its cursor, until it is done or stopped, or until this invocation's time is nearly used: then the same
message body is sent again (a fresh message, so a long job never counts towards the queue's maxReceiveCount)
and the next invocation resumes from the checkpoints. A failure is reported as the record's batch item failure:
SQS delivers it again after the visibility timeout, and after maxReceiveCount it goes to the DLQ (re-drive it
from the console, or POST the same issue again: a job that has not moved for 5 minutes is queued again).

Locally the same `process` runs in a worker pool of the server process (`make run`: chalicelib/local/workers.py),
and tests call `process` or `drain` directly."""
from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from chalicelib import bootstrap
from chalicelib.observability import logger, metrics
from chalicelib.services import coupon_audience

# Stop taking chunks this long before the Lambda's timeout: a chunk (1,000 members read, up to 1,000 coupons
# issued in parallel) commits well within it.
SAFETY_MS = 120_000


@logger.inject_lambda_context
@metrics.log_metrics
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    failures = []
    for record in event.get("Records", []):
        try:
            process(json.loads(record["body"]), lambda: context.get_remaining_time_in_millis() > SAFETY_MS)
        except Exception:  # noqa: BLE001 - reported to SQS as this record's failure; it is delivered again
            logger.exception("audience job failed", extra={"message_id": record.get("messageId")})
            failures.append({"itemIdentifier": record["messageId"]})
    return {"batchItemFailures": failures}


def process(message: dict[str, Any], time_left: Callable[[], bool]) -> dict[str, Any]:
    """Run the job the message names as far as `time_left` allows; queue it again when not finished."""
    issue_id = str(message["issue_id"])
    result = coupon_audience.run(issue_id, time_left, bootstrap.coupons(), bootstrap.ledger(),
                                 bootstrap.audience_reader())
    if not result["finished"]:
        bootstrap.audience_queue().send({"issue_id": issue_id})
    metrics.add_metric(name="CouponAudienceChunksRun", unit="Count", value=1)
    return result


def drain(max_messages: int = 1_000, time_left: Callable[[], bool] = lambda: True) -> list[dict[str, Any]]:
    """Receive and process the queue's messages until it is empty (tests, the local worker pool): what each
    message's run answered. A message whose run raised is left for its visibility timeout, as on AWS."""
    sqs, url = bootstrap.sqs_client(), bootstrap.settings().coupon_audience_queue_url
    done: list[dict[str, Any]] = []
    while len(done) < max_messages:
        got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=1, WaitTimeSeconds=0).get("Messages", [])
        if not got:
            return done
        message = got[0]
        done.append(process(json.loads(message["Body"]), time_left))
        sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
    return done
