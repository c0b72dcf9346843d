"""The alarm webhook Lambda (infra/alarm_webhook.py, inlined into the stack) against a fake WeCom / DingTalk robot
on loopback, with the webhook URL in a Secrets Manager secret (the local stack's moto server) as the stack
stores it."""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import urllib.parse
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from infra import alarm_webhook

ALARM = {"AlarmName": "chaincrm-prod-api-5xx", "AlarmDescription": "api: API Gateway answered 5xx",
         "NewStateValue": "ALARM", "NewStateReason": "Threshold Crossed: 1 datapoint [7.0] >= 5.0",
         "StateChangeTime": "2026-12-02T01:02:03.000+0000", "Region": "Asia Pacific (Hong Kong)"}


class FakeRobot:
    """Answers like a WeCom / DingTalk group robot: {"errcode": 0} when it accepts, another code when not."""

    def __init__(self) -> None:
        self.received: list[tuple[str, dict[str, Any]]] = []
        self.errcode = 0
        robot = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                robot.received.append((self.path, body))
                answer = json.dumps({"errcode": robot.errcode,
                                     "errmsg": "keywords not in content" if robot.errcode else "ok"})
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(answer.encode())

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"


@pytest.fixture
def robot(monkeypatch) -> Iterator[FakeRobot]:  # noqa: ANN001
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    fake = FakeRobot()
    thread = threading.Thread(target=fake.server.serve_forever, daemon=True)
    thread.start()
    yield fake
    fake.server.shutdown()
    fake.server.server_close()


@pytest.fixture
def secret(stack, monkeypatch) -> Iterator[Any]:  # noqa: ANN001
    """Puts {"url", "sign"} in a Secrets Manager secret the way the stack writes it, on the local stack's moto
    server. Not an in-process `mock_aws`: moto's in-process backends are the same ones its server in this
    test process serves, and leaving a mock resets them, which would delete the stack's own secret bundle
    under every later test of the worker."""
    import uuid

    import boto3

    monkeypatch.setenv("CHAINCRM_STAGE", "prod")
    client = boto3.client("secretsmanager")

    def put(url: str, sign: str = "") -> None:
        arn = client.create_secret(Name=f"chaincrm/prod/alarm-webhook-{uuid.uuid4().hex[:8]}",
                                   SecretString=json.dumps({"url": url, "sign": sign}))["ARN"]
        monkeypatch.setenv("WEBHOOK_SECRET_ID", arn)
        alarm_webhook._webhook.clear()

    yield put
    alarm_webhook._webhook.clear()


def _sns(*messages: str) -> dict[str, Any]:
    return {"Records": [{"EventSource": "aws:sns", "Sns": {"Message": m, "Subject": "ALARM"}} for m in messages]}


def test_each_alarm_is_posted_as_a_wecom_text_message(robot, secret):  # noqa: ANN001
    secret(robot.url + "/cgi-bin/webhook/send?key=robot-key")
    result = alarm_webhook.handler(_sns(json.dumps(ALARM), "not json at all"))
    assert result == {"sent": 2}
    (path, body), (_, raw) = robot.received
    assert path == "/cgi-bin/webhook/send?key=robot-key"
    assert body["msgtype"] == "text"
    content = body["text"]["content"]
    assert content.startswith("[chaincrm prod] ALARM: chaincrm-prod-api-5xx")
    assert "API Gateway answered 5xx" in content and "Threshold Crossed" in content
    assert raw["text"]["content"] == "[chaincrm prod] not json at all"  # never lost for being unreadable


def test_dingtalk_signed_posts_carry_timestamp_and_signature(robot, secret):  # noqa: ANN001
    secret(robot.url + "/robot/send?access_token=tok", sign="SECsecret")
    alarm_webhook.handler(_sns(json.dumps(ALARM)))
    path, _ = robot.received[0]
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(path).query)
    assert query["access_token"] == ["tok"]
    timestamp = query["timestamp"][0]
    expected = base64.b64encode(hmac.new(b"SECsecret", f"{timestamp}\nSECsecret".encode(), hashlib.sha256).digest())
    assert query["sign"] == [expected.decode()]


def test_a_refusing_robot_fails_the_invocation_so_lambda_retries(robot, secret):  # noqa: ANN001
    secret(robot.url + "/cgi-bin/webhook/send?key=robot-key")
    robot.errcode = 310000
    with pytest.raises(RuntimeError, match="refused"):
        alarm_webhook.handler(_sns(json.dumps(ALARM)))
