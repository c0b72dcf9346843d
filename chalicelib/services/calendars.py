"""Calendars: HQ keeps the brand calendar and office calendars, a store's managers (and HQ) its closures; the SLA
code asks `calendar_for_queue` which calendar a queue's business time counts in.

Which calendar a queue counts in:
- a store queue: the store's weekly hours (on the store: the one copy), the brand calendar, the store's
  closures. A store queue whose store item is missing counts wall time (ALWAYS): a ticket there still gets a
  deadline rather than none;
- a region or HQ queue: the office calendar the queue names (`calendar_id`, when queues carry one), else the
  office calendar `office` when HQ has defined it, else 24/7 (ALWAYS). A named calendar that does not exist
  falls back the same way.
An office calendar applies the brand calendar when it says so (default: yes when it has hours).

`add_business` on a calendar with no open time within calendar.SEARCH_DAYS (a store with no hours, closed for
more than a year) raises `NoOpenTime`: the SLA code records "no deadline" for that target."""
from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from ..domain import clock
from ..domain.access import Principal
from ..domain.calendars import (
    ALWAYS,
    BrandCalendar,
    Calendar,
    OfficeCalendar,
    Saved,
    StoreClosures,
    office_calendar,
    store_calendar,
    weekly,
)
from ..domain.errors import NotFound
from ..domain.policy import authorize
from ..domain.stores import Store
from ..domain.tickets import QueueRecord
from ..observability import audit as audit_line
from .ports import StoreRepository

DEFAULT_OFFICE = "office"  # the office calendar region and HQ queues count in unless they name another


class CalendarRepository(Protocol):
    def brand(self, fresh: bool = False) -> Saved[BrandCalendar] | None: ...
    def office(self, calendar_id: str, fresh: bool = False) -> Saved[OfficeCalendar] | None: ...
    def closures(self, store_id: str, fresh: bool = False) -> Saved[StoreClosures] | None: ...
    def put_brand(self, saved: Saved[BrandCalendar]) -> None: ...
    def put_office(self, calendar_id: str, saved: Saved[OfficeCalendar]) -> None: ...
    def put_closures(self, store_id: str, saved: Saved[StoreClosures]) -> None: ...


# ---- the brand calendar ---------------------------------------------------------------------------------------
def put_brand(cmd: BrandCalendar, actor: Principal, calendars: CalendarRepository) -> Saved[BrandCalendar]:
    authorize("calendars.put_brand", actor)
    saved = Saved(value=cmd, updated_at=clock.to_ms(clock.now()), updated_by=actor.sub)
    calendars.put_brand(saved)
    audit_line("calendar.brand.put", actor=actor.sub, role=actor.role.value, holidays=len(cmd.holidays),
               workdays=len(cmd.workdays))
    return saved


def get_brand(actor: Principal, calendars: CalendarRepository) -> Saved[BrandCalendar] | None:
    """None: HQ has not written one (no holidays, no adjusted days)."""
    authorize("calendars.read_brand", actor)
    return calendars.brand(fresh=True)


# ---- office calendars -----------------------------------------------------------------------------------------
def put_office(calendar_id: str, cmd: OfficeCalendar, actor: Principal,
               calendars: CalendarRepository) -> tuple[Saved[OfficeCalendar], bool]:
    authorize("calendars.put_office", actor)
    created = calendars.office(calendar_id, fresh=True) is None
    saved = Saved(value=cmd, updated_at=clock.to_ms(clock.now()), updated_by=actor.sub)
    calendars.put_office(calendar_id, saved)
    audit_line("calendar.office.put", actor=actor.sub, role=actor.role.value, calendar_id=calendar_id,
               created=created)
    return saved, created


def get_office(calendar_id: str, actor: Principal, calendars: CalendarRepository) -> Saved[OfficeCalendar]:
    authorize("calendars.read_office", actor)
    saved = calendars.office(calendar_id, fresh=True)
    if saved is None:
        raise NotFound("calendar not found", code="calendar_not_found", details={"calendar_id": calendar_id})
    return saved


# ---- a store's closures ---------------------------------------------------------------------------------------
def put_closures(store_id: str, cmd: StoreClosures, actor: Principal, stores: StoreRepository,
                 calendars: CalendarRepository) -> Saved[StoreClosures]:
    store = _store(store_id, stores)
    authorize("calendars.put_closures", actor, store=store)
    saved = Saved(value=cmd, updated_at=clock.to_ms(clock.now()), updated_by=actor.sub)
    calendars.put_closures(store_id, saved)
    audit_line("calendar.closures.put", actor=actor.sub, role=actor.role.value, store_id=store_id,
               closures=len(cmd.closures))
    return saved


def get_closures(store_id: str, actor: Principal, stores: StoreRepository,
                 calendars: CalendarRepository) -> Saved[StoreClosures] | None:
    store = _store(store_id, stores)
    authorize("calendars.read_closures", actor, store=store)
    return calendars.closures(store_id, fresh=True)


def _store(store_id: str, stores: StoreRepository) -> Store:
    store = stores.get(store_id)
    if store is None:
        raise NotFound("store not found", code="store_not_found", details={"store_id": store_id})
    return store


# ---- the calendar a queue counts in ---------------------------------------------------------------------------
# Resolved calendars by queue facts, rebuilt only when a fact they were built from is another object: the
# repositories hand out the same objects while their per-container cache holds (CACHE_SECONDS, a minute).
_resolved: dict[tuple[str, str], tuple[tuple[object, ...], Calendar]] = {}


def calendar_for_queue(queue: QueueRecord, stores: StoreRepository, calendars: CalendarRepository) -> Calendar:
    """The calendar the queue's business time counts in (see the module's docstring)."""
    if queue.kind == "store" and queue.store_id:
        return calendar_for_store(queue.store_id, stores, calendars)
    calendar_id = getattr(queue, "calendar_id", None)  # queues may name their office calendar
    office = calendars.office(calendar_id) if calendar_id else None
    if office is None:
        calendar_id, office = DEFAULT_OFFICE, calendars.office(DEFAULT_OFFICE)
    if office is None:
        return ALWAYS
    brand = calendars.brand() if office.value.honours_brand else None
    return _cached(("office", calendar_id), (office, brand),
                   lambda: office_calendar(office.value, brand.value if brand else None))


def calendar_for_store(store_id: str, stores: StoreRepository, calendars: CalendarRepository) -> Calendar:
    """A store's calendar: its hours, the brand calendar, its closures. ALWAYS when the store is unknown or
    keeps no hours at all (an online store; a store whose hours were never entered): a ticket there still
    gets deadlines, rather than a clock that can never run out."""
    store = stores.get(store_id)
    if store is None or not any(weekly(store.business_hours)):
        return ALWAYS
    brand, closures = calendars.brand(), calendars.closures(store_id)
    return _cached(("store", store_id), (store, brand, closures),
                   lambda: store_calendar(store.business_hours, brand.value if brand else None,
                                          closures.value if closures else None))


def _cached(key: tuple[str, str], facts: tuple[object, ...], build: Callable[[], Calendar]) -> Calendar:
    hit = _resolved.get(key)
    if hit is not None and len(hit[0]) == len(facts) and all(a is b for a, b in zip(hit[0], facts, strict=True)):
        return hit[1]
    calendar = build()
    _resolved[key] = (facts, calendar)
    return calendar
