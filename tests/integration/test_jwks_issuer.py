"""Production issuers (Cognito, a WeCom gateway) sign RS256 and publish a JWKS: verified against a JWKS
served on loopback, with the same pinning rules as our own tokens."""
from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from chalicelib.adapters.tokens import TokenService
from chalicelib.domain.errors import Unauthorized
from chalicelib.settings import TrustedIssuer

ISS = "https://cognito-idp.ap-east-1.amazonaws.com/pool-1"


@pytest.fixture(scope="module")
def idp():
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    body = json.dumps({"keys": [{**jwk, "kid": "k1", "alg": "RS256", "use": "sig"}]}).encode()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    service = TokenService([TrustedIssuer(iss=ISS, key=f"jwks:http://127.0.0.1:{server.server_address[1]}/jwks",
                                          roles=["staff", "hq"])], lambda name: [], "chaincrm", 3600)
    yield key, service
    server.shutdown()


def _claims(**over):
    now = int(time.time())
    return {"iss": ISS, "aud": "chaincrm", "sub": "u1", "role": "staff", "store_ids": ["sh-001"], "iat": now,
            "exp": now + 600, **over}


def test_rs256_token_from_jwks_verifies(idp):
    key, service = idp
    token = jwt.encode(_claims(), key, algorithm="RS256", headers={"kid": "k1"})
    assert service.verify(token).claims["store_ids"] == ["sh-001"]


def test_hs256_signed_with_the_public_key_is_rejected(idp):
    key, service = idp
    public_pem = key.public_key().public_bytes(serialization.Encoding.PEM,
                                               serialization.PublicFormat.SubjectPublicKeyInfo)
    forged = _hmac_token(public_pem)  # built by hand: PyJWT itself refuses to HMAC-sign with a PEM key
    with pytest.raises(Unauthorized):
        service.verify(forged)


def _hmac_token(secret: bytes) -> str:
    import base64
    import hashlib
    import hmac

    def b64(raw: bytes) -> str:
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    signing_input = b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": "k1"}).encode()) + "." + \
        b64(json.dumps(_claims(role="hq")).encode())
    return signing_input + "." + b64(hmac.new(secret, signing_input.encode(), hashlib.sha256).digest())


@pytest.mark.parametrize("case", ["unknown_kid", "other_key", "role_not_trusted"])
def test_rs256_tokens_that_must_fail(idp, case):
    key, service = idp
    if case == "unknown_kid":
        token = jwt.encode(_claims(), key, algorithm="RS256", headers={"kid": "nope"})
    elif case == "other_key":
        other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        token = jwt.encode(_claims(), other, algorithm="RS256", headers={"kid": "k1"})
    else:
        token = jwt.encode(_claims(role="integration"), key, algorithm="RS256", headers={"kid": "k1"})
    with pytest.raises(Unauthorized):
        service.verify(token)
