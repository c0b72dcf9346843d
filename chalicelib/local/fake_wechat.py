"""A small fake of WeChat's server APIs on loopback, for tests and the local stack.

Behaves like the real ones where it matters to us: login codes and phone codes are single-use, the
AppSecret must match, the phone API needs a valid access token, errors come as errcode/errmsg.
  wx.login code  "<user>" or "<user>~<nonce>" -> openid "o-<user>"  (codes starting "bad" are rejected;
                 the nonce lets one user sign in many times, as codes are single-use)
  phone code     "phone-13800138000"   -> that +86 number;  "phone-intl-<digits>" -> country code 1
"""
from __future__ import annotations

import json
import secrets
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class FakeWeChat:
    def __init__(self, appid: str, app_secret: str, port: int = 0) -> None:
        self.appid, self.app_secret = appid, app_secret
        self._used: set[str] = set()
        self._tokens: set[str] = set()
        self._lock = threading.Lock()
        self.fail_next = 0  # answer this many calls with errcode -1 (system busy)
        self.calls = 0
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:  # keep test output clean
                pass

            def do_GET(self) -> None:
                self._answer(None)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                self._answer(json.loads(self.rfile.read(length) or b"{}"))

            def _answer(self, body: dict | None) -> None:
                url = urllib.parse.urlparse(self.path)
                query = {k: v[0] for k, v in urllib.parse.parse_qs(url.query).items()}
                payload = fake.handle(url.path, query, body)
                raw = json.dumps(payload).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

        self._server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> FakeWeChat:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def handle(self, path: str, query: dict[str, str], body: dict | None) -> dict:
        with self._lock:
            self.calls += 1
            if self.fail_next > 0:
                self.fail_next -= 1
                return {"errcode": -1, "errmsg": "system error"}
            if path == "/cgi-bin/token":
                if query.get("appid") != self.appid or query.get("secret") != self.app_secret:
                    return {"errcode": 40125, "errmsg": "invalid appsecret"}
                token = secrets.token_hex(16)
                self._tokens.add(token)
                return {"access_token": token, "expires_in": 7200}
            if path == "/sns/jscode2session":
                if query.get("appid") != self.appid or query.get("secret") != self.app_secret:
                    return {"errcode": 40125, "errmsg": "invalid appsecret"}
                return self._use_code(query.get("js_code", ""), lambda c: {
                    "openid": f"o-{c.split('~')[0]}", "session_key": secrets.token_hex(8)})
            if path == "/wxa/business/getuserphonenumber":
                if query.get("access_token") not in self._tokens:
                    return {"errcode": 40001, "errmsg": "invalid credential, access_token is invalid"}
                return self._use_code((body or {}).get("code", ""), _phone_info)
            return {"errcode": 404, "errmsg": f"unknown path {path}"}

    def _use_code(self, code: str, ok) -> dict:  # noqa: ANN001
        if not code or code.startswith("bad") or code in self._used:
            return {"errcode": 40029, "errmsg": "invalid code"}
        self._used.add(code)
        return {"errcode": 0, "errmsg": "ok", **ok(code)}


def _phone_info(code: str) -> dict:
    if code.startswith("phone-intl-"):
        digits, country = code.removeprefix("phone-intl-"), "1"
    elif code.startswith("phone-"):
        digits, country = code.removeprefix("phone-"), "86"
    else:
        return {"errcode": 40029, "errmsg": "invalid code"}  # merged into the answer by the caller
    return {"phone_info": {"phoneNumber": (f"+{country} " if country != "86" else "") + digits,
                           "purePhoneNumber": digits, "countryCode": country}}
