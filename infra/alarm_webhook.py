"""Alarm -> WeCom / DingTalk group robot. SNS delivers each CloudWatch alarm; this posts it as a text message.
Inlined into the template (Code.ZipFile, <4096 chars): stdlib + the runtime's boto3 only. Never raises on an
unreadable alarm; raises when the robot refuses, so Lambda retries (async, twice)."""
import base64
import hashlib
import hmac
import json
import os
import time
import urllib.parse
import urllib.request

_webhook = {}


def webhook():
    """{"url": ..., "sign": ...} from the secret the stack writes from its NoEcho parameters; once a container."""
    if not _webhook:
        import boto3

        raw = boto3.client("secretsmanager").get_secret_value(SecretId=os.environ["WEBHOOK_SECRET_ID"])
        _webhook.update(json.loads(raw["SecretString"]))
    return _webhook


def text(message, stage):
    try:
        a = json.loads(message)
        a["AlarmName"]
    except (ValueError, TypeError, KeyError):
        return f"[chaincrm {stage}] {str(message)[:1500]}"
    lines = [f"[chaincrm {stage}] {a.get('NewStateValue', '?')}: {a['AlarmName']}",
             str(a.get("AlarmDescription") or ""), str(a.get("NewStateReason") or "")[:600],
             f"{a.get('Region', '')} {a.get('StateChangeTime', '')}"]
    return "\n".join(x for x in lines if x.strip())[:1800]


def signed(url, secret, now_ms):
    """DingTalk 'sign' security: timestamp + HMAC-SHA256 of "timestamp\\nsecret", base64, in the query."""
    mac = hmac.new(secret.encode(), f"{now_ms}\n{secret}".encode(), hashlib.sha256).digest()
    sign = urllib.parse.quote_plus(base64.b64encode(mac).decode())
    return f"{url}{'&' if '?' in url else '?'}timestamp={now_ms}&sign={sign}"


def post(url, content, timeout=5):
    # WeCom and DingTalk robots take the same text message and answer {"errcode": 0, ...} when they accept it.
    body = json.dumps({"msgtype": "text", "text": {"content": content}}, ensure_ascii=False).encode()
    # https only (the parameter's AllowedPattern); http://127.0.0.1 in the tests' fake robot
    req = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})  # noqa: S310
    with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310
        answer = json.loads(resp.read() or b"{}")
    if answer.get("errcode", 0) != 0:
        raise RuntimeError(f"robot refused the alarm: {answer}")
    return answer


def handler(event, context=None):
    hook = webhook()
    stage = os.environ.get("CHAINCRM_STAGE", "?")
    sent = 0
    for record in event.get("Records", []):
        url = hook["url"]
        if hook.get("sign"):
            url = signed(url, hook["sign"], int(time.time() * 1000))
        post(url, text(record.get("Sns", {}).get("Message", ""), stage))
        sent += 1
    return {"sent": sent}
