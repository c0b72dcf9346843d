"""/stores: the brand's organisation."""
from __future__ import annotations

from chalice import Blueprint

from .. import bootstrap
from ..domain.access import Role
from ..domain.stores import StoreInput
from ..services import stores as svc
from .routing import Call, Reply, route
from .schemas import PageQuery, StoreList, StoreView

bp = Blueprint(__name__)
TAG = "stores"


@route(bp, "/stores/{store_id}", "PUT", tag=TAG, roles={Role.HQ}, body=StoreInput, response=StoreView, also=(201,),
       errors=(404, 422), summary="Create or replace a store (201 when created)")
def put_store(call: Call, store_id: str) -> Reply:
    store, created = svc.put_store(store_id, call.body, call.principal, bootstrap.stores())
    return Reply(StoreView.of(store), 201 if created else 200)


@route(bp, "/stores", "GET", tag=TAG, query=PageQuery, response=StoreList, errors=(422,), summary="List stores")
def list_stores(call: Call) -> StoreList:
    stores, cursor = bootstrap.stores().list(call.query.cursor, call.query.limit)
    return StoreList(items=[StoreView.of(s) for s in stores], next_cursor=cursor)


@route(bp, "/stores/{store_id}", "GET", tag=TAG, response=StoreView, errors=(404,), summary="One store")
def get_store(call: Call, store_id: str) -> StoreView:
    return StoreView.of(svc.get_store(store_id, bootstrap.stores()))
