"""Requests no route takes get our error shape, as the deployed API gives them (infra/stack.py maps API
Gateway's own answers to it): a known path with a method it does not route answers 405 `method_not_allowed`
with an Allow header listing the documented methods; an unknown path answers 404 `route_not_found`. Over real
HTTP against the local server (`make run`), and through chalicelib.local.server.TestClient (chalice.test's
Client with the same gateway)."""
from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from typing import Any

import pytest
from jsonschema import Draft202012Validator

MEMBER = "01ARZ3NDEKTSV4RRFFQ69G5FAV"

# (method, concrete path, documented path) for known paths
UNROUTED_METHODS = [
    ("TRACE", "/health", "/health"),
    ("DELETE", "/health", "/health"),
    ("OPTIONS", "/health", "/health"),
    ("PATCH", "/stores", "/stores"),
    ("POST", "/openapi.json", "/openapi.json"),
    ("PUT", f"/members/{MEMBER}", "/members/{member_id}"),
    ("OPTIONS", f"/members/{MEMBER}", "/members/{member_id}"),
    ("TRACE", f"/members/{MEMBER}/points", "/members/{member_id}/points"),
    ("DELETE", f"/members/{MEMBER}/points/redemptions", "/members/{member_id}/points/redemptions"),
    ("GET", "/orders", "/orders"),
    ("DELETE", "/tiers", "/tiers"),
    ("CONNECT", "/stores", "/stores"),
    ("QUERY", "/stores", "/stores"),
]
UNKNOWN_PATHS = [
    ("GET", "/nope"),
    ("TRACE", "/nope"),
    ("POST", "/points"),  # a prefix of routes, not a route
    ("DELETE", f"/members/{MEMBER}/points/lots"),
    ("OPTIONS", "/"),
    ("GET", "/members/x/y/z"),
]


@pytest.fixture(scope="module")
def doc() -> dict[str, Any]:
    from chalicelib.api.openapi import document

    return json.loads(json.dumps(document()))


def _error_shape(doc: dict[str, Any], body: Any) -> None:
    schema = {"$ref": "#/components/schemas/ErrorBody", "components": doc["components"]}
    errors = list(Draft202012Validator(schema).iter_errors(body))
    assert not errors, errors[0].message
    assert set(body) == {"code", "message", "details"}


class Http:
    """One keep-alive connection for every request: a HEAD answer with a body would break the next one."""

    def __init__(self, url: str) -> None:
        host, port = url.removeprefix("http://").split(":")
        self.conn = http.client.HTTPConnection(host, int(port), timeout=30)

    def call(self, method: str, path: str, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        self.conn.request(method, path, headers=headers)
        answer = self.conn.getresponse()
        return answer.status, {k.lower(): v for k, v in answer.getheaders()}, answer.read()


class InProcess:
    def __init__(self) -> None:
        from app import app
        from chalicelib.local.server import TestClient

        self.client = TestClient(app)

    def call(self, method: str, path: str, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        answer = self.client.http.request(method, path, headers=headers)
        return answer.status_code, {k.lower(): v for k, v in answer.headers.items()}, answer.body


@pytest.fixture(scope="module", params=["http", "test_client"])
def transport(request: pytest.FixtureRequest) -> Iterator[Any]:
    if request.param == "http":
        client = Http(request.getfixturevalue("live").url)
        yield client
        client.conn.close()
    else:
        yield InProcess()


@pytest.mark.parametrize("token", [None, "Bearer x"], ids=["anonymous", "with-token"])
@pytest.mark.parametrize(("method", "path", "template"), UNROUTED_METHODS)
def test_unrouted_method_answers_405_with_allow(transport, doc, method, path, template, token):  # noqa: ANN001
    status, headers, body = transport.call(method, path, {"Authorization": token} if token else {})
    assert status == 405, (method, path, status, body[:200])
    documented = {m.upper() for m in doc["paths"][template]}
    assert set(headers["allow"].split(", ")) == documented
    assert headers["content-type"].startswith("application/json")
    answer = json.loads(body)
    _error_shape(doc, answer)
    assert answer["code"] == "method_not_allowed" and set(answer["details"]["allowed"]) == documented


@pytest.mark.parametrize("token", [None, "Bearer x"], ids=["anonymous", "with-token"])
@pytest.mark.parametrize(("method", "path"), UNKNOWN_PATHS)
def test_unknown_path_answers_404(transport, doc, method, path, token):  # noqa: ANN001
    status, headers, body = transport.call(method, path, {"Authorization": token} if token else {})
    assert status == 404, (method, path, status, body[:200])
    assert headers["content-type"].startswith("application/json")
    answer = json.loads(body)
    _error_shape(doc, answer)
    assert answer["code"] == "route_not_found"  # the deployed gateway's code (infra/stack.py GATEWAY_RESPONSES)


def test_head_answers_headers_only_and_the_connection_stays_usable(live):  # noqa: ANN001
    client = Http(live.url)
    try:
        for path, status in [("/health", 405), ("/nope", 404)]:
            got, headers, body = client.call("HEAD", path, {})
            assert (got, body) == (status, b"")
            assert headers["content-type"].startswith("application/json")
        got, _, body = client.call("GET", "/health", {})  # the same connection: nothing left over from HEAD
        assert (got, json.loads(body)) == (200, {"status": "ok"})
    finally:
        client.conn.close()


def test_routed_requests_are_untouched(transport):  # noqa: ANN001
    status, _, body = transport.call("GET", "/members/me", {})  # a routed template: the view's own 401
    assert (status, json.loads(body)["code"]) == (401, "missing_token")
