"""/calendars and /stores/{store_id}/closures: the calendars SLA business time counts in."""
from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from .. import bootstrap
from ..domain.calendars import BrandCalendar, DateSpan, OfficeCalendar, Saved, StoreClosures
from ..services import calendars as svc
from .routing import Call, Reply, route

TAG = "calendars"


# ---- response models (kept here: the one resource that uses them) ------------------------------------------
class BrandCalendarView(BrandCalendar):
    model_config = ConfigDict(extra="forbid")
    updated_at: datetime | None = Field(description="the last PUT; null: never written (no holidays yet)")

    @classmethod
    def of(cls, saved: Saved[BrandCalendar] | None) -> BrandCalendarView:
        if saved is None:
            return cls(updated_at=None)
        return cls(**saved.value.model_dump(), updated_at=saved.updated_at)


class OfficeCalendarView(BaseModel):
    model_config = ConfigDict(extra="forbid")
    calendar_id: str
    name: str | None
    hours: dict[str, Any] | None = Field(description="weekly windows, each day a list of {open, close}; "
                                                     "null: open 24/7")
    honours_brand_calendar: bool = Field(description="closed on the brand's holidays, open on its adjusted "
                                                     "working days")
    updated_at: datetime

    @classmethod
    def of(cls, calendar_id: str, saved: Saved[OfficeCalendar]) -> OfficeCalendarView:
        office = saved.value
        return cls(calendar_id=calendar_id, name=office.name,
                   hours=office.hours.model_dump(mode="json", exclude_none=True) if office.hours else None,
                   honours_brand_calendar=office.honours_brand, updated_at=saved.updated_at)


class ClosuresView(BaseModel):
    model_config = ConfigDict(extra="forbid")
    store_id: str
    closures: list[DateSpan]
    updated_at: datetime | None = Field(description="the last PUT; null: never written")

    @classmethod
    def of(cls, store_id: str, saved: Saved[StoreClosures] | None) -> ClosuresView:
        return cls(store_id=store_id, closures=saved.value.closures if saved else [],
                   updated_at=saved.updated_at if saved else None)


# ---- the brand calendar -------------------------------------------------------------------------------------
@route("/calendars/brand", "PUT", op="calendars.put_brand", tag=TAG, body=BrandCalendar, response=BrandCalendarView,
       errors=(422,), summary="Replace the brand calendar: public holidays (closed) and adjusted working days (调休)")
def put_brand(call: Call) -> BrandCalendarView:
    return BrandCalendarView.of(svc.put_brand(call.body, call.principal, bootstrap.calendars()))


@route("/calendars/brand", "GET", op="calendars.read_brand", tag=TAG, response=BrandCalendarView,
       summary="The brand calendar (empty, updated_at null, until HQ writes one)")
def get_brand(call: Call) -> BrandCalendarView:
    return BrandCalendarView.of(svc.get_brand(call.principal, bootstrap.calendars()))


# ---- office calendars ---------------------------------------------------------------------------------------
@route("/calendars/{calendar_id}", "PUT", op="calendars.put_office", tag=TAG, body=OfficeCalendar,
       response=OfficeCalendarView, also=(201,), errors=(404, 422),
       summary="Create or replace an office calendar (201 when created); region and HQ queues count business "
               "time in `office` unless they name another")
def put_office(call: Call, calendar_id: str) -> Reply:
    saved, created = svc.put_office(calendar_id, call.body, call.principal, bootstrap.calendars())
    return Reply(OfficeCalendarView.of(calendar_id, saved), 201 if created else 200)


@route("/calendars/{calendar_id}", "GET", op="calendars.read_office", tag=TAG, response=OfficeCalendarView,
       errors=(404,), summary="An office calendar")
def get_office(call: Call, calendar_id: str) -> OfficeCalendarView:
    return OfficeCalendarView.of(calendar_id, svc.get_office(calendar_id, call.principal, bootstrap.calendars()))


# ---- a store's closures -------------------------------------------------------------------------------------
@route("/stores/{store_id}/closures", "PUT", op="calendars.put_closures", tag=TAG, body=StoreClosures,
       response=ClosuresView, errors=(404, 422),
       summary="Replace a store's own closed dates (on top of the brand's holidays)")
def put_closures(call: Call, store_id: str) -> ClosuresView:
    saved = svc.put_closures(store_id, call.body, call.principal, bootstrap.stores(), bootstrap.calendars())
    return ClosuresView.of(store_id, saved)


@route("/stores/{store_id}/closures", "GET", op="calendars.read_closures", tag=TAG, response=ClosuresView,
       errors=(404,), summary="A store's own closed dates (empty until written)")
def get_closures(call: Call, store_id: str) -> ClosuresView:
    return ClosuresView.of(store_id, svc.get_closures(store_id, call.principal, bootstrap.stores(),
                                                      bootstrap.calendars()))
