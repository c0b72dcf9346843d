"""Counts DynamoDB requests and the capacity they consume, through botocore's event hooks.

Hooking the one client that bootstrap builds means the production code runs unchanged.

Reads: DynamoDB Local's reported ConsumedCapacity (it follows AWS for GetItem/Query/BatchGetItem).
Writes: computed here from the items' real sizes under AWS's published billing rules, because DynamoDB
Local 3.3.0 reports a TransactWriteItems as if it wrote ONE item (measured: five 100-byte puts -> 2.0
units, where AWS bills 10; five 1.5 KB puts -> 4.0, where AWS bills 20). The rules applied:
  - a write costs ceil(item size / 1 KB) units, of the larger of the item before and after it;
  - inside TransactWriteItems every item costs double;
  - every GSI the item is (or was) in costs ceil(size of its index entry / 1 KB) more, where the entry
    is what the index projects (ALL: the item; KEYS_ONLY: the table's and the index's keys); nothing
    when the write leaves that entry as it was (a KEYS_ONLY index ignores updates of other attributes),
    two writes (delete + put) when it changes the index keys.
Item sizes follow AWS's rule: attribute names + values (UTF-8 strings, numbers 1 byte per 2 significant
digits, rounded up, + 1, 1 byte per bool/null, sets and lists by their elements + small overheads); see
"DynamoDB item sizes and formats" in the developer guide, and tests/unit/test_capacity_meter.py.
"""
from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

# Operations that bill reads; every other operation reporting capacity bills writes.
READ_OPERATIONS = {"GetItem", "BatchGetItem", "Query", "Scan", "TransactGetItems"}
WRITE_OPERATIONS = {"PutItem", "UpdateItem", "DeleteItem", "TransactWriteItems", "BatchWriteItem"}
TABLE_KEYS = ("pk", "sk")


@dataclass(frozen=True)
class Index:
    """A GSI of the table as the template declares it: its key attributes and what it projects."""

    name: str
    keys: tuple[str, ...]
    projection: str  # ALL | KEYS_ONLY | INCLUDE
    include: tuple[str, ...] = ()

    def entry(self, item: dict[str, Any] | None) -> dict[str, Any] | None:
        """The item's entry in this index (None: the item is not in it: sparse)."""
        if not item or any(k not in item for k in self.keys):
            return None
        if self.projection == "ALL":
            return item
        return {k: v for k, v in item.items() if k in (*TABLE_KEYS, *self.keys, *self.include)}


def table_indexes() -> tuple[Index, ...]:
    from chalicelib.store.table_def import table_properties

    return tuple(Index(g["IndexName"], tuple(k["AttributeName"] for k in g["KeySchema"]),
                       g["Projection"]["ProjectionType"], tuple(g["Projection"].get("NonKeyAttributes", ())))
                 for g in table_properties().get("GlobalSecondaryIndexes", []))


INDEXES = table_indexes()


@dataclass
class Usage:
    """What a block of calls cost: requests by operation name, read and write capacity units."""

    requests: Counter = field(default_factory=Counter)
    rcu: float = 0.0
    wcu: float = 0.0


def number_size(text: str) -> int:
    """AWS: "Numbers are variable length, with up to 38 significant digits. Leading and trailing zeroes are
    trimmed. The size of a number is approximately (1 byte per two significant digits) + (1 byte)." A byte
    holds two digits: 3 significant digits take 2 bytes (+ 1). (Zero has none: 1 byte.)"""
    digits = text.lstrip("+-").lower().split("e")[0].replace(".", "").strip("0")
    return math.ceil(len(digits) / 2) + 1


def attr_size(value: dict[str, Any]) -> int:
    kind, v = next(iter(value.items()))
    if kind in ("S", "B"):
        return len(v.encode() if isinstance(v, str) else v)
    if kind == "N":
        return number_size(v)
    if kind in ("BOOL", "NULL"):
        return 1
    if kind in ("SS", "BS"):
        return sum(len(x.encode() if isinstance(x, str) else x) for x in v)
    if kind == "NS":
        return sum(number_size(x) for x in v)
    if kind == "L":
        return 3 + sum(1 + attr_size(x) for x in v)
    if kind == "M":
        return 3 + sum(len(k.encode()) + 1 + attr_size(x) for k, x in v.items())
    return len(str(v))


def item_size(item: dict[str, Any] | None) -> int:
    return sum(len(k.encode()) + attr_size(v) for k, v in (item or {}).items())


def _units(size: int) -> int:
    return max(1, math.ceil(size / 1024))


def index_units(index: Index, before: dict | None, after: dict | None) -> int:
    old, new = index.entry(before), index.entry(after)
    if old == new:  # not in the index, or its entry unchanged: no index write
        return 0
    if old is not None and new is not None and any(old[k] != new[k] for k in index.keys):
        return _units(item_size(old)) + _units(item_size(new))  # moved within the index: delete + put
    return _units(max(item_size(old), item_size(new)))


def write_units(before: dict | None, after: dict | None, transactional: bool) -> int:
    units = _units(max(item_size(before), item_size(after))) * (2 if transactional else 1)
    return units + sum(index_units(index, before, after) for index in INDEXES)


class CapacityMeter:
    def __init__(self, client: Any) -> None:
        self.client = client
        self.events = client.meta.events
        self.usage = Usage()
        self._pending: list[tuple[str, dict, dict | None, bool]] = []
        self._inside = False  # our own GetItems (to size items) are neither counted nor sized

    def __enter__(self) -> CapacityMeter:
        self.events.register("provide-client-params.dynamodb.*", self._ask_for_capacity)
        self.events.register("before-call.dynamodb.*", self._size_before)
        self.events.register("after-call.dynamodb.*", self._record)
        return self

    def __exit__(self, *exc: object) -> None:
        # Unhooked afterwards so the latency runs measure the client exactly as production uses it.
        self.events.unregister("provide-client-params.dynamodb.*", self._ask_for_capacity)
        self.events.unregister("before-call.dynamodb.*", self._size_before)
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

    def _get(self, table: str, key: dict) -> dict | None:
        self._inside = True
        try:
            return self.client.get_item(TableName=table, Key=key, ConsistentRead=True).get("Item")
        finally:
            self._inside = False

    def _size_before(self, model: Any, params: dict[str, Any], **_: Any) -> None:
        if self._inside or model.name not in WRITE_OPERATIONS:
            return
        import json

        body = json.loads(params["body"])
        if model.name == "TransactWriteItems":
            actions = [(next(iter(a)), next(iter(a.values()))) for a in body["TransactItems"]]
        elif model.name == "BatchWriteItem":  # each put or delete is a plain write of its item (not doubled)
            actions = [(next(iter(r)), {**next(iter(r.values())), "TableName": table})
                       for table, requests in body["RequestItems"].items() for r in requests]
        else:
            actions = [(model.name, body)]
        self._pending = []
        for kind, action in actions:
            key = action.get("Key") or {k: action["Item"][k] for k in ("pk", "sk")}
            self._pending.append((action["TableName"], key, self._get(action["TableName"], key),
                                  model.name == "TransactWriteItems" and kind != "ConditionCheck"))

    def _record(self, parsed: dict[str, Any], model: Any, http_response: Any, **_: Any) -> None:
        if self._inside:
            return
        # after-call fires for failed calls too (e.g. a cancelled transaction): they are requests we make.
        self.usage.requests[model.name] += 1
        if model.name in WRITE_OPERATIONS:
            if http_response.status_code == 200:  # (AWS bills failed writes too; not modelled: see notes)
                for table, key, before, doubled in self._pending:
                    self.usage.wcu += write_units(before, self._get(table, key), doubled)
            self._pending = []
            return
        consumed = parsed.get("ConsumedCapacity") or []
        for entry in consumed if isinstance(consumed, list) else [consumed]:
            self.usage.rcu += entry.get("ReadCapacityUnits", entry.get("CapacityUnits", 0.0))
