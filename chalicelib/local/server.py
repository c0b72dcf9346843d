"""Chalice's local dev server, as `make run` and the HTTP tests use it, answering the requests no route takes
as the deployed API does: in our error shape {"code", "message", "details"}.

Chalice's own emulation answers an unknown path 403 {"message": "Missing Authentication Token"}, a method the
path lacks 405 {"Code", "Message"}, OPTIONS 200 (a CORS preflight we do not configure) and, over HTTP, any
method http.server has no handler for (TRACE, CONNECT, ...) with an HTML 501 page. Here:

  * a path no route has, any method: 404 `route_not_found` (as infra/stack.py maps API Gateway's
    MISSING_AUTHENTICATION_TOKEN response: same code, message and details);
  * a known path, a method it does not route (TRACE, OPTIONS and HEAD included): 405 `method_not_allowed` with
    an Allow header (RFC 9110; schema fuzzers check both). HEAD answers carry no body.
"""
from __future__ import annotations

import json
import uuid
from http.server import BaseHTTPRequestHandler
from typing import Any

from chalice.local import (
    ChaliceRequestHandler,
    LocalChalice,
    LocalDevServer,
    LocalGateway,
    RouteMatcher,
    ThreadedHTTPServer,
)
from chalice.test import Client as ChaliceTestClient
from chalice.test import TestHTTPClient

from ..api.errors import ErrorBody


class Gateway(LocalGateway):
    """LocalGateway (API Gateway's emulation) whose unrouted requests answer in our error shape."""

    def __init__(self, app_object: Any, config: Any) -> None:
        super().__init__(app_object, config)
        self._resources = RouteMatcher(list(app_object.routes))

    def handle_request(self, method: str, path: str, headers: Any, body: bytes | None) -> dict[str, Any]:
        try:
            resource = self._resources.match_route(path).route
        except ValueError:
            return _error(404, "route_not_found", "no such route or method")
        allowed = sorted(self._app_object.routes[resource])
        if method not in allowed:
            return _error(405, "method_not_allowed", "this path does not take that method; see Allow",
                          {"Allow": ", ".join(allowed)}, allowed=allowed)
        return super().handle_request(method, path, headers, body)


def _error(status: int, code: str, message: str, headers: dict[str, str] | None = None,
           **details: Any) -> dict[str, Any]:
    """A Lambda proxy answer, as the app's own are (both callers of the gateway read that form)."""
    request_id = str(uuid.uuid4())
    body = ErrorBody(code=code, message=message, details={"request_id": request_id, **details})
    return {"statusCode": status, "multiValueHeaders": {},
            "headers": {"Content-Type": "application/json; charset=utf-8", "x-amzn-RequestId": request_id,
                        **(headers or {})},
            "body": json.dumps(body.model_dump(mode="json"), ensure_ascii=False, separators=(",", ":"))}


class RequestHandler(ChaliceRequestHandler):
    def __init__(self, request: Any, client_address: Any, server: Any, app_object: Any, config: Any) -> None:
        self.local_gateway = Gateway(app_object, config)
        BaseHTTPRequestHandler.__init__(self, request, client_address, server)

    def __getattr__(self, name: str) -> Any:
        # http.server answers a method without a do_<METHOD> handler (TRACE, CONNECT, ...) with an HTML 501
        # page; the gateway answers every method instead.
        if name.startswith("do_"):
            return self._generic_handle
        raise AttributeError(name)

    def _send_http_response_with_body(self, code: int, headers: Any, body: str | bytes) -> None:
        if self.command != "HEAD":
            super()._send_http_response_with_body(code, headers, body)
            return
        self.send_response(code)  # a HEAD answer has headers only: a body would be read as the next response
        self.send_header("Content-Length", str(len(body.encode() if isinstance(body, str) else body)))
        self.send_header("Content-Type", headers.pop("Content-Type", "application/json"))
        self._send_headers(headers)


def create_server(app: Any, host: str, port: int) -> LocalDevServer:
    from chalice.config import Config

    # Chalice writes headers and body in separate sends without TCP_NODELAY, so on a keep-alive connection
    # the body waits for the client's delayed ACK: ~45 ms added to every request. Not an issue on AWS.
    RequestHandler.disable_nagle_algorithm = True
    # socketserver listens with a backlog of 5: 32 POS threads connecting at once overflow it and some
    # connections are reset (seen in CI under load). API Gateway has no such queue.
    ThreadedHTTPServer.request_queue_size = 128
    if not isinstance(app, LocalChalice):  # what chalice.local.create_local_server does: a thread-local request
        from chalice.local import CustomLocalChalice

        CustomLocalChalice.__bases__ = (LocalChalice, app.__class__)
        app.__class__ = CustomLocalChalice
    config = Config.create(chalice_stage="dev", lambda_timeout=30)
    return LocalDevServer(app, config, host, port, handler_cls=RequestHandler)


class TestClient(ChaliceTestClient):
    """chalice.test.Client answering unrouted requests as the local server (and the deployed API) does."""

    __test__ = False  # not a pytest class

    @property
    def http(self) -> TestHTTPClient:
        if self._http_client is None:
            self._http_client = TestHTTPClient(self._app, self._chalice_config)
            self._http_client._local_gateway = Gateway(self._app, self._chalice_config)
        return self._http_client
