"""The local stand-in for SQS's event source mapping: a few threads of the server process long-poll the coupon
audience queue (moto's SQS) and run each message through the same consumer code the Lambda runs
(functions/coupon_audience.process). A message whose run raised is left alone: moto delivers it again after
its visibility timeout, and after maxReceiveCount it moves to the DLQ, as on AWS."""
from __future__ import annotations

import json
import threading
from typing import Any

from .. import bootstrap
from ..observability import logger


class QueueWorkers:
    def __init__(self, workers: int = 2, time_budget_s: float = 60.0) -> None:
        self.workers = workers
        self.time_budget_s = time_budget_s
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> QueueWorkers:
        for n in range(self.workers):
            thread = threading.Thread(target=self._loop, name=f"audience-worker-{n}", daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=5)

    def _loop(self) -> None:
        import time

        from functions.coupon_audience import process

        sqs, url = bootstrap.sqs_client(), bootstrap.settings().coupon_audience_queue_url
        while not self._stop.is_set():
            try:
                got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=1, WaitTimeSeconds=1).get("Messages", [])
            except Exception:  # noqa: BLE001 - the local queue went away (shutting down): try again shortly
                self._stop.wait(1)
                continue
            for message in got:
                ends = time.monotonic() + self.time_budget_s
                try:
                    process(_body(message), lambda ends=ends: time.monotonic() < ends)
                except Exception:  # noqa: BLE001 - as a failed batch item on AWS: delivered again later
                    logger.exception("local audience worker: job failed", extra={"message": message.get("Body")})
                    continue
                sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])


def _body(message: dict[str, Any]) -> dict[str, Any]:
    return json.loads(message["Body"])
