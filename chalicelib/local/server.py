"""Chalice's local dev server, as `make run` and the HTTP tests use it."""
from __future__ import annotations

from typing import Any


def create_server(app: Any, host: str, port: int) -> Any:
    from chalice.config import Config
    from chalice.local import ChaliceRequestHandler, ThreadedHTTPServer, create_local_server

    # Chalice writes headers and body in separate sends without TCP_NODELAY, so on a keep-alive connection
    # the body waits for the client's delayed ACK: ~45 ms added to every request. Not an issue on AWS.
    ChaliceRequestHandler.disable_nagle_algorithm = True
    # socketserver listens with a backlog of 5: 32 POS threads connecting at once overflow it and some
    # connections are reset (seen in CI under load). API Gateway has no such queue.
    ThreadedHTTPServer.request_queue_size = 128
    return create_local_server(app, Config.create(chalice_stage="dev", lambda_timeout=30), host, port)
