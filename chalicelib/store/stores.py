"""Stores in DynamoDB: one small item each in the organisation partition (a brand has hundreds, not millions)."""
from __future__ import annotations

import time
from datetime import date, datetime
from typing import Any

from ..domain import clock
from ..domain.stores import Store
from . import keys
from .db import Db, decode_cursor, encode_cursor


class DynamoStoreRepository:
    """Stores change a few times a year and are read on every registration (and later every order), so
    reads are cached per container for CACHE_SECONDS; a PUT in this container refreshes its own copy."""

    CACHE_SECONDS = 60.0

    def __init__(self, db: Db) -> None:
        self.db = db
        self._cache: dict[str, tuple[float, Store | None]] = {}

    def put(self, store: Store) -> None:
        self.db.put({
            **keys.store_key(store.store_id), "type": "store", "store_id": store.store_id, "name": store.name,
            "region_id": store.region_id, "city": store.city, "store_type": store.store_type.value,
            "opened_on": store.opened_on.isoformat() if store.opened_on else None,
            "business_hours": store.business_hours.model_dump(mode="json", exclude_none=True) or None,
            "rollup_shards": store.rollup_shards, "updated_at": clock.iso(store.updated_at),
        })
        self._cache[store.store_id] = (time.monotonic(), store)

    def get(self, store_id: str) -> Store | None:
        cached = self._cache.get(store_id)
        if cached and cached[1] is not None and time.monotonic() - cached[0] < self.CACHE_SECONDS:
            return cached[1]
        item = self.db.get(keys.store_key(store_id), consistent=False)
        store = _store(item) if item else None
        self._cache[store_id] = (time.monotonic(), store)
        return store

    def list(self, cursor: str | None, limit: int) -> tuple[list[Store], str | None]:
        start = decode_cursor(cursor, expect={"pk": keys.ORG_PK})
        items, last = self.db.query(KeyConditionExpression="pk = :pk AND begins_with(sk, :p)",
                                    values={":pk": keys.ORG_PK, ":p": keys.STORE_PREFIX}, Limit=limit, start=start)
        return [_store(i) for i in items], encode_cursor(last)


def _store(item: dict[str, Any]) -> Store:
    # context "stored": hours written under earlier rules (one window a day, open == close for 24 hours,
    # a past-midnight window reaching into the next day's) load as they were accepted; the calendar reads them.
    return Store.model_validate({
        "store_id": item["store_id"], "name": item["name"], "region_id": item["region_id"], "city": item["city"],
        "store_type": item["store_type"],
        "opened_on": date.fromisoformat(item["opened_on"]) if item.get("opened_on") else None,
        "business_hours": item.get("business_hours") or {}, "rollup_shards": int(item.get("rollup_shards") or 1),
        "updated_at": datetime.fromisoformat(item["updated_at"])}, context={"stored": True})
