"""Latency through the local API over real HTTP: one sequential client, so the numbers are per-request cost
(auth, validation, serialisation, DynamoDB Local round trips), not throughput under load."""
from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

import requests

from testkit.support import LiveServer, Tokens, auth, registration, unique_phone


def _timed(call: Callable[[], requests.Response], expect: int) -> float:
    started = time.perf_counter()
    resp = call()
    elapsed = time.perf_counter() - started
    if resp.status_code != expect:  # a fast error is not a fast endpoint
        raise RuntimeError(f"{resp.request.method} {resp.request.path_url}: {resp.status_code} {resp.text[:300]}")
    return elapsed * 1000


def summary(ms: list[float]) -> dict[str, float]:
    cuts = statistics.quantiles(ms, n=100, method="inclusive")
    return {"p50": cuts[49], "p90": cuts[89], "p99": cuts[98], "mean": statistics.fmean(ms)}


def measure(bundle: dict[str, str], warmup: int, calls: int) -> list[tuple[str, dict[str, float]]]:
    server = LiveServer().start()  # with Nagle off: see chalicelib/local/server.py
    try:
        headers = auth(Tokens(bundle).staff(stores=["sh-001"]))
        http = requests.Session()
        phones: list[str] = []

        def register() -> requests.Response:
            phones.append(unique_phone())
            return http.post(f"{server.url}/members", json=registration(phones[-1]), headers=headers)

        def lookup(phone: str) -> Callable[[], requests.Response]:
            return lambda: http.get(f"{server.url}/members", params={"phone": phone}, headers=headers)

        results: list[tuple[str, dict[str, Any]]] = []
        post = [_timed(register, 201) for _ in range(warmup + calls)][warmup:]
        results.append(("POST /members (new phone)", summary(post)))
        # Look up the phones just registered: every GET is a hit, as at the counter.
        get = [_timed(lookup(phones[i % len(phones)]), 200) for i in range(warmup + calls)][warmup:]
        results.append(("GET /members?phone=... (hit)", summary(get)))
        return results
    finally:
        server.stop()
