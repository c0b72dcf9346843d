"""WeChat mini-program server APIs: code2session (login) and getuserphonenumber (verified phone).

Plain urllib: two GETs and a POST do not justify a dependency. The base URL is configurable so tests and
the local stack point it at a fake WeChat server on loopback.
"""
from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from ..domain.errors import Invalid, Unavailable

# errcodes that mean "the code the client sent is bad" (vs. WeChat or our credentials failing)
_BAD_CODE = {40029, 40163, 40226, 45011, 40013}


class WeChatClient:
    def __init__(self, base_url: str, appid: str, app_secret: str, timeout: float) -> None:
        self._base = base_url
        self._appid = appid
        self._secret = app_secret
        self._timeout = timeout
        self._access_token: tuple[str, float] | None = None
        self._lock = threading.Lock()

    def openid_for_login_code(self, code: str) -> str:
        data = self._call("GET", "/sns/jscode2session", query={
            "appid": self._appid, "secret": self._secret, "js_code": code, "grant_type": "authorization_code"})
        if not data.get("openid"):
            raise Unavailable("WeChat returned no openid", code="wechat_unavailable")
        return str(data["openid"])

    def phone_for_code(self, code: str) -> tuple[str, str]:
        """(country code, number without country code) that WeChat verified for this user."""
        data = self._call("POST", "/wxa/business/getuserphonenumber",
                          query={"access_token": self._token()}, body={"code": code})
        info = data.get("phone_info") or {}
        if not info.get("purePhoneNumber"):
            raise Unavailable("WeChat returned no phone number", code="wechat_unavailable")
        return str(info.get("countryCode", "86")), str(info["purePhoneNumber"])

    def _token(self) -> str:
        with self._lock:
            if self._access_token and self._access_token[1] > time.time():
                return self._access_token[0]
            data = self._call("GET", "/cgi-bin/token", query={
                "grant_type": "client_credential", "appid": self._appid, "secret": self._secret})
            # refresh 5 minutes early: WeChat tokens last 7200 s and in-flight calls must not straddle expiry
            self._access_token = (data["access_token"], time.time() + int(data.get("expires_in", 7200)) - 300)
            return self._access_token[0]

    def _call(self, method: str, path: str, *, query: dict[str, str], body: dict | None = None) -> dict[str, Any]:
        url = f"{self._base}{path}?{urllib.parse.urlencode(query)}"
        data = json.dumps(body).encode() if body is not None else None
        # S310: the scheme is checked in settings (https, or http on loopback only)
        request = urllib.request.Request(url, data=data, method=method,  # noqa: S310
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=self._timeout) as resp:  # noqa: S310
                payload = json.loads(resp.read() or b"{}")
        except (urllib.error.URLError, TimeoutError, ValueError, OSError):
            raise Unavailable("WeChat could not be reached; retry", code="wechat_unavailable") from None
        errcode = int(payload.get("errcode") or 0)
        if errcode in _BAD_CODE:
            raise Invalid("the WeChat code is invalid or expired", code="invalid_wechat_code",
                          details=[{"loc": ["body", "code"], "msg": f"wechat errcode {errcode}"}])
        if errcode == 40001 or errcode == 42001:  # access token invalid/expired: drop it so the next call refreshes
            self._access_token = None
        if errcode:
            raise Unavailable("WeChat refused the call; retry", code="wechat_unavailable",
                              details={"errcode": errcode})
        return payload
