"""Calendars in DynamoDB: the brand calendar, office calendars and store closures, one small item each in the
calendar partition (see keys.py). SLA clocks read them for every ticket they move, so reads are cached per
container for CACHE_SECONDS, misses included (most stores have no closures); a PUT in this container refreshes
its own copy. Another container may count with the old calendar for up to a minute: calendars change a few
times a year, and a minute's staleness moves a due time by at most what changed in that minute."""
from __future__ import annotations

import time
from datetime import datetime
from typing import Any

from ..domain import clock
from ..domain.calendars import BrandCalendar, OfficeCalendar, Saved, StoreClosures
from . import keys
from .db import Db


class DynamoCalendarRepository:
    CACHE_SECONDS = 60.0

    def __init__(self, db: Db) -> None:
        self.db = db
        self._cache: dict[str, tuple[float, Any]] = {}

    # ---- reads (fresh=True: the API's GETs, which show what was last written) ----
    def brand(self, fresh: bool = False) -> Saved[BrandCalendar] | None:
        return self._read(keys.brand_calendar_key(), BrandCalendar, fresh)

    def office(self, calendar_id: str, fresh: bool = False) -> Saved[OfficeCalendar] | None:
        return self._read(keys.office_calendar_key(calendar_id), OfficeCalendar, fresh)

    def closures(self, store_id: str, fresh: bool = False) -> Saved[StoreClosures] | None:
        return self._read(keys.store_closures_key(store_id), StoreClosures, fresh)

    # ---- writes (a PUT replaces the whole fact) ----
    def put_brand(self, saved: Saved[BrandCalendar]) -> None:
        self._write(keys.brand_calendar_key(), "brand_calendar", saved)

    def put_office(self, calendar_id: str, saved: Saved[OfficeCalendar]) -> None:
        self._write(keys.office_calendar_key(calendar_id), "office_calendar", saved, calendar_id=calendar_id)

    def put_closures(self, store_id: str, saved: Saved[StoreClosures]) -> None:
        self._write(keys.store_closures_key(store_id), "store_closures", saved, store_id=store_id)

    def _write(self, key: dict[str, str], kind: str, saved: Saved[Any], **extra: str) -> None:
        self.db.put({**key, "type": kind, **extra, "body": saved.value.model_dump(mode="json", exclude_none=True),
                     "updated_at": clock.iso(saved.updated_at), "updated_by": saved.updated_by})
        self._cache[key["sk"]] = (time.monotonic(), saved)

    def _read(self, key: dict[str, str], model: Any, fresh: bool) -> Any:
        cached = self._cache.get(key["sk"])
        if not fresh and cached and time.monotonic() - cached[0] < self.CACHE_SECONDS:
            return cached[1]
        item = self.db.get(key, consistent=fresh)
        saved = None
        if item:
            # context "stored": hours written under earlier rules load as they were accepted
            saved = Saved(value=model.model_validate(item.get("body") or {}, context={"stored": True}),
                          updated_at=datetime.fromisoformat(item["updated_at"]), updated_by=item.get("updated_by", ""))
        if cached and saved is not None and cached[1] is not None and _same(cached[1], saved):
            saved = cached[1]  # unchanged: keep the object, so resolved calendars built on it stay cached
        self._cache[key["sk"]] = (time.monotonic(), saved)
        return saved


def _same(a: Saved[Any], b: Saved[Any]) -> bool:
    return a.updated_at == b.updated_at and a.value == b.value
