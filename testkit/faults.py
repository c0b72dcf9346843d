"""Fault injection for DynamoDB through botocore's event hooks on the app's own client.

- throttle:  `before-call` answers ThrottlingException instead of sending (as AWS does past capacity)
- conflict:  `before-call` answers TransactionCanceled/TransactionConflict for a TransactWriteItems
- lost_ack:  `after-call` raises a read timeout AFTER DynamoDB applied the write: the caller cannot know
             it succeeded (the hardest case for "nothing lost, nothing doubled")
"""
from __future__ import annotations

import json
import random
import threading
from collections import Counter
from typing import Any

from botocore.awsrequest import AWSResponse
from botocore.exceptions import ReadTimeoutError


class FaultInjector:
    def __init__(self, client: Any, *, throttle: float = 0.0, conflict: float = 0.0, lost_ack: float = 0.0,
                 seed: int = 1) -> None:
        self.client, self.throttle, self.conflict, self.lost_ack = client, throttle, conflict, lost_ack
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self.injected: Counter[str] = Counter()

    def _roll(self, p: float) -> bool:
        with self._lock:
            return self._rng.random() < p

    def _error(self, code: str, extra: dict | None = None) -> tuple[AWSResponse, dict]:
        http = AWSResponse(url="http://fault", status_code=400, headers={}, raw=None)
        return http, {"Error": {"Code": code, "Message": f"injected {code}"},
                      "ResponseMetadata": {"HTTPStatusCode": 400}, **(extra or {})}

    def _before(self, model: Any, params: Any, **_: Any) -> tuple[AWSResponse, dict] | None:
        if self._roll(self.throttle):
            self.injected["throttle"] += 1
            return self._error("ThrottlingException")
        if model.name == "TransactWriteItems" and self._roll(self.conflict):
            self.injected["conflict"] += 1
            sent = json.loads(params["body"])  # the serialised request: one reason per item, as AWS answers
            reasons = [{"Code": "TransactionConflict"} for _ in sent.get("TransactItems", [])]
            return self._error("TransactionCanceledException", {"CancellationReasons": reasons})
        return None

    def _after(self, model: Any, http_response: Any, parsed: dict, **_: Any) -> None:
        if model.name == "TransactWriteItems" and http_response.status_code == 200 and self._roll(self.lost_ack):
            self.injected["lost_ack"] += 1
            raise ReadTimeoutError(endpoint_url="http://dynamodb (injected: applied, answer lost)")

    def __enter__(self) -> FaultInjector:
        events = self.client.meta.events
        events.register_first("before-call.dynamodb.*", self._before, unique_id="fault-before")
        events.register_first("after-call.dynamodb.*", self._after, unique_id="fault-after")
        return self

    def __exit__(self, *exc: object) -> None:
        events = self.client.meta.events
        events.unregister("before-call.dynamodb.*", unique_id="fault-before")
        events.unregister("after-call.dynamodb.*", unique_id="fault-after")
