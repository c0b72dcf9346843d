"""The one configuration model. Nothing else in the code reads os.environ.

Built lazily on first use and cached, so importing app.py (which Chalice does at package time and in tests)
needs no environment at all.
"""
from __future__ import annotations

import json
import os
from functools import lru_cache

from pydantic import BaseModel, ConfigDict, Field, field_validator

ENV_PREFIX = "CHAINCRM_"


class TrustedIssuer(BaseModel):
    """An identity provider whose tokens we accept, and what it may assert.

    `key` says where the verification key comes from: `secret:<name>` is an HMAC key in our secret bundle
    (our own member tokens, and the local stand-in IdP); `jwks:<url>` is an RS256 key set (Cognito, WeCom
    gateway). The algorithm is pinned per issuer, so a token can never choose how it is verified.
    """

    iss: str
    key: str
    roles: list[str]
    audience: str = "chaincrm"


class Settings(BaseModel):
    """Filled from CHAINCRM_<FIELD> variables. A plain model rather than pydantic-settings: that package
    costs ~70 ms of cold start (it imports asyncio) for what `from_env` does in six lines."""

    model_config = ConfigDict(extra="forbid")

    stage: str = "local"
    table_name: str = "chaincrm"
    # Name or ARN of the Secrets Manager secret holding signing and PII keys (JSON, see chalicelib/secrets.py).
    secret_id: str = "chaincrm/local"
    issuers_json: str = Field(default="", description="JSON list of TrustedIssuer; empty = the local defaults")
    member_token_issuer: str = "chaincrm"
    member_token_ttl_seconds: int = 7 * 24 * 3600
    wechat_api_base: str = "https://api.weixin.qq.com"
    wechat_appid: str = "wx-local-app"
    wechat_timeout_seconds: float = 3.0
    max_body_bytes: int = 64 * 1024
    # The SQS queue of segment-audience coupon issue jobs (functions/coupon_audience.py consumes it).
    coupon_audience_queue_url: str = ""

    @field_validator("wechat_api_base")
    @classmethod
    def _https_or_loopback(cls, v: str) -> str:
        # Secrets travel in these URLs' query strings: never over plain HTTP beyond this machine.
        if not (v.startswith("https://") or v.startswith(("http://127.0.0.1", "http://localhost"))):
            raise ValueError("wechat_api_base must be https (or http on loopback for local use)")
        return v.rstrip("/")

    @property
    def issuers(self) -> list[TrustedIssuer]:
        if self.issuers_json:
            return [TrustedIssuer.model_validate(i) for i in json.loads(self.issuers_json)]
        return [
            TrustedIssuer(iss=self.member_token_issuer, key="secret:member_signing", roles=["member"]),
            # Local stand-in for the brand's IdP (Cognito/WeCom in production): the CLI mints these.
            TrustedIssuer(
                iss="chaincrm-local-idp",
                key="secret:local_idp",
                roles=["staff", "store_manager", "region_manager", "hq", "integration"],
            ),
        ]


    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        values = {name: env[ENV_PREFIX + name.upper()] for name in cls.model_fields if ENV_PREFIX + name.upper() in env}
        return cls.model_validate(values)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings.from_env()


def reset_settings() -> None:
    """Tests and the local launcher change the environment; they call this to rebuild the settings."""
    get_settings.cache_clear()
