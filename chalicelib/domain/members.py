"""The member: one record per person across every store and channel."""
from __future__ import annotations

import unicodedata
from datetime import date, datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, StrictBool

from . import clock
from .phone import normalize_phone


class Channel(StrEnum):
    STORE = "store"
    MINIPROGRAM = "miniprogram"
    APP = "app"
    MALL = "mall"


class Gender(StrEnum):
    FEMALE = "female"
    MALE = "male"
    UNDISCLOSED = "undisclosed"


class MemberStatus(StrEnum):
    ACTIVE = "active"
    MERGED = "merged"  # a tombstone: merged_into names the survivor
    ERASED = "erased"  # personal fields removed on the member's request (PIPL); sales facts stay


class Consent(BaseModel):
    marketing: bool
    updated_at: datetime


class Member(BaseModel):
    """A member as the services see it: personal fields in the clear (the store protects them at rest)."""

    model_config = ConfigDict(frozen=True)

    member_id: str
    status: MemberStatus = MemberStatus.ACTIVE
    phone: str | None = None
    phone_masked: str | None = None
    name: str | None = None
    gender: Gender | None = None
    birthday: date | None = None
    openid: str | None = None
    home_store_id: str | None = None
    registration_channel: Channel
    channels: frozenset[Channel] = Field(default_factory=frozenset)
    stores_visited: frozenset[str] = Field(default_factory=frozenset)
    consent: Consent
    registered_at: datetime
    updated_at: datetime
    merged_into: str | None = None
    merged_from: frozenset[str] = Field(default_factory=frozenset)
    erased_at: datetime | None = None
    # The points/tier state (domain.ledger.MemberState) when it was read along with the profile.
    state: Any = Field(default=None, exclude=True)
    # The nightly segment and the tags (store items by sort key), when read along with the profile.
    insights: Any = Field(default=None, exclude=True)


class AuditEntry(BaseModel):
    """One change to a member: who, what (field names only, never values), when."""

    actor: str
    role: str
    action: str
    fields: list[str] = Field(default_factory=list)
    at: datetime


class MergeRecord(BaseModel):
    target_member_id: str
    source_member_id: str
    by: str
    started_at: datetime
    state: str = Field(description="moving: history still being moved in batches; done")
    moved: dict[str, int] = Field(default_factory=dict)
    finished_at: datetime | None = None


# Fields a PATCH may touch, and who may touch them. The phone is absent: it changes only through the
# verified WeChat flow or HQ (services/members.py handles that separately).
PROFILE_FIELDS = ("name", "gender", "birthday", "consent_marketing")


# ---- commands (also the HTTP request bodies: one definition of the contract) ----------------------------
# Bidi embedding/override/isolate controls: they let a name display as something else (spoofing).
_BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
_INVISIBLE = frozenset({"Cf", "Zs", "Zl", "Zp", "Mn", "Me"})


def _clean_name(value: str) -> str:
    value = unicodedata.normalize("NFC", value).strip()
    # Cc is every control character, C0 and C1 (NEL, CSI...); format characters such as the zero-width
    # joiner stay allowed inside emoji sequences, but a name must have something visible.
    if any(unicodedata.category(c) == "Cc" or c in _BIDI_CONTROLS for c in value):
        raise ValueError("name must not contain control characters")
    if not value or all(unicodedata.category(c) in _INVISIBLE for c in value):
        raise ValueError("name must contain visible text")
    return value


def _iso_date(value: object) -> object:
    """Dates only as 'YYYY-MM-DD' text: pydantic alone would read the number 0 as 1970-01-01."""
    if isinstance(value, str):
        try:
            return date.fromisoformat(value)
        except ValueError:
            raise ValueError("expected a date as YYYY-MM-DD") from None
    if not isinstance(value, date):
        raise ValueError("expected a date as YYYY-MM-DD")
    return value


def _valid_birthday(value: date) -> date:
    if not (date(1900, 1, 1) <= value <= clock.now().date()):
        raise ValueError("birthday must be between 1900-01-01 and today")
    return value


Phone = Annotated[str, Field(min_length=1, max_length=32, examples=["13800138000"]), AfterValidator(normalize_phone)]
Name = Annotated[str, Field(min_length=1, max_length=40), AfterValidator(_clean_name)]
Birthday = Annotated[date, BeforeValidator(_iso_date), AfterValidator(_valid_birthday)]
StoreId = Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,40}$", examples=["sh-001"])]
MemberId = Annotated[str, Field(pattern=r"^[0-9A-HJKMNP-TV-Z]{26}$", description="ULID")]


class ConsentInput(BaseModel):
    model_config = ConfigDict(extra="forbid")
    marketing: StrictBool  # consent is explicit: true/false, never 1 or "yes"


class Registration(BaseModel):
    """Registering a person present at the counter, or whose phone the channel verified."""

    model_config = ConfigDict(extra="forbid")
    phone: Phone
    name: Name | None = None
    gender: Gender | None = None
    birthday: Birthday | None = None
    channel: Channel
    store_id: StoreId
    consent: ConsentInput


class MemberPatch(BaseModel):
    """Profile edits. A field present with null clears it; absent fields stay. `phone` is HQ-only."""

    model_config = ConfigDict(extra="forbid")
    name: Name | None = None
    gender: Gender | None = None
    birthday: Birthday | None = None
    consent: ConsentInput | None = None
    phone: Phone | None = None
