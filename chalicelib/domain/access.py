"""Who the caller is and what their scope lets them touch. Pure rules; api/auth.py builds the Principal."""
from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from .errors import Forbidden


class Role(StrEnum):
    MEMBER = "member"
    STAFF = "staff"
    STORE_MANAGER = "store_manager"
    REGION_MANAGER = "region_manager"
    HQ = "hq"
    INTEGRATION = "integration"


COUNTER_ROLES = frozenset({Role.STAFF, Role.STORE_MANAGER})


@dataclass(frozen=True)
class Principal:
    sub: str
    role: Role
    member_id: str | None = None
    store_ids: frozenset[str] = field(default_factory=frozenset)
    region_id: str | None = None
    openid_hash: str | None = None  # member tokens from the mini-program are bound to an openid

    @property
    def is_hq(self) -> bool:
        return self.role is Role.HQ

    @property
    def sees_full_phone(self) -> bool:
        return self.role is Role.HQ


def require_role(principal: Principal, allowed: frozenset[Role] | set[Role]) -> None:
    if principal.role not in allowed:
        raise Forbidden(f"role {principal.role.value} may not do this", code="role_not_allowed")


def require_self(principal: Principal, member_id: str) -> None:
    """A member may act only on their own record; other roles pass through to their own checks."""
    if principal.role is Role.MEMBER and principal.member_id != member_id:
        raise Forbidden("members may only access their own data", code="not_your_member")


def require_store(principal: Principal, store_id: str, store_region_id: str | None) -> None:
    """Store-scoped data: staff/managers/integrations their stores, region managers their region, HQ all."""
    if principal.role is Role.HQ:
        return
    if principal.role is Role.REGION_MANAGER:
        if principal.region_id is not None and store_region_id == principal.region_id:
            return
    elif principal.role in COUNTER_ROLES or principal.role is Role.INTEGRATION:
        if store_id in principal.store_ids:
            return
    raise Forbidden("store is outside your scope", code="store_out_of_scope", details={"store_id": store_id})
