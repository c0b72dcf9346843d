"""Token verification rules, without any network: pinned algorithms, issuers limited to their roles."""
import base64
import json
import os
import time

import jwt
import pytest

from chalicelib.adapters.tokens import TokenService, mint_token
from chalicelib.domain.errors import Unauthorized
from chalicelib.settings import TrustedIssuer

KEYS = {"member_signing": [os.urandom(32)], "idp": [os.urandom(32)]}
ISSUERS = [TrustedIssuer(iss="chaincrm", key="secret:member_signing", roles=["member"]),
           TrustedIssuer(iss="idp", key="secret:idp", roles=["staff", "hq"])]


def service(keys=KEYS):
    return TokenService(ISSUERS, lambda name: keys[name], "chaincrm", 3600)


def test_minted_member_token_verifies_and_carries_binding():
    token, exp = service().mint_member_token(openid_hash="ab" * 32, member_id="M1")
    claims = service().verify(token).claims
    assert claims["role"] == "member" and claims["member_id"] == "M1" and claims["oid"] == "ab" * 32
    assert exp > time.time()


def test_member_issuer_cannot_assert_hq():
    token = mint_token(KEYS["member_signing"][0], {"iss": "chaincrm", "sub": "x", "role": "hq"})
    with pytest.raises(Unauthorized):
        service().verify(token)


def test_previous_key_still_verifies_during_rotation():
    old, new = os.urandom(32), os.urandom(32)
    token = mint_token(old, {"iss": "idp", "sub": "s", "role": "staff"})
    rotated = {**KEYS, "idp": [new, old]}
    assert service(rotated).verify(token).claims["sub"] == "s"
    with pytest.raises(Unauthorized):
        service({**KEYS, "idp": [new]}).verify(token)


@pytest.mark.parametrize("make", [
    lambda: mint_token(KEYS["idp"][0], {"iss": "idp", "sub": "s", "role": "staff"}, ttl_seconds=-120),
    lambda: mint_token(KEYS["idp"][0], {"iss": "other", "sub": "s", "role": "staff"}),
    lambda: mint_token(KEYS["idp"][0], {"iss": "idp", "sub": "s", "role": "staff", "aud": "someone-else"}),
    lambda: jwt.encode({"iss": "idp", "sub": "s", "role": "staff", "aud": "chaincrm", "iat": int(time.time())},
                       KEYS["idp"][0], algorithm="HS256"),  # no exp
    lambda: ".".join(base64.urlsafe_b64encode(json.dumps(part).encode()).decode().rstrip("=") for part in (
        {"alg": "none", "typ": "JWT"},
        {"iss": "idp", "sub": "s", "role": "hq", "aud": "chaincrm", "iat": 1, "exp": 2 ** 31})) + ".",
    lambda: "not-a-jwt",
])
def test_bad_tokens_are_rejected(make):
    with pytest.raises(Unauthorized):
        service().verify(make())
