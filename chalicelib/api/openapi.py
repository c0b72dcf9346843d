"""OpenAPI 3.1 from the recorded route contracts and their pydantic models (JSON Schema 2020-12, which
3.1 uses as is). Error responses and security are documented per route.

Request schemas say what the validation accepts, no more: no `default` keyword (an absent field takes its
default, and openapi-typescript at its default settings turns any `default` into a required property; a
non-null default is said in the field's description instead),
no null where the use case refuses it, a phone's pattern, cursors as the text we issue. tests/api/
test_openapi_typescript.py compiles a front-end client against the document with that toolchain."""
from __future__ import annotations

import json
import re
from functools import lru_cache
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaValue, models_json_schema
from pydantic_core import core_schema

from ..domain.members import MemberPatch
from ..domain.phone import normalize_phone
from .errors import ErrorBody
from .routing import PATH_PARAMS, RouteSpec

PHONE = {
    # normalize_phone accepts more (separators, full-width digits); this is the form to send.
    "pattern": r"^(?:\+86|0086|86)?1[3-9][0-9]{9}$",
    "description": "Mainland China mobile number: 11 digits starting 13-19, optionally after +86, 0086 or 86 "
                   "(spaces, hyphens, dots, brackets and full-width digits are also accepted and removed). "
                   "Answers carry the 11 digits.",
}
# Cursors are opaque: unpadded URL-safe base64, valid only for the listing that issued them.
CURSOR_PATTERN = r"^[A-Za-z0-9_-]*$"
QUERY_TEXT = {
    "cursor": "next_cursor of the previous page; omit for the first page. Valid only for the listing that "
              "issued it.",
    "limit": "page size",
}
NEXT_CURSOR_TEXT = "pass as ?cursor= to get the next page; null on the last page"
# Request fields whose type admits null but whose use case refuses it with a 422: documented without null.
# (The tidier fix is in the model: a non-optional type with default None, so validation itself refuses null.)
REFUSED_NULL: dict[type[BaseModel], tuple[str, ...]] = {MemberPatch: ("phone", "consent")}
_NULL = {"type": "null"}


class ContractSchema(GenerateJsonSchema):
    """pydantic's JSON Schema with the request side stated as the validation reads it."""

    def default_schema(self, schema: core_schema.WithDefaultSchema) -> JsonSchemaValue:
        json_schema = super().default_schema(schema)
        if self.mode == "validation" and "default" in json_schema:
            default = json_schema["default"]
            json_schema = {k: v for k, v in json_schema.items() if k != "default"}
            if default is not None:
                said = f"Left out: {json.dumps(default, ensure_ascii=False)}."
                json_schema["description"] = f"{json_schema['description']} {said}" \
                    if json_schema.get("description") else said
        return json_schema

    def function_after_schema(self, schema: core_schema.AfterValidatorFunctionSchema) -> JsonSchemaValue:
        json_schema = super().function_after_schema(schema)
        if schema["function"]["function"] is normalize_phone:
            json_schema = {**json_schema, **PHONE}
        return json_schema

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


def _without_null(schema: dict[str, Any]) -> dict[str, Any]:
    """`anyOf: [X, null]` -> X (keeping the description, title... around it)."""
    branches = [b for b in schema.get("anyOf", ()) if b != _NULL]
    if "anyOf" not in schema or len(branches) != 1:
        return schema
    return {**{k: v for k, v in schema.items() if k != "anyOf"}, **branches[0]}


def _query_parameter(name: str, prop: dict[str, Any], required: bool) -> dict[str, Any]:
    schema = _without_null({k: v for k, v in prop.items() if k not in {"title", "description"}})  # no null in a URL
    if name == "cursor":
        schema["pattern"] = CURSOR_PATTERN
    param: dict[str, Any] = {"name": name, "in": "query", "required": required, "schema": schema}
    text = prop.get("description") or QUERY_TEXT.get(name)
    if text:
        param["description"] = text
    return param


def _operation(spec: RouteSpec, refs: dict[type[BaseModel], dict[str, str]]) -> dict[str, Any]:
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
        schema = spec.query.model_json_schema(schema_generator=ContractSchema)
        for name, prop in schema.get("properties", {}).items():
            params.append(_query_parameter(name, prop, name in schema.get("required", [])))
    if params:
        op["parameters"] = params
    if spec.body is not None:
        op["requestBody"] = {"required": True, "content": {"application/json": {"schema": refs[spec.body]}}}
    ok: dict[str, Any] = {"description": "OK"}
    if spec.response is not None:
        ok["content"] = {"application/json": {"schema": refs[spec.response]}}
    elif spec.media != "application/json":
        ok["content"] = {spec.media: {"schema": {"type": "string"}}}
    if spec.name in LINKS:
        ok["links"] = {name: _link(target, params, body) for name, (target, params, body) in LINKS[spec.name].items()}
    responses: dict[str, Any] = {str(spec.status): ok}
    for status in spec.also:
        responses[str(status)] = {**ok, "description": "Created" if status == 201 else "Already existed (replay)"}
    for status, model in spec.alt:
        responses[str(status)] = {"description": "Accepted" if status == 202 else "OK",
                                  "content": {"application/json": {"schema": refs[model]}}}
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
                                "content": {"application/json": {"schema": refs[ErrorBody]}}}
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
    from . import load_all

    specs = load_all()  # the views load lazily (api/__init__.py); the document describes every one
    models: list[type[BaseModel]] = [ErrorBody]
    for spec in specs:
        models += [m for m in (spec.body, spec.response) if m is not None]
        models += [m for _, m in spec.alt]
    bodies = {s.body for s in specs}
    modes = {m: "validation" if m in bodies else "serialization" for m in dict.fromkeys(models)}
    by_mode, defs = models_json_schema(list(modes.items()), ref_template="#/components/schemas/{model}",
                                       schema_generator=ContractSchema)
    refs = {m: by_mode[(m, mode)] for m, mode in modes.items()}
    schemas = defs.get("$defs", {})
    _refuse_null(schemas, refs)
    _describe_cursors(schemas)
    names = {spec.name for spec in specs}
    broken = [(src, t[0]) for src, links in LINKS.items() for t in links.values() if {src, t[0]} - names]
    if broken:
        raise ValueError(f"OpenAPI links name unknown operations: {broken}")
    paths: dict[str, dict[str, Any]] = {}
    for spec in specs:
        paths.setdefault(spec.path, {})[spec.method.lower()] = _operation(spec, refs)
    return {
        "openapi": "3.1.0",
        "info": {"title": "chaincrm API", "version": "0.1.0",
                 "description": "Customer management for chain-store brands. Money is integer fen; times are "
                                "ISO 8601 with offset; the business day is Asia/Shanghai. Optional request "
                                "fields are left out, not sent as null, unless a field says null clears it. "
                                "A path not listed here answers 404 `route_not_found`; a method a path "
                                "does not list, 405 `method_not_allowed` with an Allow header (both in the "
                                "ErrorBody shape)."},
        "servers": [{"url": "/"}],
        "security": [{"bearer": []}],
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}},
        },
    }


def _component(schemas: dict[str, Any], ref: dict[str, str]) -> dict[str, Any]:
    return schemas[ref["$ref"].rsplit("/", 1)[-1]]


def _refuse_null(schemas: dict[str, Any], refs: dict[type[BaseModel], dict[str, str]]) -> None:
    for model, fields in REFUSED_NULL.items():
        if model not in refs:
            continue
        props = _component(schemas, refs[model])["properties"]
        unknown = set(fields) - set(props)
        if unknown:
            raise ValueError(f"REFUSED_NULL names fields {model.__name__} does not have: {sorted(unknown)}")
        for name in fields:
            prop = _without_null(props[name])
            props[name] = {**prop, "description": (prop.get("description", "") + " Cannot be cleared: null is "
                                                   "refused.").strip()}


def _describe_cursors(schemas: dict[str, Any]) -> None:
    """Every list answer's next_cursor: what it is for, and the text a cursor is (checked on live answers)."""
    for schema in schemas.values():
        prop = schema.get("properties", {}).get("next_cursor")
        if prop is None:
            continue
        prop.setdefault("description", NEXT_CURSOR_TEXT)
        for branch in prop.get("anyOf", [prop]):
            if branch.get("type") == "string":
                branch["pattern"] = CURSOR_PATTERN
