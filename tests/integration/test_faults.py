"""With DynamoDB failing a fraction of calls (throttling, transaction conflicts, writes applied but their
answer lost), clients that retry converge: every order credited once, every redemption spent once, the
books still balance, and each member holds exactly what the answers add up to."""
from __future__ import annotations

import random
import uuid
from concurrent.futures import ThreadPoolExecutor

import requests

from chalicelib import bootstrap
from testkit.audit import audit_member
from testkit.faults import FaultInjector
from testkit.ledger import order
from testkit.support import auth, registration


def _until_answered(session, url, token, body):
    """Retry on 503 (the API's 'retry' answer) with the same body; anything else is final."""
    for _ in range(60):
        resp = session.post(url, json=body, headers=auth(token), timeout=30)
        if resp.status_code != 503:
            return resp
    raise AssertionError(f"never converged: {resp.status_code} {resp.text}")


def test_retries_converge_under_injected_faults(live, api, tokens):
    staff = tokens.staff(stores=["sh-001"])
    members = [api.post("/members", registration(), staff)[1]["member_id"] for _ in range(3)]
    start = {}
    for m in members:
        status, first = api.post("/orders", order(m, amount=30_000), staff)  # 300 points each to spend
        assert status == 201, first
        start[m] = first["points_earned"]
    rng = random.Random(11)
    jobs = []
    for _ in range(90):
        m = rng.choice(members)
        if rng.random() < 0.6:
            jobs.append(("/orders", order(m, amount=rng.randrange(100, 3_000))))
        else:
            jobs.append((f"/members/{m}/points/redemptions",
                         {"redemption_id": f"f-{uuid.uuid4().hex[:8]}", "points": rng.randrange(1, 60),
                          "reason": "fault", "store_id": "sh-001"}))
    jobs += jobs[:20]  # plus plain duplicates

    with FaultInjector(bootstrap.dynamodb_client(), throttle=0.05, conflict=0.1, lost_ack=0.15) as faults, \
            ThreadPoolExecutor(8) as pool, requests.Session() as session:
        results = list(pool.map(lambda job: (job, _until_answered(session, live.url + job[0], staff, job[1])), jobs))
    assert faults.injected["lost_ack"] > 5 and faults.injected["conflict"] > 5 and faults.injected["throttle"] > 5

    for (path, body), resp in results:
        assert resp.status_code in (200, 201, 409), resp.text
        if resp.status_code == 409:
            assert resp.json()["code"] == "insufficient_points"
    for m in members:
        report = audit_member(m)
        earned: dict[str, int] = {}  # order id -> points, from its answers (first and replays must agree)
        for (p, b), r in results:
            if p == "/orders" and b["member_id"] == m:
                assert earned.setdefault(b["order_id"], r.json()["points_earned"]) == r.json()["points_earned"]
        assert report["orders"] == len(earned) + 1  # each order credited exactly once, none lost
        spent = {b["redemption_id"]: b["points"] for (p, b), r in results
                 if p.startswith(f"/members/{m}/") and r.status_code < 300}
        assert report["redemptions"] == len(spent)
        # the amounts, not only the counts: nothing lost, nothing doubled, whatever the faults did
        expected = start[m] + sum(earned.values()) - sum(spent.values())
        assert (report["balance"], report["available"], report["owed"]) == (expected, expected, 0), m
