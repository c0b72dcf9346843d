"""Bearer tokens: verifying every caller's JWT, and minting the member tokens we issue ourselves.

Each trusted issuer pins its algorithm and key (HS256 from our secret bundle, or RS256 from a JWKS), so a
token cannot choose its own verification (`alg: none`, HS/RS confusion); an issuer may only assert the roles
it is trusted for (our own member tokens can never claim `hq`).
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jwt

from ..domain.errors import Unauthorized
from ..settings import TrustedIssuer

LEEWAY_SECONDS = 30


@dataclass(frozen=True)
class VerifiedClaims:
    iss: str
    claims: dict[str, Any]


class TokenService:
    def __init__(self, issuers: list[TrustedIssuer], secret_keys: Callable[[str], list[bytes]],
                 member_issuer: str, member_ttl_seconds: int) -> None:
        self._issuers = {i.iss: i for i in issuers}
        self._secret_keys = secret_keys
        self._member_issuer = member_issuer
        self._member_ttl = member_ttl_seconds
        self._jwks: dict[str, Any] = {}

    # ---- verification --------------------------------------------------------------------------------
    def verify(self, token: str) -> VerifiedClaims:
        try:
            unverified = jwt.decode(token, options={"verify_signature": False})
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise Unauthorized("malformed token", code="invalid_token") from None
        issuer = self._issuers.get(str(unverified.get("iss")))
        if issuer is None:
            raise Unauthorized("token issuer is not trusted", code="invalid_token")
        kind, _, ref = issuer.key.partition(":")
        options = {"require": ["exp", "iat", "sub", "iss", "aud"]}
        claims = None
        if kind == "secret":
            for key in self._secret_keys(ref):
                try:
                    claims = jwt.decode(token, key, algorithms=["HS256"], audience=issuer.audience,
                                        issuer=issuer.iss, leeway=LEEWAY_SECONDS, options=options)
                    break
                except jwt.InvalidSignatureError:
                    continue
                except jwt.PyJWTError as err:
                    raise Unauthorized(_why(err), code="invalid_token") from None
        elif kind == "jwks":
            try:
                key = self._jwks_client(ref).get_signing_key(header.get("kid")).key
                claims = jwt.decode(token, key, algorithms=["RS256"], audience=issuer.audience,
                                    issuer=issuer.iss, leeway=LEEWAY_SECONDS, options=options)
            except jwt.PyJWTError as err:
                raise Unauthorized(_why(err), code="invalid_token") from None
        if claims is None:
            raise Unauthorized("token signature is not valid", code="invalid_token")
        if claims.get("role") not in issuer.roles:
            raise Unauthorized("this issuer may not assert that role", code="invalid_token")
        return VerifiedClaims(iss=issuer.iss, claims=claims)

    def _jwks_client(self, url: str) -> Any:
        if url not in self._jwks:
            self._jwks[url] = jwt.PyJWKClient(url, cache_keys=True, lifespan=3600, timeout=3)
        return self._jwks[url]

    # ---- minting -------------------------------------------------------------------------------------
    def mint_member_token(self, *, openid_hash: str, member_id: str | None) -> tuple[str, int]:
        now = int(time.time())
        exp = now + self._member_ttl
        claims = {"iss": self._member_issuer, "aud": "chaincrm", "sub": f"wx:{openid_hash[:32]}",
                  "role": "member", "oid": openid_hash, "iat": now, "exp": exp}
        if member_id:
            claims["member_id"] = member_id
        return jwt.encode(claims, self._secret_keys("member_signing")[0], algorithm="HS256"), exp


def mint_token(key: bytes, claims: dict[str, Any], ttl_seconds: int = 12 * 3600) -> str:
    """For the local stand-in IdP (CLI `token`) and tests: sign arbitrary claims with an HMAC key."""
    now = int(time.time())
    return jwt.encode({"aud": "chaincrm", "iat": now, "exp": now + ttl_seconds, **claims}, key, algorithm="HS256")


def _why(err: Exception) -> str:
    if isinstance(err, jwt.ExpiredSignatureError):
        return "token has expired"
    if isinstance(err, jwt.InvalidAudienceError):
        return "token audience is wrong"
    if isinstance(err, jwt.InvalidAlgorithmError):
        return "token algorithm is not accepted"
    if isinstance(err, jwt.MissingRequiredClaimError):
        return f"token lacks claim {err.claim}"
    return "token is not valid"
