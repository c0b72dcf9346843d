"""16 POS threads post orders to ONE store at once, over real HTTP (members and guests, some orders sent twice by
two threads): the day's rollup loses nothing and counts nothing twice, on one day item and spread over four."""
from __future__ import annotations

import uuid
from datetime import datetime, timedelta

import pytest

from chalicelib.domain import clock
from testkit.concurrency import at_once, call_retrying
from testkit.support import registration, unique_phone

THREADS = 16
PER_THREAD = 6


@pytest.mark.parametrize("shards", [1, 4])
def test_sixteen_threads_on_one_store_lose_nothing(live, api, tokens, shards):
    store = f"hot-{uuid.uuid4().hex[:8]}"
    hq = tokens.hq()
    assert api.put(f"/stores/{store}", {"name": "热门店", "region_id": "east", "city": "上海",
                                        "store_type": "standard", "rollup_shards": shards}, hq)[0] == 201
    staff = tokens.staff(stores=[store])
    members = [api.post("/members", registration(store_id=store), staff)[1]["member_id"] for _ in range(THREADS)]
    paid = (clock.now() - timedelta(minutes=5)).replace(second=0, microsecond=0)
    orders = []
    for t in range(THREADS):
        for i in range(PER_THREAD):
            amount = 1_000 + 37 * t + i
            body = {"order_id": f"o-{store}-{t}-{i}", "store_id": store, "channel": "store",
                    "paid_at": (paid - timedelta(hours=i)).isoformat(), "amount": amount,
                    "items": [{"sku": "s", "name": "奶茶", "category": "tea", "qty": 1, "amount": amount}]}
            body |= {"member_id": members[t]} if i % 3 else {"phone": unique_phone()}
            orders.append(body)

    def thread(t: int):  # noqa: ANN202
        mine = orders[t * PER_THREAD:(t + 1) * PER_THREAD]
        mine += orders[((t + 1) % THREADS) * PER_THREAD:][:2]  # two of the next thread's orders again
        return [call_retrying(live, "POST", "/orders", body, staff) for body in mine]

    answers = [a for batch in at_once([lambda t=t: thread(t) for t in range(THREADS)]) for a in batch]
    assert {status for status, _ in answers} <= {200, 201}, [a for a in answers if a[0] not in (200, 201)][:3]
    assert sum(1 for status, _ in answers if status == 201) == len(orders)  # each order created exactly once

    first = min(clock.business_day(paid - timedelta(hours=i)) for i in range(PER_THREAD))
    last = clock.business_day(clock.now())
    status, report = api.get(f"/stores/{store}/report?from={first}&to={last}", staff)
    assert status == 200, report
    k = report["kpis"]
    assert k["orders"] == len(orders) and k["sales_fen"] == sum(o["amount"] for o in orders)
    assert k["guest_orders"] == sum(1 for o in orders if "phone" in o)
    assert k["member_orders"] == sum(1 for o in orders if "member_id" in o)
    assert k["new_members"] == THREADS
    want_hours = [0] * 24
    for o in orders:
        want_hours[datetime.fromisoformat(o["paid_at"]).astimezone(clock.BUSINESS_TZ).hour] += 1
    assert report["hours"] == want_hours
    items = live_day_items(store)
    assert len({i["sk"].split("#")[2] if i["sk"].count("#") == 2 else "00" for i in items}) <= shards
    if shards > 1:  # the orders did spread: more than one item holds a day's orders
        assert sum(1 for i in items if i.get("orders")) > 1


def live_day_items(store: str) -> list[dict]:
    from chalicelib import bootstrap

    return list(bootstrap.db().query_all(KeyConditionExpression="pk = :pk AND begins_with(sk, :d)",
                                         values={":pk": f"STORE#{store}", ":d": "DAY#"}))
