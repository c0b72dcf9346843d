"""The brand's organisation: stores grouped in regions."""
from __future__ import annotations

from datetime import date, datetime, time
from enum import StrEnum
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field


class StoreType(StrEnum):
    FLAGSHIP = "flagship"
    STANDARD = "standard"
    KIOSK = "kiosk"
    ONLINE = "online"


class OpeningHours(BaseModel):
    """One day's hours in the store's local time (Asia/Shanghai). close <= open means past midnight."""

    model_config = ConfigDict(extra="forbid")
    open: time
    close: time


class WeeklyHours(BaseModel):
    """Hours per weekday; a missing day means closed that day."""

    model_config = ConfigDict(extra="forbid")
    mon: OpeningHours | None = None
    tue: OpeningHours | None = None
    wed: OpeningHours | None = None
    thu: OpeningHours | None = None
    fri: OpeningHours | None = None
    sat: OpeningHours | None = None
    sun: OpeningHours | None = None


def _trimmed(value: str) -> str:
    """Trim after the documented length is checked on what was sent; nothing but blanks is no text."""
    value = value.strip()
    if not value:
        raise ValueError("must contain text")
    return value


_Id = Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,40}$")]
_Text = Annotated[str, Field(min_length=1, max_length=80), AfterValidator(_trimmed)]


class StoreInput(BaseModel):
    """PUT /stores/{store_id}: the whole store description (PUT replaces)."""

    model_config = ConfigDict(extra="forbid")
    name: _Text
    region_id: _Id
    city: _Text
    store_type: StoreType
    opened_on: date | None = None
    business_hours: WeeklyHours = Field(default_factory=WeeklyHours)


class Store(StoreInput):
    model_config = ConfigDict(frozen=True, extra="forbid")

    store_id: str
    updated_at: datetime
