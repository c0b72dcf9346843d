"""32 POS threads over real HTTP hammer ONE member with new and duplicate orders and redemptions.
Afterwards the auditor proves: balance == sum of the ledger == lot remainders, nothing credited or spent
twice, no redemption took the balance below zero; and the balance is exactly what the answers add up to:
the points of every order answered 2xx, less the points of every redemption answered 2xx."""
from __future__ import annotations

import random
import uuid
from concurrent.futures import ThreadPoolExecutor

import requests

from testkit.audit import audit_member
from testkit.ledger import order
from testkit.support import auth, registration

THREADS = 32


def _call(session, method, url, token, body):
    """A POS client: retries 503s (contention, timeouts) and dropped connections with the same body, as
    the API asks it to (the answer of a dropped call may be lost after the write: a retry must replay)."""
    for _ in range(30):
        try:
            resp = session.request(method, url, json=body, headers=auth(token), timeout=30)
        except requests.ConnectionError:
            continue
        if resp.status_code != 503:
            return resp
    return resp


def test_concurrent_orders_and_redemptions_on_one_member(live, api, tokens):
    staff = tokens.staff(stores=["sh-001"])
    member = api.post("/members", registration(), staff)[1]["member_id"]
    status, first = api.post("/orders", order(member, amount=50_000), staff)  # 500 points to start
    assert (status, first["points_earned"]) == (201, 500), first
    shared_orders = [order(member, amount=2_000) for _ in range(16)]  # each posted by several threads
    shared_redemptions = [{"redemption_id": f"red-{uuid.uuid4().hex[:8]}", "points": 40, "reason": "兑换",
                           "store_id": "sh-001"} for _ in range(24)]  # 960 wanted: more than can be had
    rng = random.Random(7)
    jobs = []
    for i in range(THREADS * 4):
        kind = rng.choice(["order", "dup_order", "redeem", "redeem"])
        if kind == "order":
            jobs.append(("POST", "/orders", order(member, amount=rng.randrange(100, 5_000))))
        elif kind == "dup_order":
            jobs.append(("POST", "/orders", rng.choice(shared_orders)))
        else:
            jobs.append(("POST", f"/members/{member}/points/redemptions", rng.choice(shared_redemptions)))
    jobs += [("POST", "/orders", o) for o in shared_orders]  # every shared order is posted at least once

    with ThreadPoolExecutor(THREADS) as pool, requests.Session() as session:
        results = list(pool.map(lambda job: (job, _call(session, job[0], live.url + job[1], staff, job[2])), jobs))

    statuses = [r.status_code for _, r in results]
    assert set(statuses) <= {200, 201, 409}, [r.text for _, r in results if r.status_code not in (200, 201, 409)]
    for (_, path, body), resp in results:
        if resp.status_code == 409:  # only a lack of points may refuse, never a broken replay
            assert "redemptions" in path and resp.json()["code"] == "insufficient_points"

    report = audit_member(member)
    # every answer to a duplicate is the first answer: same points for the same order everywhere
    by_order: dict[str, set[int]] = {}
    for (_, p, b), r in results:
        if p == "/orders":
            by_order.setdefault(b["order_id"], set()).add(r.json()["points_earned"])
    assert all(len(v) == 1 for v in by_order.values())
    earned = {order_id: points.pop() for order_id, points in by_order.items()}  # each order answered 2xx
    redeemed: dict[str, int] = {}
    for (_, p, b), r in results:
        if "redemptions" in p and r.status_code in (200, 201):
            assert r.json()["points"] == b["points"]
            redeemed[b["redemption_id"]] = b["points"]
    assert report["orders"] == len(earned) + 1
    assert report["redemptions"] == len(redeemed)
    # the amounts, not only the counts: what the answers promised is what the member holds
    expected = 500 + sum(earned.values()) - sum(redeemed.values())
    assert (report["balance"], report["available"], report["owed"]) == (expected, expected, 0)
    view = api.get(f"/members/{member}/points", staff)[1]
    assert (view["balance"], view["available"], view["owed"]) == (expected, expected, 0)
    assert 0 < sum(redeemed.values()) and expected >= 0  # some redemptions went through, none overdrew
