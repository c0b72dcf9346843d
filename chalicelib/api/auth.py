"""Bearer token -> Principal. Runs in our own code on every route (Chalice local and its test client do
not enforce authorizers, so nothing upstream can be relied on)."""
from __future__ import annotations

from typing import Any

from ..domain.access import Principal, Role
from ..domain.errors import Unauthorized


def bearer_token(headers: Any) -> str:
    value = headers.get("authorization") if headers else None
    if not value:
        raise Unauthorized("missing bearer token", code="missing_token")
    scheme, _, token = value.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("expected 'Authorization: Bearer <token>'", code="missing_token")
    return token.strip()


def principal_from_claims(claims: dict[str, Any]) -> Principal:
    try:
        role = Role(claims["role"])
        store_ids = claims.get("store_ids") or []
        if not isinstance(store_ids, list) or not all(isinstance(s, str) for s in store_ids):
            raise ValueError("store_ids")
        for optional in ("member_id", "region_id", "oid"):
            if claims.get(optional) is not None and not isinstance(claims[optional], str):
                raise ValueError(optional)
        return Principal(sub=str(claims["sub"]), role=role, member_id=claims.get("member_id"),
                         store_ids=frozenset(store_ids), region_id=claims.get("region_id"),
                         openid_hash=claims.get("oid"))
    except (KeyError, ValueError):
        raise Unauthorized("token claims are not valid", code="invalid_token") from None
