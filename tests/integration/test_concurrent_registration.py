"""Registration races through the real HTTP stack (threaded local server, DynamoDB Local)."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import requests

from testkit.support import auth, registration, unique_phone

THREADS = 20


def _register(live, token, body):
    return requests.post(f"{live.url}/members", json=body, headers=auth(token), timeout=30)


def _members_with_phone(stack, phone):
    """Count profile items carrying this phone, straight from the table (not through our code)."""
    from chalicelib import bootstrap

    phone_hash = bootstrap.members().phone_hash(phone)
    items = stack.client("dynamodb").query(
        TableName=stack.table_name, IndexName="gsi1", KeyConditionExpression="gsi1pk = :p",
        ExpressionAttributeValues={":p": {"S": f"PHONE#{phone_hash}"}})["Items"]
    return {i["member_id"]["S"] for i in items}


def test_twenty_threads_same_phone_make_one_member(stack, live, tokens):
    phone = unique_phone()
    token_a, token_b = tokens.staff(stores=["sh-001"]), tokens.staff("integration", stores=["mall"])
    bodies = [registration(phone) if i % 2 else registration(phone, store_id="mall", channel="mall")
              for i in range(THREADS)]
    with ThreadPoolExecutor(THREADS) as pool:
        responses = list(pool.map(lambda i: _register(live, token_a if i % 2 else token_b, bodies[i]),
                                  range(THREADS)))
    assert all(r.status_code in (200, 201) for r in responses), [r.text for r in responses if r.status_code >= 300]
    assert [r.status_code for r in responses].count(201) == 1
    ids = {r.json()["member_id"] for r in responses}
    assert len(ids) == 1
    assert _members_with_phone(stack, phone) == ids
    # both channels were recorded, neither lost to the race
    assert set(responses[0].json()["channels"]) <= {"store", "mall"}
    final = requests.get(f"{live.url}/members/{ids.pop()}", headers=auth(tokens.hq()), timeout=10).json()
    assert final["channels"] == ["mall", "store"]


def test_twenty_threads_different_phones_make_twenty_members(stack, live, tokens):
    token = tokens.staff(stores=["sh-001"])
    phones = [unique_phone() for _ in range(THREADS)]
    with ThreadPoolExecutor(THREADS) as pool:
        responses = list(pool.map(lambda p: _register(live, token, registration(p)), phones))
    assert [r.status_code for r in responses] == [201] * THREADS
    assert len({r.json()["member_id"] for r in responses}) == THREADS
    for phone in phones:
        assert len(_members_with_phone(stack, phone)) == 1
