"""Short-lived signed links for report pages. A browser opening a link cannot send a bearer header, and a
bearer token must never sit in a URL (history, logs, Referer): the console asks for a link instead, which
names one page, one range and the caller's scope, and expires in minutes. HMAC-SHA256 with a key derived
from the member-signing secret (its own purpose label, so neither can stand in for the other); during a
rotation the previous key still verifies."""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Callable
from typing import Any

from ..domain.errors import Unauthorized

PURPOSE = b"chaincrm/report-links/v1"
TTL_SECONDS = 600


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class LinkSigner:
    def __init__(self, secret_keys: Callable[[], list[bytes]], clock: Callable[[], float] | None = None) -> None:
        self._secret_keys = secret_keys
        self._clock = clock or (lambda: time.time())

    def _keys(self) -> list[bytes]:
        return [hmac.new(k, PURPOSE, hashlib.sha256).digest() for k in self._secret_keys()]

    def sign(self, claims: dict[str, Any], ttl: int = TTL_SECONDS) -> tuple[str, int]:
        """(link token, expiry as epoch seconds)."""
        exp = int(self._clock()) + ttl
        body = _b64(json.dumps({**claims, "exp": exp}, separators=(",", ":"), sort_keys=True).encode())
        mac = hmac.new(self._keys()[0], body.encode(), hashlib.sha256).digest()
        return f"{body}.{_b64(mac)}", exp

    def verify(self, token: str) -> dict[str, Any]:
        try:
            body, mac = token.split(".")
            given = _unb64(mac)
            body.encode("ascii")
        except (ValueError, TypeError, UnicodeError):
            raise Unauthorized("this report link is not valid", code="invalid_link") from None
        if not any(hmac.compare_digest(hmac.new(k, body.encode(), hashlib.sha256).digest(), given)
                   for k in self._keys()):
            raise Unauthorized("this report link is not valid", code="invalid_link")
        claims = json.loads(_unb64(body))  # signed by us: well-formed
        if int(claims.get("exp", 0)) < self._clock():
            raise Unauthorized("this report link has expired; open the report again from the console",
                               code="link_expired")
        return claims
