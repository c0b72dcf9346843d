"""Concurrency tests' tools: release calls together, and call the live API as a retrying client would."""
from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import requests

from .support import auth


def at_once(calls: list[Callable[[], Any]]) -> list[Any]:
    """Every call in its own thread, released together by a barrier; answers in the order of `calls`."""
    barrier = threading.Barrier(len(calls))

    def run(call: Callable[[], Any]) -> Any:
        barrier.wait()
        return call()

    with ThreadPoolExecutor(len(calls)) as pool:
        return list(pool.map(run, calls))


def call_retrying(live: Any, method: str, path: str, body: Any, token: str, tries: int = 40) -> tuple[int, Any]:
    """One HTTP call as a client makes it: a 503 (contention: the API asks for a retry) is retried with the same
    body; anything else is the answer."""
    with requests.Session() as session:
        for _ in range(tries):
            resp = session.request(method, live.url + path, json=body, headers=auth(token), timeout=60)
            if resp.status_code != 503:
                return resp.status_code, resp.json()
    raise AssertionError(f"still 503 after {tries} tries: {resp.text}")
