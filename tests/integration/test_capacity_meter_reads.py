"""The capacity meter (bench/capacity.py) takes read units from what DynamoDB Local reports. This holds that
report to the examples of the Amazon DynamoDB Developer Guide ("DynamoDB read and write operations",
capacity unit consumption for reads): "Item sizes for reads are rounded up to the next 4 KB multiple. For
example, reading a 3,500-byte item consumes the same throughput as reading a 4 KB item"; "if your item size
is 8 KB, you require 2 read units to sustain one strongly consistent read. You'll require 1 read unit if you
choose eventually consistent reads"; BatchGetItem: "if BatchGetItem reads a 1.5 KB item and a 6.5 KB item,
DynamoDB will calculate the size as 12 KB (4 KB + 8 KB)"; Query: "suppose your query returns 10 items whose
combined size is 40.8 KB. DynamoDB rounds the item size for the operation to 44 KB". Item sizes by
tests/unit/test_capacity_meter.py's rules (1 KB = 1024 bytes)."""
from __future__ import annotations

import uuid
from typing import Any

import pytest

from bench.capacity import CapacityMeter, item_size

KB = 1024


def _item(pk: str, sk: str, total: int) -> dict[str, Any]:
    item = {"pk": {"S": pk}, "sk": {"S": sk}}
    item["x"] = {"S": "a" * (total - item_size(item) - 1)}
    assert item_size(item) == total
    return item


@pytest.fixture
def reads(stack):  # noqa: ANN001
    client, table = stack.client("dynamodb"), stack.table_name
    pk = f"CAPACITY#{uuid.uuid4().hex[:8]}"

    def put(sk: str, size: int) -> dict[str, Any]:
        item = _item(pk, sk, size)
        client.put_item(TableName=table, Item=item)
        return {"pk": item["pk"], "sk": item["sk"]}

    return client, table, pk, put


@pytest.mark.parametrize(("size", "strong", "eventual"), [(3500, 1.0, 0.5), (8 * KB, 2.0, 1.0), (10 * KB, 3.0, 1.5)])
def test_get_item_reads_a_unit_per_started_4_kb_half_when_eventually_consistent(reads, size, strong, eventual):
    client, table, _, put = reads
    key = put("ONE", size)
    with CapacityMeter(client) as meter:
        client.get_item(TableName=table, Key=key, ConsistentRead=True)
        assert meter.take().rcu == strong
        client.get_item(TableName=table, Key=key, ConsistentRead=False)
        assert meter.take().rcu == eventual


def test_batch_get_item_rounds_each_item_up_before_adding(reads):
    client, table, _, put = reads
    keys = [put("A", 1536), put("B", 6656)]  # 1.5 KB and 6.5 KB: 4 KB + 8 KB
    with CapacityMeter(client) as meter:
        client.batch_get_item(RequestItems={table: {"Keys": keys, "ConsistentRead": True}})
        assert meter.take().rcu == 3.0
        client.batch_get_item(RequestItems={table: {"Keys": keys}})
        assert meter.take().rcu == 1.5


def test_query_rounds_the_sum_of_the_items_up_once(reads):
    client, table, pk, put = reads
    for i in range(10):  # 10 items of 4,178 bytes: 40.8 KB together, rounded to 44 KB
        put(f"Q#{i:02d}", 4178)
    query = {"TableName": table, "KeyConditionExpression": "pk = :pk", "ExpressionAttributeValues": {":pk": {"S": pk}}}
    with CapacityMeter(client) as meter:
        assert len(client.query(**query, ConsistentRead=True)["Items"]) == 10
        assert meter.take().rcu == 11.0
        client.query(**query)
        assert meter.take().rcu == 5.5
