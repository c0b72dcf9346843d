"""The cost shape of posting an order, checked on every change (`make bench` prints the whole table).

Requests are counted and write units computed from item sizes under AWS's billing rules by the
benchmark's meter; nothing here is timed."""
from __future__ import annotations

import pytest

from bench.capacity import CapacityMeter
from chalicelib import bootstrap
from chalicelib.domain.access import Principal, Role
from chalicelib.domain.orders import OrderInput
from chalicelib.services import posting
from testkit.ledger import order
from testkit.support import registration

CLERK = Principal(sub="cost-clerk", role=Role.STAFF, store_ids=frozenset({"sh-001"}))


def _post(body: dict) -> posting.Posted:
    return posting.post_order(OrderInput.model_validate(body), CLERK, bootstrap.members(), bootstrap.ledger(),
                             bootstrap.stores())


# The design: 4 items under 1 KB, doubled in the transaction, + the lot's expiry-index copy, + the earn
# entry's keys-only copy in the purchase-history index (newest paid first): 10 for 1 or 5 lines, 12 for 20.
# The budget is 10 for 5 lines: that order is now AT the budget, so any regression fails here.
@pytest.mark.parametrize(("lines", "most_units"), [(1, 10), (5, 10), (20, 12)])
def test_an_order_is_one_read_and_one_transaction_within_the_unit_budget(stack, api, tokens, lines, most_units):
    member = api.post("/members", registration(), tokens.staff(stores=["sh-001"]))[1]["member_id"]
    assert _post(order(member, amount=3_000)).created  # the steady state: the member's points state exists
    body = order(member, amount=20_000, lines=lines)
    for line in body["items"]:  # POS-sized lines: a real sku and product name
        line["sku"], line["name"] = f"SKU-{line['sku']}-0001", f"招牌奶茶 大杯 少冰 {line['name']}"
    with CapacityMeter(bootstrap.dynamodb_client()) as meter:
        assert _post(body).created
        used = meter.take()
    assert dict(used.requests) == {"Query": 1, "TransactWriteItems": 1}
    assert used.wcu <= most_units, f"{lines}-line order: {used.wcu} WCU"
