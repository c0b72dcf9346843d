"""Load and retry storm against the local API, then an audit of the books. Prints one report to stdout
(progress goes to stderr). Never fails on a time; exits 1 if a 5xx was final or an invariant broke.

    .venv/bin/python -m bench.load            # 24 threads, 20 s
    .venv/bin/python -m bench.load --quick    # 8 threads, 5 s
    .venv/bin/python -m bench.load --faults   # the same while DynamoDB throttles, conflicts and loses acks

It starts the local stack in this process (DynamoDB Local, moto, the demo stores, the app over real HTTP on
loopback). Client threads act as POS terminals and clerks on a handful of members: new orders, partial
refunds and point redemptions, and exact duplicates of each of them, sent while the original may still be
in flight (a terminal that timed out and sends again). A 503 is the API's "retry" answer: the client sends
the same body again (bounded). Afterwards the auditor (testkit/audit.py) walks every member and the
client's own record is held against the table: balance == ledger == lot remainders, no order credited
twice and none lost, no refund or redemption applied twice, every duplicate answered like the original.

Numbers are LOCAL (Chalice's dev server and DynamoDB Local on this machine, contending for its cores):
for comparing our own versions with each other, not a promise about Lambda or DynamoDB on AWS.
"""
from __future__ import annotations

import argparse
import os
import random
import signal
import statistics
import sys
import threading
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

KINDS = ("order", "order (duplicate)", "refund", "refund (duplicate)", "redemption", "redemption (duplicate)")
WEIGHTS = (30, 15, 12, 6, 25, 12)
RETRIES = 60  # attempts per request while the API answers 503
FAULTS = {"throttle": 0.05, "conflict": 0.1, "lost_ack": 0.1}  # the rates tests/integration/test_faults.py uses


@dataclass
class Sent:
    kind: str
    path: str
    body: dict[str, Any]
    status: int
    answer: Any
    attempts: int


@dataclass
class Run:
    """What the clients saw; shared by the threads (appends and Counter updates under the lock)."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    sent: list[Sent] = field(default_factory=list)
    latency: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))  # per attempt, ms
    requests: Counter[str] = field(default_factory=Counter)  # attempts per kind, retries included
    retried: Counter[str] = field(default_factory=Counter)  # 503 answers (then sent again)
    statuses: Counter[tuple[str, int]] = field(default_factory=Counter)  # final answers
    # Documents as soon as they are SENT (so a duplicate may race its original, as a POS retrying after a
    # timeout does), and the orders answered 2xx (what refunds are drawn from).
    order_bodies: list[dict[str, Any]] = field(default_factory=list)
    orders: list[dict[str, Any]] = field(default_factory=list)
    refunds: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    redemptions: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    server_errors: list[str] = field(default_factory=list)  # any 5xx other than 503, and 503s never resolved


def _post(http: Any, url: str, path: str, body: dict, headers: dict, kind: str, run: Run) -> Sent:
    for attempt in range(1, RETRIES + 1):
        started = time.perf_counter()
        resp = http.post(url + path, json=body, headers=headers, timeout=60)
        elapsed = (time.perf_counter() - started) * 1000
        with run.lock:
            run.requests[kind] += 1
            run.latency[kind].append(elapsed)
            if resp.status_code == 503:
                run.retried[kind] += 1
        if resp.status_code != 503:
            break
        time.sleep(min(0.2, 0.01 * attempt))
    answer = resp.json() if resp.content else None
    sent = Sent(kind, path, body, resp.status_code, answer, attempt)
    with run.lock:
        run.sent.append(sent)
        run.statuses[(kind, resp.status_code)] += 1
        if resp.status_code >= 500:
            run.server_errors.append(f"{kind} {path}: {resp.status_code} {resp.text[:200]}")
    return sent


def _client(n: int, url: str, headers: dict, members: list[str], deadline: float, max_requests: int,
            run: Run) -> None:
    import requests

    from testkit.ledger import order

    rng = random.Random(n)
    http = requests.Session()
    done = 0
    while time.monotonic() < deadline and done < max_requests:
        done += 1
        kind = rng.choices(KINDS, WEIGHTS)[0]
        member = rng.choice(members)
        with run.lock:
            sent_orders, orders = list(run.order_bodies), list(run.orders)
            refunds, redemptions = list(run.refunds), list(run.redemptions)
        if kind == "refund (duplicate)" and not refunds:
            kind = "refund"
        if (kind == "order (duplicate)" and not sent_orders) or (kind == "refund" and not orders):
            kind = "order"
        if kind == "redemption (duplicate)" and not redemptions:
            kind = "redemption"
        if kind == "order":
            body = order(member, amount=rng.randrange(100, 6_000), lines=rng.randrange(1, 4))
            with run.lock:
                run.order_bodies.append(body)
            if _post(http, url, "/orders", body, headers, kind, run).status in (200, 201):
                with run.lock:
                    run.orders.append(body)
        elif kind == "order (duplicate)":
            _post(http, url, "/orders", rng.choice(sent_orders), headers, kind, run)
        elif kind == "refund":
            target = rng.choice(orders)
            body = {"refund_id": f"rf-{uuid.uuid4().hex[:12]}", "amount": rng.randrange(1, target["amount"] // 3 + 2)}
            path = f"/orders/{target['order_id']}/refunds"
            with run.lock:
                run.refunds.append((path, body))
            _post(http, url, path, body, headers, kind, run)
        elif kind == "refund (duplicate)":
            _post(http, url, *rng.choice(refunds), headers, kind, run)
        elif kind == "redemption":
            body = {"redemption_id": f"rd-{uuid.uuid4().hex[:12]}", "points": rng.randrange(1, 40),
                    "reason": "load", "store_id": "sh-001"}
            path = f"/members/{member}/points/redemptions"
            with run.lock:
                run.redemptions.append((path, body))
            _post(http, url, path, body, headers, kind, run)
        else:
            _post(http, url, *rng.choice(redemptions), headers, kind, run)
    http.close()


def _checks(run: Run, members: list[str], url: str, headers: dict) -> list[tuple[str, bool, str]]:
    """(invariant, held, detail) for the auditor's walk and for what the clients were answered."""
    import requests

    from testkit.audit import audit_member

    results: list[tuple[str, bool, str]] = []
    ok = {200, 201}
    for m in members:
        try:
            report = audit_member(m)  # balance == ledger == lot remainders, nothing applied twice
            results.append(("balance == ledger == lot remainders, nothing twice (auditor) @ " + m, True, ""))
        except AssertionError as err:
            results.append(("balance == ledger == lot remainders, nothing twice (auditor) @ " + m, False, str(err)))
            continue
        answered = {s.body["order_id"] for s in run.sent if s.path == "/orders" and s.body["member_id"] == m
                    and s.status in ok}
        results.append(("each order answered 2xx credited exactly once @ " + m, report["orders"] == len(answered) + 1,
                        f"{m}: ledger {report['orders']}, answered {len(answered)} + 1 seed"))
        spent = {s.body["redemption_id"] for s in run.sent if s.path == f"/members/{m}/points/redemptions"
                 and s.status in ok}
        results.append(("each redemption answered 2xx spent exactly once @ " + m, report["redemptions"] == len(spent),
                        f"{m}: ledger {report['redemptions']}, answered {len(spent)}"))
    # Refunds: each order's refunded amount is the sum of the distinct refunds it was answered 2xx for.
    refunded: dict[str, dict[str, int]] = defaultdict(dict)
    for s in run.sent:
        if "/refunds" in s.path and s.status in ok:
            refunded[s.path.split("/")[2]][s.body["refund_id"]] = s.body["amount"]
    http = requests.Session()
    wrong = []
    for order_id, by_refund in refunded.items():
        view = http.get(f"{url}/orders/{order_id}", headers=headers, timeout=60).json()
        if view["refunded_amount"] != sum(by_refund.values()):
            wrong.append(f"{order_id}: refunded {view['refunded_amount']} != answered {sum(by_refund.values())}")
    results.append(("refunded amount == sum of distinct refunds answered 2xx", not wrong,
                    "; ".join(wrong[:3]) or f"{len(refunded)} orders refunded"))
    # Every duplicate was answered like the original (same points for an order, same balance effect).
    answers: dict[str, set[Any]] = defaultdict(set)
    for s in run.sent:
        if s.status in ok:
            key = s.body.get("redemption_id") or s.body.get("refund_id") or s.body.get("order_id")
            answers[f"{s.path}|{key}"].add(repr(_stable(s.answer)))
    differing = [k for k, v in answers.items() if len(v) > 1]
    results.append(("every duplicate answered like the original", not differing,
                    f"{len(answers)} documents" if not differing else f"{differing[:3]}"))
    results.append(("no 5xx kept by a client (503s retried)", not run.server_errors,
                     "; ".join(run.server_errors[:3]) or "0"))
    return results


def _stable(answer: Any) -> Any:
    """The part of an answer that must not change between the first answer and a replay."""
    if not isinstance(answer, dict):
        return answer
    keep = ("order_id", "points_earned", "debt_paid", "refund_id", "amount", "points_reversed", "redemption_id",
            "points", "lots", "created_at")
    return {k: answer.get(k) for k in keep if k in answer}


def _table_rows(run: Run, seconds: float) -> list[list[str]]:
    rows = []
    for kind in KINDS:
        ms = run.latency.get(kind) or []
        if not ms:
            continue
        cuts = statistics.quantiles(ms, n=100, method="inclusive") if len(ms) > 1 else [ms[0]] * 99
        final = {s: n for (k, s), n in run.statuses.items() if k == kind}
        ok = final.get(200, 0) + final.get(201, 0)
        refused = sum(n for s, n in final.items() if 400 <= s < 500)
        fivexx = sum(n for s, n in final.items() if s >= 500)
        rows.append([kind, str(run.requests[kind]), str(ok), str(refused), str(run.retried[kind]), str(fivexx),
                     f"{run.requests[kind] / seconds:.1f}", f"{cuts[49]:.1f}", f"{cuts[89]:.1f}", f"{cuts[98]:.1f}"])
    total = sum(run.requests.values())
    everything = [x for ms in run.latency.values() for x in ms]
    cuts = statistics.quantiles(everything, n=100, method="inclusive")
    rows.append(["all", str(total), str(sum(n for (_, s), n in run.statuses.items() if s in (200, 201))),
                 str(sum(n for (_, s), n in run.statuses.items() if 400 <= s < 500)), str(sum(run.retried.values())),
                 str(sum(n for (_, s), n in run.statuses.items() if s >= 500)), f"{total / seconds:.1f}",
                 f"{cuts[49]:.1f}", f"{cuts[89]:.1f}", f"{cuts[98]:.1f}"])
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.load", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="8 threads for 5 s (a smoke run)")
    parser.add_argument("--faults", action="store_true",
                        help="wrap the app's DynamoDB client with testkit/faults.FaultInjector "
                             + ", ".join(f"{k} {v:.0%}" for k, v in FAULTS.items()))
    parser.add_argument("--threads", type=int, help="client threads (default 24, quick 8)")
    parser.add_argument("--seconds", type=float, help="how long the clients send (default 20, quick 5)")
    parser.add_argument("--members", type=int, help="members the load is spread over (default 8, quick 4)")
    parser.add_argument("--max-requests", type=int, default=2_000, help="per thread, whatever the time")
    args = parser.parse_args(argv)
    threads = args.threads or (8 if args.quick else 24)
    seconds = args.seconds or (5.0 if args.quick else 20.0)
    n_members = args.members or (4 if args.quick else 8)

    # Before chalicelib.observability is imported: no audit JSON lines or EMF blobs in the report.
    os.environ.setdefault("POWERTOOLS_METRICS_DISABLED", "true")
    os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "ERROR")

    import requests

    from chalicelib import bootstrap
    from chalicelib.local.stack import LOCAL_DIR, LocalStack, new_secret_bundle
    from testkit.faults import FaultInjector
    from testkit.ledger import order
    from testkit.support import LiveServer, Tokens, auth, create_stores, registration

    from .__main__ import noise, progress, table

    progress("starting DynamoDB Local, moto and the fake WeChat")
    stack = LocalStack(new_secret_bundle(), table_name=f"chaincrm-load-{uuid.uuid4().hex[:8]}").start()
    log = LOCAL_DIR / "load.log"
    run, faults = Run(), None
    try:
        with noise(log):
            bootstrap.reset()
            create_stores()
            server = LiveServer().start()
            try:
                headers = auth(Tokens(stack.bundle).staff(stores=["sh-001"]))
                http = requests.Session()
                members = []
                for _ in range(n_members):  # each starts with 500 points to spend
                    m = http.post(f"{server.url}/members", json=registration(), headers=headers).json()["member_id"]
                    first = order(m, amount=50_000)
                    assert http.post(f"{server.url}/orders", json=first, headers=headers).status_code == 201
                    members.append(m)
                progress(f"{threads} client threads for {seconds:g} s on {n_members} members"
                         + (" with DynamoDB faults" if args.faults else "") + f" (app output: {log})")
                deadline = time.monotonic() + seconds
                workers = [threading.Thread(target=_client, args=(i, server.url, headers, members, deadline,
                                                                  args.max_requests, run)) for i in range(threads)]
                started = time.monotonic()
                injector = FaultInjector(bootstrap.dynamodb_client(), seed=7, **FAULTS) if args.faults else None
                if injector:
                    injector.__enter__()
                try:
                    for t in workers:
                        t.start()
                    for t in workers:
                        t.join()
                finally:
                    if injector:
                        injector.__exit__(None, None, None)
                        faults = injector.injected
                elapsed = time.monotonic() - started
                progress("auditing every member")
                checks = _checks(run, members, server.url, headers)
            finally:
                server.stop()
    finally:
        stack.stop()

    rows = _table_rows(run, elapsed)
    passed = sum(1 for _, held, _ in checks if held)
    grouped: dict[str, list[tuple[bool, str]]] = defaultdict(list)
    for name, held, detail in checks:
        grouped[name.split(" @ ")[0]].append((held, detail))
    check_rows = []
    for name, results in grouped.items():
        broken = [detail for held, detail in results if not held]
        detail = broken[0][:110] if broken else results[0][1] if len(results) == 1 else f"{len(results)} members"
        check_rows.append([name, f"{len(results) - len(broken)}/{len(results)}", detail])
    report = [
        f"chaincrm load / retry storm: {threads} threads, {elapsed:.1f} s, {n_members} members"
        + (", DynamoDB faults injected" if args.faults else ""),
        "LOCAL numbers (Chalice's dev server + DynamoDB Local on this machine): for comparing our own versions,",
        "not a promise about Lambda, API Gateway or DynamoDB on AWS.",
        "",
        table(["requests", "sent", "2xx", "4xx", "503 retried", "5xx final", "req/s", "p50 ms", "p90 ms", "p99 ms"],
              rows),
        "",
        "   sent = every HTTP request (retries included); 2xx/4xx/5xx final = the answer a client kept; a 4xx is",
        "   a refusal the API documents (not enough points 409, refund beyond the order 422); latency per attempt.",
    ]
    if faults is not None:
        report.append("   faults injected: " + ", ".join(f"{k} {faults[k]}" for k in FAULTS))
    report += ["", f"Invariants: {passed}/{len(checks)} checks passed", ""]
    report.append(table(["invariant", "held", "detail"], check_rows))
    print("\n".join(report))
    return 0 if passed == len(checks) else 1


if __name__ == "__main__":
    # `kill` (SIGTERM) unwinds through main's finally, so DynamoDB Local and moto are stopped too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    sys.exit(main())
