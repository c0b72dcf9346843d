"""The capacity meter of bench/capacity.py (the order cost test holds the design's WCU with it) against the
rules AWS publishes. No sockets: sizes and units are pure, and the meter's hooks are driven by hand.

Sources, Amazon DynamoDB Developer Guide:
  [sizes]  "DynamoDB item sizes and formats" (CapacityUnitCalculations.html): "The total size of an item is
           the sum of the lengths of its attribute names and values"; strings: "(number of UTF-8-encoded
           bytes of attribute name) + (number of UTF-8-encoded bytes)"; numbers: "variable length, with up
           to 38 significant digits. Leading and trailing zeroes are trimmed. The size of a number is
           approximately (...name) + (1 byte per two significant digits) + (1 byte)"; binary: "the value's
           raw byte length"; null and Boolean: "(...name) + (1 byte)"; "An attribute of type List or Map
           requires 3 bytes of overhead, regardless of its contents"; "List or Map element also requires
           1 byte overhead per element".
  [writes] "DynamoDB read and write operations" / "Capacity unit consumption for writes": "A write capacity
           unit represents one write per second, for an item up to 1 KB in size"; "Item sizes for writes are
           rounded up to the next 1 KB multiple. For example, writing a 500-byte item consumes the same
           throughput as writing a 1 KB item"; PutItem: "the item size that matters is the larger of the
           two"; UpdateItem: "the larger of the 'before' and 'after' item sizes", "even if you update just a
           subset of the item's attributes"; DeleteItem: "based on the size of the deleted item".
  [limits] "Constraints": "DynamoDB denotes 1 KB = 1024 bytes".
  [tx]     "Amazon DynamoDB Transactions": "DynamoDB performs two underlying reads or writes of every item in
           the transaction: one to prepare the transaction and one to commit the transaction."
  [gsi]    "Global secondary indexes", throughput considerations for writes: a new item defining the indexed
           attribute: "one write operation is required to put the item into the index"; an update changing
           an indexed key attribute from A to B: "two writes are required, one to delete the previous item
           from the index and another write to put the new item into the index"; the indexed attribute
           deleted: "one write is required to delete the old item projection"; "If an item is not present in
           the index before or after the item is updated, there is no additional write cost for the index";
           only projected attributes change: "one write is required"; sizes as for items, larger index entries
           "require additional write capacity units".
  [reads]  "A strongly consistent read request of an item up to 4 KB requires one read unit", eventually
           consistent "one-half": the meter takes reads from DynamoDB Local's reported ConsumedCapacity, so
           those rules are checked against DynamoDB Local in tests/integration/test_capacity_meter_reads.py.

Not asserted, because AWS does not say: whether an index entry's 100 bytes of *storage* overhead count towards
its write units (the meter sizes the entry without them), and what a ConditionCheck costs (nothing of ours
sends one).
"""
from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

import pytest
from botocore.hooks import HierarchicalEmitter

from bench.capacity import CapacityMeter, Index, attr_size, index_units, item_size, number_size, write_units

KB = 1024  # [limits]


def sized(total: int, sk: str = "LEDGER#1", **extra: dict[str, Any]) -> dict[str, Any]:
    """An item of exactly `total` bytes by [sizes]: pk + sk + a padding string (plus `extra` attributes)."""
    item = {"pk": {"S": "MEMBER#1"}, "sk": {"S": sk}, **extra}
    pad = total - item_size(item) - len("x")
    assert pad >= 0
    item["x"] = {"S": "a" * pad}
    assert item_size(item) == total
    return item


# ---- item sizes [sizes] -----------------------------------------------------------------------------------
def test_a_string_is_its_name_plus_its_utf8_bytes():
    assert item_size({"name": {"S": "奶茶"}}) == 4 + 6  # two CJK characters: 3 UTF-8 bytes each
    assert item_size({"名字": {"S": "tea"}}) == 6 + 3  # the attribute name counts in UTF-8 too


def test_binary_is_its_raw_bytes_null_and_boolean_one_byte():
    assert item_size({"b": {"B": bytes(10)}}) == 1 + 10
    assert item_size({"n": {"NULL": True}, "t": {"BOOL": False}}) == (1 + 1) + (1 + 1)


@pytest.mark.parametrize(("number", "size"), [
    ("7", 2),  # one significant digit: 1 byte (a byte holds two) + 1
    ("12", 2),
    ("123", 3),  # three digits need two bytes, not one
    ("12345", 4),
    ("12345678", 5),
    ("100", 2),  # trailing zeroes are trimmed: one significant digit
    ("10000", 2),
    ("1230", 3),
    ("0", 1),  # no significant digit
])
def test_a_number_takes_a_byte_per_two_significant_digits_plus_one(number, size):
    assert number_size(number) == size
    assert attr_size({"N": number}) == size
    assert item_size({"n": {"N": number}}) == 1 + size


def test_lists_and_maps_cost_three_bytes_plus_one_per_element():
    assert item_size({"l": {"L": []}}) == 1 + 3
    assert item_size({"m": {"M": {}}}) == 1 + 3
    assert item_size({"l": {"L": [{"S": "ab"}, {"N": "7"}]}}) == 1 + 3 + (1 + 2) + (1 + 2)
    # a map's elements are attributes: each has its name, its value and its byte of overhead
    assert item_size({"m": {"M": {"sku": {"S": "a1"}, "q": {"N": "12"}}}}) == 1 + 3 + (1 + 3 + 2) + (1 + 1 + 2)
    nested = {"L": [{"M": {"k": {"S": "v"}}}]}
    assert item_size({"l": nested}) == 1 + 3 + (1 + (3 + (1 + 1 + 1)))


def test_sets_are_the_sum_of_their_elements():
    assert item_size({"s": {"SS": ["sh-001", "gz-001"]}}) == 1 + 6 + 6
    assert item_size({"n": {"NS": ["1", "123"]}}) == 1 + 2 + 3


def test_an_item_is_the_sum_of_its_names_and_values():
    item = {"pk": {"S": "ORDER#o-1"}, "sk": {"S": "ORDER"}, "amount": {"N": "12345"}, "guest": {"BOOL": False}}
    assert item_size(item) == (2 + 9) + (2 + 5) + (6 + 4) + (5 + 1)


# ---- write units [writes] [tx] --------------------------------------------------------------------------
@pytest.mark.parametrize(("size", "units"), [(100, 1), (500, 1), (KB, 1), (KB + 1, 2), (2 * KB, 2), (3500, 4)])
def test_a_write_costs_a_unit_per_started_kilobyte(size, units):
    assert write_units(None, sized(size), transactional=False) == units


def test_put_and_update_cost_the_larger_of_the_item_before_and_after():
    big, small = sized(3000), sized(100)
    assert write_units(big, small, transactional=False) == 3  # a put replacing a 3 KB item with 100 bytes
    assert write_units(small, big, transactional=False) == 3
    counter = sized(3000, n={"N": "1"})
    assert write_units(counter, {**counter, "n": {"N": "2"}}, transactional=False) == 3  # one counter, 3 KB item


def test_a_delete_costs_the_size_of_the_deleted_item():
    assert write_units(sized(2500), None, transactional=False) == 3


def test_inside_a_transaction_every_item_costs_double():
    assert write_units(None, sized(100), transactional=True) == 2
    assert write_units(None, sized(1500), transactional=True) == 4
    # decisions.md: five 100-byte puts in one TransactWriteItems bill 10 (DynamoDB Local reports 2.0)
    assert sum(write_units(None, sized(100), transactional=True) for _ in range(5)) == 10
    assert sum(write_units(None, sized(1500), transactional=True) for _ in range(5)) == 20


# ---- index writes [gsi] ---------------------------------------------------------------------------------
ALL = Index("gsi2", ("gsi2pk", "gsi2sk"), "ALL")
KEYS_ONLY = Index("gsi3", ("gsi3pk", "gsi3sk"), "KEYS_ONLY")


def _in(index: Index, pk: str = "EXPIRY#2027-01-01", **extra: Any) -> dict[str, Any]:
    pk_name, sk_name = index.keys
    return sized(300, **{pk_name: {"S": pk}, sk_name: {"S": "m#1"}}, **extra)


@pytest.mark.parametrize("index", [ALL, KEYS_ONLY], ids=["ALL", "KEYS_ONLY"])
def test_an_item_entering_or_leaving_an_index_is_one_index_write(index):
    assert index_units(index, None, _in(index)) == 1  # a new item defining the index keys
    plain = sized(300)
    assert index_units(index, plain, _in(index)) == 1  # an update defining them
    assert index_units(index, _in(index), plain) == 1  # an update removing them
    assert index_units(index, _in(index), None) == 1  # a delete


@pytest.mark.parametrize("index", [ALL, KEYS_ONLY], ids=["ALL", "KEYS_ONLY"])
def test_changing_an_index_key_is_a_delete_and_a_put(index):
    assert index_units(index, _in(index, "EXPIRY#2027-01-01"), _in(index, "EXPIRY#2027-02-01")) == 2


def test_an_item_in_no_index_costs_no_index_write():
    assert index_units(ALL, sized(300), sized(400)) == 0
    assert index_units(ALL, None, sized(300)) == 0


def test_only_a_projected_attribute_changing_is_one_index_write():
    before = _in(ALL, n={"N": "1"})
    assert index_units(ALL, before, {**before, "n": {"N": "2"}}) == 1  # ALL projects every attribute
    before = _in(KEYS_ONLY, n={"N": "1"})
    assert index_units(KEYS_ONLY, before, {**before, "n": {"N": "2"}}) == 0  # KEYS_ONLY projects none of them


def test_an_index_entry_is_sized_like_an_item():
    big = sized(1500, gsi2pk={"S": "EXPIRY#2027-01-01"}, gsi2sk={"S": "m#1"})
    assert index_units(ALL, None, big) == 2  # ALL: the whole 1.5 KB item
    big = sized(1500, gsi3pk={"S": "HIST#m"}, gsi3sk={"S": "2027#o-1"})
    assert index_units(KEYS_ONLY, None, big) == 1  # KEYS_ONLY: only the table's and the index's keys


def test_the_table_indexes_come_from_the_template():
    from bench.capacity import INDEXES

    by_name = {i.name: i for i in INDEXES}
    assert by_name["gsi2"] == Index("gsi2", ("gsi2pk", "gsi2sk"), "ALL")
    # a new lot: its ledger entry (transactional) and its copy in the expiry index (not doubled: the index
    # is maintained after the transaction, it is not one of the transaction's items)
    lot = sized(600, gsi2pk={"S": "EXPIRY#2027-01-01"}, gsi2sk={"S": "m#1"})
    assert write_units(None, lot, transactional=True) == 2 + 1


# ---- the meter's hooks, driven by hand ------------------------------------------------------------------
class FakeClient:
    """What the meter touches of a botocore client: its event emitter and get_item (to size items)."""

    def __init__(self) -> None:
        self.meta = SimpleNamespace(events=HierarchicalEmitter())
        self.items: dict[tuple[str, str], dict[str, Any]] = {}

    def get_item(self, TableName: str, Key: dict[str, Any], ConsistentRead: bool) -> dict[str, Any]:  # noqa: N803
        item = self.items.get((Key["pk"]["S"], Key["sk"]["S"]))
        return {"Item": item} if item else {}

    def call(self, operation: str, body: dict[str, Any], apply: Any = None, status: int = 200,
             parsed: dict[str, Any] | None = None) -> None:
        """One API call as botocore makes it: before-call (the serialised body), the service, after-call."""
        model = SimpleNamespace(name=operation)
        self.meta.events.emit(f"before-call.dynamodb.{operation}", model=model, params={"body": json.dumps(body)})
        if apply and status == 200:
            apply()
        self.meta.events.emit(f"after-call.dynamodb.{operation}", model=model, parsed=parsed or {},
                              http_response=SimpleNamespace(status_code=status))


def _key(item: dict[str, Any]) -> tuple[str, str]:
    return item["pk"]["S"], item["sk"]["S"]


def test_the_meter_prices_a_transaction_from_the_items_before_and_after():
    client = FakeClient()
    state = sized(300, sk="PROFILE#STATE", version={"N": "1"})
    client.items[_key(state)] = state
    lot = sized(500, gsi2pk={"S": "EXPIRY#2027-01-01"}, gsi2sk={"S": "m#1"}, kind={"S": "earn"})
    order = {**sized(900), "pk": {"S": "ORDER#o-1"}, "sk": {"S": "ORDER"}}
    new_state = {**state, "version": {"N": "2"}}
    body = {"TransactItems": [
        {"Put": {"TableName": "t", "Item": new_state, "ConditionExpression": "version = :v"}},
        {"Put": {"TableName": "t", "Item": lot}},
        {"Put": {"TableName": "t", "Item": order}},
    ]}

    def apply() -> None:
        for item in (new_state, lot, order):
            client.items[_key(item)] = item

    with CapacityMeter(client) as meter:
        client.call("TransactWriteItems", body, apply)
        usage = meter.take()
    # three items under 1 KB, doubled in the transaction, plus the lot's entry in the expiry index
    assert (usage.wcu, dict(usage.requests)) == (2 + 2 + 2 + 1, {"TransactWriteItems": 1})


def test_the_meter_prices_single_writes_and_leaves_failed_ones_out():
    client = FakeClient()
    counter = sized(3000, n={"N": "1"})
    client.items[_key(counter)] = counter
    update = {"TableName": "t", "Key": {"pk": counter["pk"], "sk": counter["sk"]}, "UpdateExpression": "ADD n :one"}

    def bump() -> None:
        client.items[_key(counter)] = {**counter, "n": {"N": "2"}}

    with CapacityMeter(client) as meter:
        client.call("UpdateItem", update, bump)  # one counter of a 3 KB item: 3 units
        client.call("UpdateItem", update, bump, status=400)  # refused: counted as a request, no units
        client.call("DeleteItem", {"TableName": "t", "Key": update["Key"]},
                    lambda: client.items.pop(_key(counter)))  # the deleted item's size: 3 units
        usage = meter.take()
    assert (usage.wcu, dict(usage.requests)) == (3 + 3, {"UpdateItem": 2, "DeleteItem": 1})


def test_the_meter_adds_up_the_read_units_dynamodb_reports_and_ignores_its_own_reads():
    client = FakeClient()
    with CapacityMeter(client) as meter:
        client.call("GetItem", {"TableName": "t"}, parsed={"ConsumedCapacity": {"CapacityUnits": 0.5}})
        client.call("BatchGetItem", {}, parsed={"ConsumedCapacity": [{"CapacityUnits": 3.0},
                                                                     {"ReadCapacityUnits": 1.5}]})
        client.call("Query", {"TableName": "t"}, parsed={"ConsumedCapacity": {"CapacityUnits": 11.0}})
        usage = meter.take()
        assert meter.take().rcu == 0  # take() starts the next block from zero
    assert (usage.rcu, usage.wcu) == (0.5 + 3.0 + 1.5 + 11.0, 0)
    assert dict(usage.requests) == {"GetItem": 1, "BatchGetItem": 1, "Query": 1}


def test_the_meter_prices_a_batch_write_per_item_not_doubled():
    client = FakeClient()
    old = {**sized(200), "pk": {"S": "KBTERM#旧词"}, "sk": {"S": "a1"}}
    client.items[_key(old)] = old
    new = [{**sized(size), "pk": {"S": f"KBTERM#{n}"}, "sk": {"S": "a1"}} for n, size in enumerate((100, 1500))]
    body = {"RequestItems": {"t": [{"PutRequest": {"Item": new[0]}}, {"PutRequest": {"Item": new[1]}},
                                   {"DeleteRequest": {"Key": {"pk": old["pk"], "sk": old["sk"]}}}]}}

    def apply() -> None:
        for item in new:
            client.items[_key(item)] = item
        client.items.pop(_key(old))

    with CapacityMeter(client) as meter:
        # DynamoDB Local reports a batch's units as CapacityUnits: they must not be taken for reads
        client.call("BatchWriteItem", body, apply, parsed={"ConsumedCapacity": [{"CapacityUnits": 3.0}]})
        usage = meter.take()
    assert (usage.rcu, usage.wcu, dict(usage.requests)) == (0, 1 + 2 + 1, {"BatchWriteItem": 1})
