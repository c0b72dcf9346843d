"""One decorator for every route: authenticate, check the role against the access policy, parse and
validate the input, call the view, shape the answer, map any error to our error shape. It also records
each route's contract, from which api/openapi.py writes the OpenAPI document (so the document cannot
forget a route) and `python -m chalicelib.cli routes` writes api/routes.json (see api/__init__.py)."""
from __future__ import annotations

import functools
import json
import re
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from pydantic import BaseModel, ValidationError

from .. import bootstrap
from ..domain.access import Principal, Role
from ..domain.errors import BadRequest, Invalid, NotFound, Unauthorized
from ..domain.policy import PUBLIC, allow_role, permission
from ..observability import CALLER_LOG_KEYS, logger, metrics
from .auth import bearer_token, principal_from_claims
from .errors import (
    PAYLOAD_TOO_LARGE,
    UNSUPPORTED_MEDIA_TYPE,
    HttpError,
    error_response,
    html_response,
    json_response,
    validation_details,
)

# Path parameters are validated before any lookup; a malformed id is simply "not found".
PATH_PARAMS: dict[str, tuple[str, str]] = {
    "member_id": (r"^[0-9A-HJKMNP-TV-Z]{26}$", "member_not_found"),
    "store_id": (r"^[A-Za-z0-9_-]{1,40}$", "store_not_found"),
    "order_id": (r"^[A-Za-z0-9_.:-]{1,64}$", "order_not_found"),
    "redemption_id": (r"^[A-Za-z0-9_.:-]{1,64}$", "redemption_not_found"),
    "template_id": (r"^[A-Za-z0-9_-]{1,40}$", "template_not_found"),
    "code": (r"^[A-Za-z0-9 -]{4,40}$", "coupon_not_found"),
    "ticket_id": (r"^[A-Za-z0-9_.:-]{1,64}$", "ticket_not_found"),
    "task_id": (r"^[A-Za-z0-9_.:-]{1,64}$", "task_not_found"),
    "queue_id": (r"^[a-z0-9][a-z0-9_-]{0,47}$", "queue_not_found"),
    "article_id": (r"^[A-Za-z0-9_-]{1,64}$", "article_not_found"),
    "calendar_id": (r"^[a-z0-9][a-z0-9_-]{0,47}$", "calendar_not_found"),
    "issue_id": (r"^[A-Za-z0-9_.:-]{1,64}$", "issue_not_found"),
}


@dataclass(frozen=True)
class RouteSpec:
    path: str
    method: str
    name: str
    module: str
    operation: str
    summary: str
    public: bool
    roles: frozenset[Role]
    body: type[BaseModel] | None
    query: type[BaseModel] | None
    response: type[BaseModel] | None
    status: int
    errors: tuple[int, ...]
    tag: str
    # other success statuses with the same body: 200 for a replayed/idempotent create, 201 for a PUT that created
    also: tuple[int, ...] = ()
    # other success statuses with a body of their own: ((202, Model),) for a request that may start a job
    alt: tuple[tuple[int, type[BaseModel]], ...] = ()
    media: str = "application/json"  # text/html: a page (its view answers Html)


ROUTES: list[RouteSpec] = []


@dataclass
class Call:
    principal: Principal | None
    body: Any = None
    query: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    context: dict[str, Any] = field(default_factory=dict)  # API Gateway's request context (path, stage)


@dataclass
class Reply:
    body: BaseModel | dict[str, Any] | None
    status: int = 200


@dataclass
class Html:
    """A page: self-contained (no script, style inline), so the strictest content policy fits it."""

    text: str
    status: int = 200


def route(path: str, method: str, *, op: str, summary: str, tag: str, body: type[BaseModel] | None = None,
          query: type[BaseModel] | None = None, response: type[BaseModel] | None = None, status: int = 200,
          errors: tuple[int, ...] = (), also: tuple[int, ...] = (),
          alt: tuple[tuple[int, type[BaseModel]], ...] = (), media: str = "application/json") -> Callable:
    """`op` names the operation's row in domain/policy.py: who may call it comes from there only."""
    public = op in PUBLIC
    roles = frozenset() if public else permission(op).roles

    def decorate(view: Callable[..., Reply | BaseModel]) -> Callable:
        spec = RouteSpec(path=path, method=method, name=view.__name__, module=view.__module__, operation=op,
                         summary=summary, public=public, roles=roles, body=body, query=query, response=response,
                         status=status, errors=errors, tag=tag, also=also, alt=alt, media=media)
        ROUTES.append(spec)

        @functools.wraps(view)
        def handler(request: Any, **params: str) -> Any:
            request_id = (request.context or {}).get("requestId") or ""
            logger.set_correlation_id(request_id)
            headers = {"X-Request-Id": request_id} if request_id else {}
            try:
                call = Call(principal=None if public else _authenticate(request.headers),
                            headers=dict(request.headers or {}), context=dict(request.context or {}))
                if not public:
                    allow_role(op, call.principal)  # type: ignore[arg-type]
                _check_path(params)
                if body is not None:
                    call.body = _parse_body(request, body)
                if query is not None:
                    call.query = _parse_query(request.query_params or {}, query)
                reply = view(call, **params)
                if isinstance(reply, Html):
                    return html_response(reply.text, reply.status, headers)
                if isinstance(reply, BaseModel):
                    reply = Reply(reply, status)
                payload = reply.body.model_dump(mode="json") if isinstance(reply.body, BaseModel) else reply.body
                return json_response(payload, reply.status, headers)
            except Exception as exc:  # noqa: BLE001 - this is the one place errors become responses
                if isinstance(exc, Unauthorized):
                    metrics.add_metric(name="AuthFailed", unit="Count", value=1)
                return error_response(exc, headers)
            finally:
                if metrics.metric_set:  # one EMF line per request that recorded business events
                    metrics.flush_metrics()
                logger.remove_keys(list(CALLER_LOG_KEYS))  # a warm container's next request is someone else

        return handler

    return decorate


def _authenticate(headers: Any) -> Principal:
    token = bearer_token(headers)
    verified = bootstrap.tokens().verify(token)
    principal = principal_from_claims(verified.claims)
    logger.append_keys(caller_sub=principal.sub, caller_role=principal.role.value)
    return principal


def _check_path(params: dict[str, str]) -> None:
    for name, value in params.items():
        rule = PATH_PARAMS.get(name)
        if rule and not re.fullmatch(rule[0], value):  # fullmatch: '$' alone would admit a trailing newline
            raise NotFound(f"no such {name.removesuffix('_id')}", code=rule[1], details={name: value})


def _parse_body(request: Any, model: type[BaseModel]) -> BaseModel:
    raw: bytes = request.raw_body or b""
    limit = bootstrap.settings().max_body_bytes
    if len(raw) > limit:
        raise HttpError(PAYLOAD_TOO_LARGE, "payload_too_large", f"body exceeds {limit} bytes", {"limit": limit})
    content_type = (request.headers.get("content-type") or "").split(";")[0].strip().lower()
    if content_type != "application/json":
        raise HttpError(UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type", "send application/json",
                        {"content_type": content_type})
    try:
        text = raw.decode("utf-8")
        json.loads(text, parse_constant=_reject_constant)  # well-formed, no NaN/Infinity, not absurdly deep
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise BadRequest("body is not valid JSON", code="invalid_json") from None
    try:
        # Strict JSON mode: dates/times only as ISO text, booleans only true/false, numbers only as
        # numbers -- 0 is never read as 1970-01-01, 00:00 or false. (Query strings stay lax: all text.)
        return model.model_validate_json(text, strict=True)
    except ValidationError as err:
        if any(e["type"] == "json_invalid" for e in err.errors()):  # e.g. a lone surrogate: not Unicode text
            raise BadRequest("body is not valid JSON text", code="invalid_json") from None
        raise _invalid(err, "body") from None


_NUMBER = re.compile(r"[+-]?\d+(\.\d*)?([eE][+-]?\d+)?")


def _temporal_fields(model: type[BaseModel]) -> dict[str, str]:
    """The query names (aliases included) of a model's date and datetime fields."""
    out = {}
    for name, info in model.model_fields.items():
        kinds = typing.get_args(info.annotation) or (info.annotation,)
        if any(k in (date, datetime) for k in kinds):
            out[info.alias or name] = name
    return out


def _parse_query(params: dict[str, str], model: type[BaseModel]) -> BaseModel:
    # Query strings are validated laxly (all text), and lax pydantic reads a number as Unix time: `?to=0` would
    # be 1970-01-01. A date is only ever its ISO text here.
    numbers = [{"loc": ["query", q], "msg": "a date as YYYY-MM-DD (or an ISO time), not a number",
                "type": "date_type"} for q in _temporal_fields(model) if _NUMBER.fullmatch(params.get(q) or "x")]
    if numbers:
        raise Invalid("query is not valid", code="validation_error", details=numbers)
    try:
        return model.model_validate(dict(params))
    except ValidationError as err:
        raise _invalid(err, "query") from None


def _invalid(err: ValidationError, where: str) -> Exception:
    return Invalid(f"{where} is not valid", code="validation_error", details=validation_details(err, where))


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")

