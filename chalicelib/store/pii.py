"""Protection of personal data at rest: a dump of the table shows no phone or openid in the clear.

- lookup: HMAC-SHA256 under a secret key (a plain hash of an 11-digit phone is brute-forced in seconds);
- display/export: AES-256-GCM, the ciphertext bound to its member and field (associated data), so a
  ciphertext copied onto another item does not decrypt.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import os


class PiiProtector:
    def __init__(self, hmac_key: bytes, enc_key: bytes) -> None:
        self._hmac_key = hmac_key
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM  # deferred: first request, not import

        self._aead = AESGCM(enc_key)

    def lookup_hash(self, kind: str, value: str) -> str:
        return hmac.new(self._hmac_key, f"{kind}:{value}".encode(), hashlib.sha256).hexdigest()

    def encrypt(self, value: str, *, member_id: str, field: str) -> str:
        nonce = os.urandom(12)
        sealed = self._aead.encrypt(nonce, value.encode(), f"{member_id}:{field}".encode())
        return base64.b64encode(nonce + sealed).decode()

    def decrypt(self, token: str, *, member_id: str, field: str) -> str:
        raw = base64.b64decode(token)
        return self._aead.decrypt(raw[:12], raw[12:], f"{member_id}:{field}".encode()).decode()
