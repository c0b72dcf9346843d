"""The only place that knows HTTP status codes. Every error our code answers has one shape:
{"code": str, "message": str, "details": ...}."""
from __future__ import annotations

import json
from typing import Any

from chalice import Response
from pydantic import BaseModel, ValidationError

from ..domain import errors as e
from ..observability import logger

STATUS: list[tuple[type[e.DomainError], int]] = [
    (e.BadRequest, 400),
    (e.Unauthorized, 401),
    (e.Forbidden, 403),
    (e.NotFound, 404),
    (e.Conflict, 409),
    (e.Invalid, 422),
    (e.Unavailable, 503),
]

# Codes answered outside the domain (request reading), with their statuses
PAYLOAD_TOO_LARGE = 413
UNSUPPORTED_MEDIA_TYPE = 415


class ErrorBody(BaseModel):
    code: str
    message: str
    details: Any = None


class HttpError(Exception):
    """An error of the HTTP layer itself (body too large, wrong content type)."""

    def __init__(self, status: int, code: str, message: str, details: Any = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.details = status, code, message, details or {}


def status_for(err: e.DomainError) -> int:
    for cls, status in STATUS:
        if isinstance(err, cls):
            return status
    return 400


def validation_details(err: ValidationError, prefix: str) -> list[dict[str, Any]]:
    """Field paths and messages only: never echo the input (it may be a phone number)."""
    return [{"loc": [prefix, *err_loc], "msg": item["msg"], "type": item["type"]}
            for item in err.errors(include_url=False, include_input=False, include_context=False)
            for err_loc in [item["loc"]]]


def json_response(body: Any, status: int, headers: dict[str, str] | None = None) -> Response:
    return Response(body=json.dumps(body, ensure_ascii=False, separators=(",", ":")), status_code=status,
                    headers={"Content-Type": "application/json; charset=utf-8", **(headers or {})})


# A page may load nothing from anywhere (its charts are inline SVG, its style inline), must not be framed, and
# must not hand its URL (a signed link) to any other site.
PAGE_HEADERS = {"Content-Type": "text/html; charset=utf-8",
                "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; img-src data:; "
                                           "frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
                "Referrer-Policy": "no-referrer", "Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}


def html_response(text: str, status: int, headers: dict[str, str] | None = None) -> Response:
    return Response(body=text, status_code=status, headers={**PAGE_HEADERS, **(headers or {})})


def error_response(exc: Exception, headers: dict[str, str] | None = None) -> Response:
    if isinstance(exc, e.DomainError):
        status, body = status_for(exc), ErrorBody(code=exc.code, message=exc.message, details=exc.details)
        if status >= 500:
            logger.warning("dependency unavailable", extra={"code": exc.code})
    elif isinstance(exc, HttpError):
        status, body = exc.status, ErrorBody(code=exc.code, message=exc.message, details=exc.details)
    else:
        logger.exception("unhandled error")
        status, body = 500, ErrorBody(code="internal_error", message="internal error; it has been logged", details={})
    return json_response(body.model_dump(mode="json"), status, headers)
