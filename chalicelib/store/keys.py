"""The one place that knows the DynamoDB key layout (see docs/access-patterns.md).

Single table, generic key names so every entity shares the table's indexes:
  pk / sk            primary key
  gsi1pk / gsi1sk    lookup index: PHONE#<hmac>  -> the member (profile or tombstone) holding that phone
  gsi2pk / gsi2sk    sparse work index: items that a scheduled job must find without a scan
"""
from __future__ import annotations

PROFILE = "PROFILE"
ORG_PK = "ORG"
MERGE_PENDING = "MERGE#PENDING"

MEMBER_PREFIX = "MEMBER#"
AUDIT_PREFIX = "AUDIT#"
MERGE_PREFIX = "MERGE#"
STORE_PREFIX = "STORE#"

GSI_LOOKUP = "gsi1"
GSI_WORK = "gsi2"


def member_pk(member_id: str) -> str:
    return f"{MEMBER_PREFIX}{member_id}"


def member_profile(member_id: str) -> dict[str, str]:
    return {"pk": member_pk(member_id), "sk": PROFILE}


def phone_lookup_pk(phone_hash: str) -> str:
    return f"PHONE#{phone_hash}"


def phone_marker(phone_hash: str) -> dict[str, str]:
    """Uniqueness marker: exists iff some member holds this phone; names that member."""
    return {"pk": phone_lookup_pk(phone_hash), "sk": "PHONE"}


def openid_marker(openid_hash: str) -> dict[str, str]:
    return {"pk": f"OPENID#{openid_hash}", "sk": "OPENID"}


def audit_key(member_id: str, at_iso: str, entry_id: str) -> dict[str, str]:
    return {"pk": member_pk(member_id), "sk": f"{AUDIT_PREFIX}{at_iso}#{entry_id}"}


def merge_key(target_id: str, source_id: str) -> dict[str, str]:
    return {"pk": member_pk(target_id), "sk": f"{MERGE_PREFIX}{source_id}"}


def store_key(store_id: str) -> dict[str, str]:
    return {"pk": ORG_PK, "sk": f"{STORE_PREFIX}{store_id}"}


def record_kind(sk: str) -> str:
    """The entity kind of an item in a member's partition, from its sort key prefix ('AUDIT', 'MERGE', ...)."""
    return sk.split("#", 1)[0].lower()
