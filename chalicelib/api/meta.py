"""Unauthenticated service routes: health and the API description."""
from __future__ import annotations

from .openapi import document
from .responses import Health
from .routing import Call, Reply, route


@route("/health", "GET", op="meta.health", tag="meta", response=Health, summary="Liveness")
def health(call: Call) -> Health:
    return Health(status="ok")


@route("/openapi.json", "GET", op="meta.openapi", tag="meta", summary="This API as OpenAPI 3.1")
def openapi(call: Call) -> Reply:
    return Reply(document())
