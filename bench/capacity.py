"""Counts DynamoDB requests and the capacity they consume, through botocore's event hooks.

Hooking the one client that bootstrap builds means the production code runs unchanged: we only ask DynamoDB
to report ConsumedCapacity on every call and read it from each response.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

# Operations that bill reads; every other operation reporting capacity bills writes.
READ_OPERATIONS = {"GetItem", "BatchGetItem", "Query", "Scan", "TransactGetItems"}


@dataclass
class Usage:
    """What a block of calls cost: requests by operation name, read and write capacity units."""

    requests: Counter = field(default_factory=Counter)
    rcu: float = 0.0
    wcu: float = 0.0


class CapacityMeter:
    def __init__(self, client: Any) -> None:
        self.events = client.meta.events
        self.usage = Usage()

    def __enter__(self) -> CapacityMeter:
        self.events.register("provide-client-params.dynamodb.*", self._ask_for_capacity)
        self.events.register("after-call.dynamodb.*", self._record)
        return self

    def __exit__(self, *exc: object) -> None:
        # Unhooked afterwards so the latency runs measure the client exactly as production uses it.
        self.events.unregister("provide-client-params.dynamodb.*", self._ask_for_capacity)
        self.events.unregister("after-call.dynamodb.*", self._record)

    def take(self) -> Usage:
        """The usage since the last take (so each measured block starts from zero)."""
        usage, self.usage = self.usage, Usage()
        return usage

    @staticmethod
    def _ask_for_capacity(params: dict[str, Any], model: Any, **_: Any) -> None:
        # Ask the operation's own model rather than keeping a list: ListTables, DescribeTable... lack it.
        if "ReturnConsumedCapacity" in model.input_shape.members:
            params.setdefault("ReturnConsumedCapacity", "TOTAL")

    def _record(self, parsed: dict[str, Any], model: Any, **_: Any) -> None:
        # after-call fires for failed calls too (e.g. a cancelled transaction): they are requests we make.
        self.usage.requests[model.name] += 1
        consumed = parsed.get("ConsumedCapacity") or []
        for entry in consumed if isinstance(consumed, list) else [consumed]:
            if "ReadCapacityUnits" in entry or "WriteCapacityUnits" in entry:
                self.usage.rcu += entry.get("ReadCapacityUnits", 0.0)
                self.usage.wcu += entry.get("WriteCapacityUnits", 0.0)
            elif model.name in READ_OPERATIONS:
                self.usage.rcu += entry.get("CapacityUnits", 0.0)
            else:
                self.usage.wcu += entry.get("CapacityUnits", 0.0)
