"""/stores: the brand's organisation."""
from __future__ import annotations

from .. import bootstrap
from ..services import stores as svc
from .inputs import PageQuery, StoreInput
from .responses import StoreList, StoreView
from .routing import Call, Reply, route

TAG = "stores"


@route("/stores/{store_id}", "PUT", op="stores.put", tag=TAG, body=StoreInput, response=StoreView, also=(201,),
       errors=(404, 422), summary="Create or replace a store (201 when created)")
def put_store(call: Call, store_id: str) -> Reply:
    store, created = svc.put_store(store_id, call.body, call.principal, bootstrap.stores())
    return Reply(StoreView.of(store), 201 if created else 200)


@route("/stores", "GET", op="stores.list", tag=TAG, query=PageQuery, response=StoreList, errors=(422,),
       summary="List stores")
def list_stores(call: Call) -> StoreList:
    stores, cursor = svc.list_stores(call.query.cursor, call.query.limit, bootstrap.stores())
    return StoreList(items=[StoreView.of(s) for s in stores], next_cursor=cursor)


@route("/stores/{store_id}", "GET", op="stores.get", tag=TAG, response=StoreView, errors=(404,), summary="One store")
def get_store(call: Call, store_id: str) -> StoreView:
    return StoreView.of(svc.get_store(store_id, bootstrap.stores()))
