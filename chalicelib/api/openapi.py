"""OpenAPI 3.1 from the recorded route contracts and their pydantic models (JSON Schema 2020-12, which
3.1 uses as is). Error responses and security are documented per route."""
from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from .errors import ErrorBody
from .routing import PATH_PARAMS, ROUTES, RouteSpec

ERROR_TEXT = {
    400: "Body is not valid JSON",
    401: "Missing, invalid or expired token",
    403: "Caller's role or scope does not allow this",
    404: "Not found",
    409: "Conflicts with the current state",
    413: "Body too large",
    415: "Body is not application/json",
    422: "Input breaks a rule; details lists the fields",
    503: "A dependency is unavailable; retry",
}


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def _operation(spec: RouteSpec) -> dict[str, Any]:
    op: dict[str, Any] = {"operationId": spec.name, "summary": spec.summary, "tags": [spec.tag]}
    if spec.public:
        op["security"] = []
    else:
        op["description"] = "Roles: " + ", ".join(sorted(r.value for r in spec.roles))
    params: list[dict[str, Any]] = []
    for name in re.findall(r"{(\w+)}", spec.path):
        pattern = PATH_PARAMS.get(name, (r"^.+$", ""))[0]
        params.append({"name": name, "in": "path", "required": True, "schema": {"type": "string", "pattern": pattern}})
    if spec.query is not None:
        schema = spec.query.model_json_schema()
        for name, prop in schema.get("properties", {}).items():
            params.append({"name": name, "in": "query", "required": name in schema.get("required", []),
                           "schema": {k: v for k, v in prop.items() if k != "title"}})
    if params:
        op["parameters"] = params
    if spec.body is not None:
        op["requestBody"] = {"required": True, "content": {"application/json": {"schema": _ref(spec.body)}}}
    ok = {"description": "OK"}
    if spec.response is not None:
        ok["content"] = {"application/json": {"schema": _ref(spec.response)}}
    responses: dict[str, Any] = {str(spec.status): ok}
    for status in spec.also:
        responses[str(status)] = {**ok, "description": "Created" if status == 201 else "Already existed (replay)"}
    codes = set(spec.errors)
    if not spec.public:
        codes |= {401, 403}
    if spec.body is not None:
        codes |= {400, 413, 415, 422}
    if spec.query is not None or any(n in PATH_PARAMS for n in re.findall(r"{(\w+)}", spec.path)):
        codes |= {404} if "{" in spec.path else set()
        codes |= {422} if spec.query is not None else set()
    codes |= {503}  # DynamoDB throttling past retries
    for code in sorted(codes):
        responses[str(code)] = {"description": ERROR_TEXT[code],
                                "content": {"application/json": {"schema": _ref(ErrorBody)}}}
    op["responses"] = responses
    return op


@lru_cache(maxsize=1)
def document() -> dict[str, Any]:
    models: list[type[BaseModel]] = [ErrorBody]
    for spec in ROUTES:
        models += [m for m in (spec.body, spec.response) if m is not None]
    unique = list(dict.fromkeys(models))
    _, defs = models_json_schema([(m, "validation" if m in {s.body for s in ROUTES} else "serialization")
                                  for m in unique], ref_template="#/components/schemas/{model}")
    paths: dict[str, dict[str, Any]] = {}
    for spec in ROUTES:
        paths.setdefault(spec.path, {})[spec.method.lower()] = _operation(spec)
    return {
        "openapi": "3.1.0",
        "info": {"title": "chaincrm API", "version": "0.1.0",
                 "description": "Customer management for chain-store brands. Money is integer fen; times are "
                                "ISO 8601 with offset; the business day is Asia/Shanghai."},
        "servers": [{"url": "/"}],
        "security": [{"bearer": []}],
        "paths": paths,
        "components": {
            "schemas": defs.get("$defs", {}),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}},
        },
    }
