"""Organisation use cases: HQ maintains stores; every signed-in caller may read them (a store locator)."""
from __future__ import annotations

from ..domain import clock
from ..domain.access import Principal
from ..domain.errors import NotFound
from ..domain.policy import authorize
from ..domain.stores import Store, StoreInput
from ..observability import audit as audit_line
from .ports import StoreRepository


def put_store(store_id: str, cmd: StoreInput, actor: Principal, stores: StoreRepository) -> tuple[Store, bool]:
    authorize("stores.put", actor)
    created = stores.get(store_id) is None
    store = Store(store_id=store_id, updated_at=clock.now(), **cmd.model_dump())
    stores.put(store)
    audit_line("store.put", actor=actor.sub, role=actor.role.value, store_id=store_id, created=created)
    return store, created


def get_store(store_id: str, stores: StoreRepository) -> Store:
    store = stores.get(store_id)
    if store is None:
        raise NotFound("store not found", code="store_not_found", details={"store_id": store_id})
    return store


def list_stores(cursor: str | None, limit: int, stores: StoreRepository) -> tuple[list[Store], str | None]:
    return stores.list(cursor, limit)
