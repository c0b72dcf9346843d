"""PIPL rights (export, erasure) and protection of personal data at rest."""
from __future__ import annotations

import io
import json
import logging

import pytest

from testkit.support import registration, unique_phone


def _raw_items(stack, member_id):
    return stack.client("dynamodb").query(
        TableName=stack.table_name, KeyConditionExpression="pk = :pk",
        ExpressionAttributeValues={":pk": {"S": f"MEMBER#{member_id}"}})["Items"]


def test_table_dump_shows_no_phone_or_name_in_clear(stack, api, tokens):
    phone = unique_phone()
    _, m = api.post("/members", registration(phone, name="隐私测试", birthday="1991-03-04"),
                    tokens.staff(stores=["sh-001"]))
    dump = json.dumps(_raw_items(stack, m["member_id"]), ensure_ascii=False)
    assert phone not in dump and "隐私测试" not in dump and "1991-03-04" not in dump
    assert f"{phone[:3]}****{phone[-4:]}" in dump  # the masked copy is what a dump may show


def test_member_exports_everything_then_erases(stack, api, tokens):
    phone = unique_phone()
    _, m = api.post("/members", registration(phone, name="导出"), tokens.staff(stores=["sh-001"]))
    me = tokens.member(m["member_id"])
    api.patch(f"/members/{m['member_id']}", {"gender": "female"}, me)

    status, export = api.get(f"/members/{m['member_id']}/export", me)
    assert status == 200
    assert export["member"]["phone"] == phone and export["member"]["name"] == "导出"
    actions = [r["action"] for r in export["records"] if r["type"] == "audit"]
    assert actions == ["member.registered", "member.updated"]

    status, erased = api.delete(f"/members/{m['member_id']}", me)
    assert status == 200 and erased == {"member_id": m["member_id"], "status": "erased"}
    assert api.get(f"/members/{m['member_id']}", tokens.hq())[1]["code"] == "member_erased"
    assert api.get(f"/members?phone={phone}", tokens.staff(stores=["sh-001"]))[1]["items"] == []
    profile = next(i for i in _raw_items(stack, m["member_id"]) if i["sk"]["S"] == "PROFILE")
    personal = {"phone_enc", "phone_hash", "phone_masked", "name_enc", "birthday_enc", "gsi1pk", "gender"}
    assert not personal & set(profile)
    assert profile["status"]["S"] == "erased" and profile["home_store_id"]["S"] == "sh-001"  # facts stay

    assert api.delete(f"/members/{m['member_id']}", me) == (200, erased)  # idempotent
    status, again = api.post("/members", registration(phone), tokens.staff(stores=["sh-001"]))
    assert status == 201 and again["member_id"] != m["member_id"]  # the phone is free: a new person


def test_erasing_a_survivor_also_frees_merged_phones(api, tokens):
    hq = tokens.hq()
    old_phone = unique_phone()
    _, survivor = api.post("/members", registration(), tokens.staff(stores=["sh-001"]))
    _, dup = api.post("/members", registration(old_phone), tokens.staff(stores=["sh-001"]))
    api.post(f"/members/{survivor['member_id']}/merge", {"source_member_id": dup["member_id"]}, hq)
    assert api.delete(f"/members/{survivor['member_id']}", hq)[0] == 200
    assert api.get(f"/members?phone={old_phone}", hq)[1]["items"] == []


@pytest.fixture
def log_lines():
    """Everything our loggers emit, formatted as in production (Powertools JSON, extras included)."""
    from chalicelib.observability import audit_logger, logger

    sink = io.StringIO()
    handler = logging.StreamHandler(sink)
    handler.setFormatter(logger.registered_formatter)
    targets = [logging.getLogger(logger.name), logging.getLogger(audit_logger.name)]
    for target in targets:
        target.addHandler(handler)
    yield sink
    for target in targets:
        target.removeHandler(handler)


def test_phones_and_tokens_never_reach_the_logs(api, tokens, log_lines):
    phone = unique_phone()
    staff, hq = tokens.staff(stores=["sh-001"]), tokens.hq()
    _, m = api.post("/members", registration(phone, name="日志测试"), staff)
    api.get(f"/members?phone={phone}", staff)
    api.get(f"/members/{m['member_id']}", staff)
    api.patch(f"/members/{m['member_id']}", {"phone": unique_phone()}, hq)
    api.post("/members", registration(phone[:-1]), staff)  # invalid: 10 digits
    api.get("/members/" + m["member_id"], staff + "x")  # tampered token: 401
    logs = log_lines.getvalue()
    assert '"member.read"' in logs and m["member_id"] in logs  # the audit lines are there...
    for secret in (phone, phone[:-1], staff, hq, "日志测试"):
        assert secret not in logs  # ...but never the phone, the name or a token
