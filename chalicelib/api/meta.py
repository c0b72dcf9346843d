"""Unauthenticated service routes: health and the API description."""
from __future__ import annotations

from chalice import Blueprint

from .openapi import document
from .routing import Call, Reply, route
from .schemas import Health

bp = Blueprint(__name__)


@route(bp, "/health", "GET", tag="meta", public=True, response=Health, summary="Liveness")
def health(call: Call) -> Health:
    return Health(status="ok")


@route(bp, "/openapi.json", "GET", tag="meta", public=True, summary="This API as OpenAPI 3.1")
def openapi(call: Call) -> Reply:
    return Reply(document())
