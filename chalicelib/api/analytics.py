"""/analytics/rfm and /rfm-settings: the nightly segmentation's distribution and the brand's choices."""
from __future__ import annotations

from datetime import date
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictInt, model_validator

from .. import bootstrap
from ..domain.segments import RfmSettings
from ..services import segments
from .routing import Call, route

TAG = "analytics"


class RfmSettingsInput(RfmSettings):
    model_config = ConfigDict(extra="forbid")
    version: StrictInt | None = Field(default=None, ge=0, description="the version you read (409 if it moved)")


class RfmSettingsView(RfmSettings):
    model_config = ConfigDict(extra="forbid")
    version: int = Field(description="0: never set, the defaults apply")


class RfmQuery(BaseModel):
    model_config = ConfigDict(extra="ignore")
    store_id: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_-]{1,40}$")
    region_id: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_-]{1,40}$")
    as_of: date | None = Field(default=None, description="a night (YYYY-MM-DD); default: the latest finished")

    @model_validator(mode="after")
    def _one_place(self) -> RfmQuery:
        if self.store_id is not None and self.region_id is not None:
            raise ValueError("give store_id or region_id, not both")
        return self


class Repurchase(BaseModel):
    model_config = ConfigDict(extra="forbid")
    buyers: int = Field(description="home-store members with an order in the as-of month")
    repeat_buyers: int = Field(description="of them, with two or more orders that month")
    rate_permille: int


class ChurnEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")
    member_id: str
    monetary: int = Field(description="net spend in the window, fen")
    lifetime_spend: int
    usual_gap_days: str = Field(description="the median of the member's last up-to-10 gaps between purchase days")
    days_since_purchase: int
    tier: str | None


class RfmDistribution(BaseModel):
    model_config = ConfigDict(extra="forbid")
    as_of: date
    level: str = Field(description="store | region | brand")
    id: str | None = Field(description="the store or region id (None for the brand)")
    segments: dict[str, int] = Field(description="members by segment (home store), no_purchase included when "
                                                 "the member has a points record but never bought")
    members: int
    change: dict[str, int] | None = Field(description="each segment's count minus the night before's")
    repurchase: Repurchase
    churn: list[ChurnEntry] | None = Field(default=None, description="a store only: ranked by spend")


@route("/analytics/rfm", "GET", op="analytics.rfm", tag=TAG, query=RfmQuery, response=RfmDistribution,
       errors=(404, 422), summary="The nightly segment distribution of a store, a region or the brand, with the "
                                  "change since the night before")
def rfm_distribution(call: Call) -> RfmDistribution:
    q: RfmQuery = call.query
    body: dict[str, Any] = segments.distribution(call.principal, bootstrap.rfm(), bootstrap.stores(),
                                                 store_id=q.store_id, region_id=q.region_id, as_of=q.as_of)
    return RfmDistribution.model_validate(body)


@route("/rfm-settings", "PUT", op="rfm.settings_put", tag=TAG, body=RfmSettingsInput, response=RfmSettingsView,
       errors=(409, 422), summary="How the nightly segmentation decides 'high' (mean, fixed, quintile) and warns of "
                                  "churn; from the next night on")
def put_rfm_settings(call: Call) -> RfmSettingsView:
    body: RfmSettingsInput = call.body
    settings = RfmSettings.model_validate(body.model_dump(exclude={"version"}))
    version = segments.put_settings(settings, body.version, call.principal, bootstrap.rfm())
    return RfmSettingsView(**settings.model_dump(), version=version)


@route("/rfm-settings", "GET", op="rfm.settings_read", tag=TAG, response=RfmSettingsView,
       summary="The segmentation settings now (version 0: never set, the defaults apply)")
def get_rfm_settings(call: Call) -> RfmSettingsView:
    settings, version = segments.get_settings(call.principal, bootstrap.rfm())
    return RfmSettingsView(**settings.model_dump(), version=version)
