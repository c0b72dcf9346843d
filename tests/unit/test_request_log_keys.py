"""Caller fields appended to the logger for one request must not reach the next request's log lines: Lambda
keeps the container (and the module-level Logger) warm between requests, whoever sends them."""
from __future__ import annotations

import io
import json
import logging
from types import SimpleNamespace

import pytest

from chalicelib import bootstrap
from chalicelib.api import routing
from chalicelib.observability import CALLER_LOG_KEYS, logger


class _Tokens:
    def verify(self, token: str) -> SimpleNamespace:
        role, sub = token.split(":")
        return SimpleNamespace(claims={"sub": sub, "role": role})


@pytest.fixture
def lines(monkeypatch):  # noqa: ANN001, ANN201
    monkeypatch.setattr(bootstrap, "tokens", lambda: _Tokens())
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logger.registered_formatter)
    logger.addHandler(handler)
    yield lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    logger.removeHandler(handler)
    logger.remove_keys(list(CALLER_LOG_KEYS))


@pytest.fixture
def handlers():  # noqa: ANN201
    """A public and an authenticated route built by the real decorator (taken out of ROUTES afterwards)."""
    before = len(routing.ROUTES)

    def view(call: routing.Call) -> routing.Reply:
        logger.info("in the view")
        return routing.Reply({"ok": True})

    secured = routing.route("/log-keys-test", "GET", op="members.view", summary="t", tag="t")(view)
    public = routing.route("/log-keys-public", "GET", op="meta.health", summary="t", tag="t")(view)
    yield secured, public
    del routing.ROUTES[before:]


def _request(token: str | None, request_id: str) -> SimpleNamespace:
    headers = {"authorization": f"Bearer {token}"} if token else {}
    return SimpleNamespace(context={"requestId": request_id}, headers=headers, query_params=None, raw_body=b"",
                           json_body=None)


def test_caller_fields_do_not_outlive_their_request(lines, handlers):  # noqa: ANN001
    secured, public = handlers
    # Given a warm container that served an HQ user
    secured(_request("hq:user-1", "req-1"))
    # When the next requests are anonymous: a public route, then a request without a token
    public(_request(None, "req-2"))
    secured(_request(None, "req-3"))
    # Then only the first request's lines name the caller
    by_request: dict[str, list[dict]] = {}
    for line in lines():
        by_request.setdefault(line.get("correlation_id"), []).append(line)
    assert by_request["req-1"] and all(line.get("caller_sub") == "user-1" for line in by_request["req-1"])
    assert by_request["req-2"]
    assert not any(key in line for line in by_request["req-2"] for key in CALLER_LOG_KEYS), by_request["req-2"]
    assert not any(key in logger.get_current_keys() for key in CALLER_LOG_KEYS)
