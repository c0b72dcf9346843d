"""Shared test helpers: tokens for every role, unique phones, a live HTTP server for the app."""
from __future__ import annotations

import base64
import json
import random
import threading
import uuid
from typing import Any

from chalicelib.adapters.tokens import mint_token

STORES = {  # the stores every test session has (created by the `stack` fixture)
    "sh-001": "east", "sh-002": "east", "gz-001": "south", "mall": "online",
}


def create_stores() -> None:
    """The stores every test table (and the benchmark) has: tokens scoped to sh-001 etc. work everywhere."""
    from chalicelib import bootstrap
    from chalicelib.domain.access import Principal, Role
    from chalicelib.domain.stores import StoreInput
    from chalicelib.services.stores import put_store

    hq = Principal(sub="fixture", role=Role.HQ)
    for store_id, region in STORES.items():
        put_store(store_id, StoreInput(name=f"Store {store_id}", region_id=region, city="上海",
                                       store_type="online" if store_id == "mall" else "standard"), hq,
                  bootstrap.stores())


def unique_phone() -> str:
    return f"1{random.choice('3456789')}{random.randrange(10**9):09d}"


class Tokens:
    def __init__(self, bundle: dict[str, str]) -> None:
        self.bundle = bundle

    def member(self, member_id: str | None, *, openid_hash: str | None = None, **extra: Any) -> str:
        claims: dict[str, Any] = {"iss": "chaincrm", "role": "member", "sub": f"member:{member_id}", **extra}
        if member_id:
            claims["member_id"] = member_id
        if openid_hash:
            claims["oid"] = openid_hash
        return mint_token(base64.b64decode(self.bundle["member_signing"]), claims)

    def staff(self, role: str = "staff", *, stores: list[str] | None = None, region: str | None = None,
              sub: str | None = None, **extra: Any) -> str:
        claims: dict[str, Any] = {"iss": "chaincrm-local-idp", "role": role, "sub": sub or f"{role}-1", **extra}
        if stores is not None:
            claims["store_ids"] = stores
        if region is not None:
            claims["region_id"] = region
        return mint_token(base64.b64decode(self.bundle["local_idp"]), claims)

    def hq(self) -> str:
        return self.staff("hq", sub="hq-1")

    def for_role(self, role: str, **scope: Any) -> str:
        return self.member(scope.get("member_id")) if role == "member" else self.staff(role, **scope)


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}


class Api:
    """chalice.test.Client with JSON conveniences: api.post('/members', body, token) -> (status, json)."""

    def __init__(self, client: Any) -> None:
        self.client = client

    def call(self, method: str, path: str, body: Any = None, token: str | None = None,
             headers: dict[str, str] | None = None) -> tuple[int, Any]:
        h = {"Content-Type": "application/json", **(headers or {})}
        if token:
            h["Authorization"] = f"Bearer {token}"
        raw = body if isinstance(body, (str, bytes)) or body is None else json.dumps(body)
        resp = getattr(self.client.http, method.lower())(path, body=raw, headers=h)
        return resp.status_code, (json.loads(resp.body) if resp.body else None)

    def get(self, path: str, token: str | None = None, **kw: Any) -> tuple[int, Any]:
        return self.call("GET", path, token=token, **kw)

    def post(self, path: str, body: Any, token: str | None = None, **kw: Any) -> tuple[int, Any]:
        return self.call("POST", path, body, token, **kw)

    def patch(self, path: str, body: Any, token: str | None = None, **kw: Any) -> tuple[int, Any]:
        return self.call("PATCH", path, body, token, **kw)

    def put(self, path: str, body: Any, token: str | None = None, **kw: Any) -> tuple[int, Any]:
        return self.call("PUT", path, body, token, **kw)

    def delete(self, path: str, token: str | None = None, **kw: Any) -> tuple[int, Any]:
        return self.call("DELETE", path, token=token, **kw)


class HqCalls:
    """Setup calls made as HQ through the API, shared by the table-driven suites. Needs `api`, `hq` and
    `member()` on the class that mixes it in."""

    api: Any
    hq: str

    def member(self) -> dict[str, Any]:
        raise NotImplementedError

    def phone_is_free(self, phone: str) -> None:
        status, found = self.api.get(f"/members?phone={phone}", self.hq)
        assert (status, found["items"]) == (200, []), "a refused request registered the phone anyway"

    def wechat_session(self) -> str:
        status, body = self.api.post("/auth/wechat", {"code": f"t-{uuid.uuid4().hex}"})
        assert status == 200, body
        return body["token"]

    def order(self, member_id: str, amount: int = 10_000, **extra: Any) -> dict[str, Any]:
        """HQ posts an order at sh-001 with two lines (sku-0, sku-1): 10_000 fen = 100 points."""
        from testkit.ledger import order as order_body

        body = order_body(member_id, amount=amount, lines=2, **extra)
        status, receipt = self.api.post("/orders", body, self.hq)
        assert status == 201, receipt
        return body

    def order_view(self, order_id: str) -> tuple[int, Any]:
        return self.api.get(f"/orders/{order_id}", self.hq)

    def points(self, member_id: str) -> dict[str, Any]:
        status, view = self.api.get(f"/members/{member_id}/points", self.hq)
        assert status == 200, view
        return view

    def funded_member(self) -> dict[str, Any]:
        """A member holding exactly 100 points (one order)."""
        m = self.member()
        self.order(m["member_id"])
        assert self.points(m["member_id"])["balance"] == 100
        return m


def registration(phone: str | None = None, store_id: str = "sh-001", channel: str = "store", **extra: Any) -> dict:
    return {"phone": phone or unique_phone(), "channel": channel, "store_id": store_id,
            "consent": {"marketing": True}, **extra}


class LiveServer:
    """The app served over real HTTP by Chalice's local server (threaded), as `make run` serves it."""

    def __init__(self) -> None:
        from app import app
        from chalicelib.local.dynamodb_local import free_port
        from chalicelib.local.server import create_server

        self.port = free_port()
        self._server = create_server(app, "127.0.0.1", self.port)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> LiveServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
