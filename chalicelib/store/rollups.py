"""Store day rollups in DynamoDB (domain/rollups.py says what they count): written with `ADD` inside the
change's own transaction, read a store's range with one Query (every shard at once), never by scanning orders."""
from __future__ import annotations

from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from typing import Any

from ..domain.rollups import DayRollup
from . import keys
from .db import Db, Tx

# Parallel store reads of one KPI request (a brand has hundreds of stores; each Query is one small request).
READERS = 16


def add_to_day(tx: Tx, rollup: DayRollup) -> int:
    names = {f"#f{i}": f for i, f in enumerate(rollup.deltas)}
    values: dict[str, Any] = {f":d{i}": v for i, v in enumerate(rollup.deltas.values())}
    return tx.update(keys.store_day_key(rollup.store_id, rollup.day, rollup.shard),
                     "ADD " + ", ".join(f"#f{i} :d{i}" for i in range(len(names))), names=names, values=values)


class DynamoRollupRepository:
    def __init__(self, db: Db) -> None:
        self.db = db

    def days(self, store_id: str, first: date, last: date) -> list[dict[str, Any]]:
        """Every day item (all shards) of the store first..last; eventually consistent (a report a second old)."""
        pk, low, high = keys.store_days_range(store_id, first, last)
        return list(self.db.query_all(KeyConditionExpression="pk = :pk AND sk BETWEEN :lo AND :hi",
                                      values={":pk": pk, ":lo": low, ":hi": high}, ConsistentRead=False))

    def many(self, store_ids: Iterable[str], first: date, last: date) -> dict[str, list[dict[str, Any]]]:
        ids = list(dict.fromkeys(store_ids))
        with ThreadPoolExecutor(min(READERS, max(1, len(ids)))) as pool:
            return dict(zip(ids, pool.map(lambda s: self.days(s, first, last), ids), strict=True))
