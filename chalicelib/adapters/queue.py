"""A job queue on SQS: a message names a job (services/coupon_audience.py), its consumer runs it
(functions/coupon_audience.py on AWS; locally the same consumer in a worker pool of the server process)."""
from __future__ import annotations

import json
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from ..domain.errors import Unavailable


class SqsJobQueue:
    def __init__(self, client: Any, url: str) -> None:
        self.client = client
        self.url = url

    def send(self, body: dict[str, Any]) -> None:
        if not self.url:
            raise Unavailable("the job queue is not configured (CHAINCRM_COUPON_AUDIENCE_QUEUE_URL)",
                              code="queue_unavailable")
        try:
            self.client.send_message(QueueUrl=self.url, MessageBody=json.dumps(body, separators=(",", ":")))
        except (BotoCoreError, ClientError):
            # The job is recorded: the same POST again finds it and sends it again.
            raise Unavailable("the job could not be queued; send the same request again", code="queue_unavailable",
                              details={"retry": "same body"}) from None
