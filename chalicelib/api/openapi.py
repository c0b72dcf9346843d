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

# OpenAPI links: which id in a success answer feeds which later call. They document the create -> read/act
# sequences of the API, and a stateful fuzzer (tests/fuzz) follows them to chain real calls. Per source
# operation: link name -> (target operationId, parameters, requestBody or None). A requestBody object holds
# only the fields the link supplies (the rest of the body is the caller's), each an embedded expression.
_MEMBER_ID = {"member_id": "$response.body#/member_id"}
LINKS: dict[str, dict[str, tuple[str, dict[str, str], dict[str, str] | None]]] = {
    "register_member": {
        "GetMember": ("get_member", _MEMBER_ID, None),
        "EditMember": ("patch_member", _MEMBER_ID, None),
        "ExportMember": ("export_member", _MEMBER_ID, None),
        "EraseMember": ("erase_member", _MEMBER_ID, None),
        "MergeIntoMember": ("merge_member", _MEMBER_ID, None),
        "MemberPoints": ("get_points", _MEMBER_ID, None),
        "MemberTier": ("get_tier", _MEMBER_ID, None),
        "MemberOrders": ("member_orders", _MEMBER_ID, None),
        "RedeemPoints": ("redeem", _MEMBER_ID, None),
        "AdjustPoints": ("adjust", _MEMBER_ID, None),
        "PostOrderForMember": ("post_order", {}, {"member_id": "{$response.body#/member_id}"}),
    },
    "merge_member": {"GetSurvivor": ("get_member", {"member_id": "$response.body#/target_member_id"}, None)},
    "erase_member": {"GetErasedMember": ("get_member", _MEMBER_ID, None)},
    "post_order": {
        "GetOrder": ("get_order", {"order_id": "$response.body#/order_id"}, None),
        "RefundOrder": ("refund_order", {"order_id": "$response.body#/order_id"}, None),
    },
    "refund_order": {"GetRefundedOrder": ("get_order", {"order_id": "$response.body#/order_id"}, None)},
    "redeem": {
        "CancelRedemption": ("cancel_redemption", {**_MEMBER_ID, "redemption_id": "$response.body#/redemption_id"},
                             None),
        "PointsAfterRedemption": ("get_points", _MEMBER_ID, None),
    },
    "cancel_redemption": {"PointsAfterCancel": ("get_points", _MEMBER_ID, None)},
    "adjust": {"PointsAfterAdjustment": ("get_points", _MEMBER_ID, None)},
    "put_store": {
        "GetStore": ("get_store", {"store_id": "$response.body#/store_id"}, None),
        "RegisterAtStore": ("register_member", {}, {"store_id": "{$response.body#/store_id}"}),
    },
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
    ok: dict[str, Any] = {"description": "OK"}
    if spec.response is not None:
        ok["content"] = {"application/json": {"schema": _ref(spec.response)}}
    if spec.name in LINKS:
        ok["links"] = {name: _link(target, params, body) for name, (target, params, body) in LINKS[spec.name].items()}
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


def _link(target: str, params: dict[str, str], body: dict[str, str] | None) -> dict[str, Any]:
    link: dict[str, Any] = {"operationId": target}
    if params:
        link["parameters"] = params
    if body is not None:
        link["requestBody"] = body
    return link


@lru_cache(maxsize=1)
def document() -> dict[str, Any]:
    models: list[type[BaseModel]] = [ErrorBody]
    for spec in ROUTES:
        models += [m for m in (spec.body, spec.response) if m is not None]
    unique = list(dict.fromkeys(models))
    _, defs = models_json_schema([(m, "validation" if m in {s.body for s in ROUTES} else "serialization")
                                  for m in unique], ref_template="#/components/schemas/{model}")
    names = {spec.name for spec in ROUTES}
    broken = [(src, t[0]) for src, links in LINKS.items() for t in links.values() if {src, t[0]} - names]
    if broken:
        raise ValueError(f"OpenAPI links name unknown operations: {broken}")
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
