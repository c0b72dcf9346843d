"""The secret bundle (signing and PII keys) from AWS Secrets Manager.

Locally the same code reads moto's Secrets Manager (AWS_ENDPOINT_URL_SECRETS_MANAGER), seeded from a
generated, git-ignored file; production reads the stage's secret. No local branch in this code.

Bundle (JSON, values base64 unless noted):
  member_signing            HMAC key for the member tokens we issue   (+ member_signing_previous while rotating)
  local_idp                 HMAC key of the local stand-in IdP (absent in production)
  pii_hmac                  32-byte key: keyed hash of phones/openids for lookup
  pii_enc                   32-byte key: AES-GCM encryption of personal fields
  wechat_app_secret         text: the mini-program's AppSecret
"""
from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class SecretBundle:
    values: dict[str, str]

    def key(self, name: str) -> bytes:
        return base64.b64decode(self.values[name])

    def keys(self, name: str) -> list[bytes]:
        """The current key and, during a rotation, the previous one (verification only)."""
        found = [self.key(name)]
        if self.values.get(f"{name}_previous"):
            found.append(self.key(f"{name}_previous"))
        return found

    def text(self, name: str) -> str:
        return self.values[name]


def load_secret_bundle(client: Any, secret_id: str) -> SecretBundle:
    resp = client.get_secret_value(SecretId=secret_id)
    return SecretBundle(json.loads(resp["SecretString"]))
