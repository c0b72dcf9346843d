"""A thin gateway over the DynamoDB client: (de)serialisation, one transaction writer, error mapping.

Only this package talks to DynamoDB. It maps ClientError codes to domain errors; any other exception is a
bug and propagates (it becomes a logged 500, never a silent 400).
"""
from __future__ import annotations

import base64
import json
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import ClientError, ReadTimeoutError
from botocore.exceptions import ConnectionError as BotoConnectionError

from ..domain.errors import Invalid, Unavailable

_ser = TypeSerializer()
_deser = TypeDeserializer()

# Timeouts and dropped connections after botocore's own retries: the outcome of a write is unknown.
TRANSPORT_ERRORS = (ReadTimeoutError, BotoConnectionError)

THROTTLE_CODES = {
    "ProvisionedThroughputExceededException",
    "ThrottlingException",
    "RequestLimitExceeded",
    "InternalServerError",
    "ServiceUnavailable",
}


def _plain(value: Any) -> Any:
    """DynamoDB numbers come back as Decimal; we only ever store integers (money is fen)."""
    if isinstance(value, Decimal):
        return int(value)
    if isinstance(value, set):
        return {_plain(v) for v in value}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def to_attr(value: Any) -> dict[str, Any]:
    return _ser.serialize(value)


def to_item(data: dict[str, Any]) -> dict[str, Any]:
    return {k: _ser.serialize(v) for k, v in data.items() if v is not None}


def from_item(item: dict[str, Any]) -> dict[str, Any]:
    return {k: _plain(_deser.deserialize(v)) for k, v in item.items()}


@dataclass
class TxCancelled(Exception):
    """A transaction was cancelled. `reasons[i]` is the code for the i-th action ('None' if it was fine);
    `items[i]` is the old item when a condition failed and ALL_OLD was asked for."""

    reasons: list[str]
    items: list[dict[str, Any] | None]

    def failed_at(self, index: int) -> bool:
        return self.reasons[index] == "ConditionalCheckFailed"

    @property
    def conflict(self) -> bool:
        return any(r in ("TransactionConflict",) for r in self.reasons)


@dataclass
class Tx:
    """Collects the writes of one use case and commits them as one TransactWriteItems."""

    table: str
    actions: list[dict[str, Any]] = field(default_factory=list)

    def put(self, item: dict[str, Any], condition: str | None = None, names: dict | None = None,
            values: dict | None = None, return_old_on_fail: bool = False) -> int:
        action: dict[str, Any] = {"TableName": self.table, "Item": to_item(item)}
        self._condition(action, condition, names, values, return_old_on_fail)
        return self._add({"Put": action})

    def update(self, key: dict[str, str], expression: str, condition: str | None = None,
               names: dict | None = None, values: dict | None = None) -> int:
        action: dict[str, Any] = {"TableName": self.table, "Key": to_item(key), "UpdateExpression": expression}
        self._condition(action, condition, names, values, False)
        return self._add({"Update": action})

    def delete(self, key: dict[str, str], condition: str | None = None, names: dict | None = None,
               values: dict | None = None) -> int:
        action: dict[str, Any] = {"TableName": self.table, "Key": to_item(key)}
        self._condition(action, condition, names, values, False)
        return self._add({"Delete": action})

    def check(self, key: dict[str, str], condition: str, names: dict | None = None,
              values: dict | None = None) -> int:
        action: dict[str, Any] = {"TableName": self.table, "Key": to_item(key)}
        self._condition(action, condition, names, values, False)
        return self._add({"ConditionCheck": action})

    def _add(self, action: dict[str, Any]) -> int:
        self.actions.append(action)
        return len(self.actions) - 1

    @staticmethod
    def _condition(action: dict, condition: str | None, names: dict | None, values: dict | None,
                   return_old: bool) -> None:
        if condition:
            action["ConditionExpression"] = condition
        if names:
            action["ExpressionAttributeNames"] = names
        if values:
            action["ExpressionAttributeValues"] = {k: to_attr(v) for k, v in values.items()}
        if return_old:
            action["ReturnValuesOnConditionCheckFailure"] = "ALL_OLD"


class Db:
    """The table, through a lazily created low-level client."""

    def __init__(self, client: Any, table_name: str) -> None:
        self.client = client
        self.table = table_name

    def tx(self) -> Tx:
        return Tx(self.table)

    def commit(self, tx: Tx, *, conflict_retries: int = 4) -> None:
        """Commit; retry only TransactionConflict (another transaction held an item), which DynamoDB tells
        us is safe to retry. (Retrying a call whose answer was lost is the caller's: the documents dedupe it.)"""
        params: dict[str, Any] = {"TransactItems": tx.actions}
        for attempt in range(conflict_retries + 1):
            try:
                self.client.transact_write_items(**params)
                return
            except TRANSPORT_ERRORS:
                # The write may or may not have been applied: answer 503 and let the client retry the
                # same request; the document ids make that retry a replay, never a second write.
                raise Unavailable("the database did not answer in time; retry", code="db_timeout") from None
            except ClientError as err:
                cancelled = _cancelled(err)
                if cancelled is None:
                    raise map_client_error(err) from err
                if cancelled.conflict and attempt < conflict_retries:
                    time.sleep(random.uniform(0.005, 0.03) * (2 ** attempt))
                    continue
                if cancelled.conflict:
                    raise Unavailable("too many concurrent changes to the same record; retry",
                                      code="contention") from err
                raise cancelled from err

    def get(self, key: dict[str, str], consistent: bool = True) -> dict[str, Any] | None:
        try:
            resp = self.client.get_item(TableName=self.table, Key=to_item(key), ConsistentRead=consistent)
        except TRANSPORT_ERRORS:
            raise Unavailable("the database did not answer in time; retry", code="db_timeout") from None
        except ClientError as err:
            raise map_client_error(err) from err
        item = resp.get("Item")
        return from_item(item) if item else None

    def query(self, **params: Any) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
        values = params.pop("values", None)
        if values:
            params["ExpressionAttributeValues"] = {k: to_attr(v) for k, v in values.items()}
        start = params.pop("start", None)
        if start:
            params["ExclusiveStartKey"] = to_item(start)
        try:
            resp = self.client.query(TableName=self.table, **params)
        except TRANSPORT_ERRORS:
            raise Unavailable("the database did not answer in time; retry", code="db_timeout") from None
        except ClientError as err:
            message = err.response["Error"].get("Message", "").lower()
            if start and ("starting key" in message or "exclusive start key" in message):
                # A crafted cursor of the right partition but not a whole key (decode_cursor checks the partition).
                raise _invalid_cursor() from None
            raise map_client_error(err) from err
        last = resp.get("LastEvaluatedKey")
        return [from_item(i) for i in resp.get("Items", [])], (from_item(last) if last else None)

    def query_all(self, **params: Any) -> Iterator[dict[str, Any]]:
        start = None
        while True:
            items, start = self.query(**params, start=start)
            yield from items
            if not start:
                return

    def update(self, key: dict[str, str], expression: str, condition: str | None = None,
               names: dict | None = None, values: dict | None = None) -> dict[str, Any] | None:
        """A single-item update; returns the new item, or None if the condition failed."""
        params: dict[str, Any] = {"TableName": self.table, "Key": to_item(key), "UpdateExpression": expression,
                                  "ReturnValues": "ALL_NEW"}
        if condition:
            params["ConditionExpression"] = condition
        if names:
            params["ExpressionAttributeNames"] = names
        if values:
            params["ExpressionAttributeValues"] = {k: to_attr(v) for k, v in values.items()}
        try:
            resp = self.client.update_item(**params)
        except TRANSPORT_ERRORS:
            raise Unavailable("the database did not answer in time; retry", code="db_timeout") from None
        except ClientError as err:
            if err.response["Error"]["Code"] == "ConditionalCheckFailedException":
                return None
            raise map_client_error(err) from err
        return from_item(resp["Attributes"])

    def batch_get(self, keys: list[dict[str, str]], mapper: Any, consistent: bool = False) -> list[Any]:
        """Up to 100 items by key in one request (retrying the unprocessed rest, as AWS asks)."""
        if not keys:
            return []
        request: dict[str, Any] = {self.table: {"Keys": [to_item(k) for k in keys], "ConsistentRead": consistent}}
        found: list[Any] = []
        for _ in range(5):
            try:
                resp = self.client.batch_get_item(RequestItems=request)
            except TRANSPORT_ERRORS:
                raise Unavailable("the database did not answer in time; retry", code="db_timeout") from None
            except ClientError as err:
                raise map_client_error(err) from err
            found += [mapper(from_item(i)) for i in resp.get("Responses", {}).get(self.table, [])]
            request = resp.get("UnprocessedKeys") or {}
            if not request:
                return found
            time.sleep(0.02)
        raise Unavailable("the database is busy; retry shortly", code="throttled")

    def put_many(self, items: list[dict[str, Any]]) -> None:
        """Unconditional puts, 25 a request (BatchWriteItem), retrying the unprocessed rest as AWS asks: for
        loads whose items are whole and deterministic, so writing one twice is harmless."""
        for i in range(0, len(items), 25):
            request: dict[str, Any] = {self.table: [{"PutRequest": {"Item": to_item(x)}} for x in items[i:i + 25]]}
            for attempt in range(8):
                try:
                    resp = self.client.batch_write_item(RequestItems=request)
                except TRANSPORT_ERRORS:
                    raise Unavailable("the database did not answer in time; retry", code="db_timeout") from None
                except ClientError as err:
                    raise map_client_error(err) from err
                request = resp.get("UnprocessedItems") or {}
                if not request:
                    break
                time.sleep(0.02 * 2 ** attempt)
            else:
                raise Unavailable("the database is busy; retry shortly", code="throttled")

    def put(self, item: dict[str, Any]) -> None:
        try:
            self.client.put_item(TableName=self.table, Item=to_item(item))
        except TRANSPORT_ERRORS:
            raise Unavailable("the database did not answer in time; retry", code="db_timeout") from None
        except ClientError as err:
            raise map_client_error(err) from err


def _cancelled(err: ClientError) -> TxCancelled | None:
    if err.response["Error"]["Code"] != "TransactionCanceledException":
        return None
    raw = err.response.get("CancellationReasons") or []
    return TxCancelled(
        reasons=[r.get("Code", "None") for r in raw],
        items=[from_item(r["Item"]) if r.get("Item") else None for r in raw],
    )


def map_client_error(err: ClientError) -> Exception:
    code = err.response["Error"]["Code"]
    if code in THROTTLE_CODES or code == "TransactionInProgressException":
        return Unavailable("the database is busy; retry shortly", code="throttled")
    # Anything else (ValidationException, ResourceNotFound...) is our bug, not the caller's: let it surface.
    return err


def encode_cursor(last_key: dict[str, Any] | None) -> str | None:
    if not last_key:
        return None
    raw = json.dumps(last_key, separators=(",", ":"), sort_keys=True).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str | None, *, expect: dict[str, str]) -> dict[str, Any] | None:
    """Decode an opaque cursor and check it belongs to this listing (same partition), so a crafted cursor
    can neither reach another partition nor provoke a DynamoDB ValidationException."""
    if not cursor:
        return None
    try:
        data = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (ValueError, TypeError):
        data = None
    if not isinstance(data, dict) or any(data.get(k) != v for k, v in expect.items()) or \
            not all(isinstance(v, str) for v in data.values()) or len(data) > 6:
        raise _invalid_cursor()
    return data


def _invalid_cursor() -> Invalid:
    return Invalid("cursor is not valid for this listing", code="invalid_cursor",
                   details=[{"loc": ["query", "cursor"], "msg": "invalid cursor"}])
