"""PIPL defects of issue 10: erasure reaches every WeChat login of the member (#5)."""
from __future__ import annotations

import base64
import itertools
import json
import uuid
from typing import Any

from testkit.support import registration, unique_phone

_codes = itertools.count()


def _sign_in(api, user: str) -> dict[str, Any]:
    status, body = api.post("/auth/wechat", {"code": f"{user}~{uuid.uuid4().hex[:6]}"})
    assert status == 200, body
    return body


def _phone_code(phone: str) -> str:
    """A fresh WeChat phone code for `phone` (the fake WeChat takes each code once; these spell it apart)."""
    n = next(_codes)
    return "phone-" + ("86" * (n % 2)) + phone[:3] + " " * (n // 2 % 5) + phone[3:]


def _bind(api, token: str, phone: str) -> dict[str, Any]:
    status, body = api.post("/members/me/phone", {"code": _phone_code(phone)}, token)
    assert status == 200, body
    return body


def _openid_hash(token: str) -> str:
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))["oid"]


def _wechat_member(api, *users: str) -> tuple[str, str, list[dict[str, Any]]]:
    """Each WeChat user signs in and binds one phone: the first registers the member, the others join it."""
    phone = unique_phone()
    sessions = [_bind(api, _sign_in(api, user)["token"], phone) for user in users]
    member_ids = {s["member"]["member_id"] for s in sessions}
    assert len(member_ids) == 1
    return member_ids.pop(), phone, sessions


def _new_user() -> str:
    return uuid.uuid4().hex[:8]


# ---- #5: erasure removes every openid marker; sign-in never answers an undocumented status ---------------------
def test_erasure_through_one_wechat_login_unlinks_the_other(api):
    # Given WeChat users u1 and u2 who both bound the same phone (one member)
    u1, u2 = _new_user(), _new_user()
    member_id, phone, sessions = _wechat_member(api, u1, u2)
    # When the member erases themself through u2's token
    status, erased = api.delete(f"/members/{member_id}", sessions[1]["token"])
    assert status == 200 and erased["status"] == "erased"
    # Then both logins are new, unbound people (before the fix: u1 got 404 member_erased for good)
    for user in (u1, u2):
        assert _sign_in(api, user)["member"] is None
    # and u1 can bind the (now free) phone again: a new member
    again = _bind(api, _sign_in(api, u1)["token"], phone)
    assert again["member"]["member_id"] != member_id and again["member"]["phone"] == phone


def test_erasure_unlinks_the_wechat_logins_of_members_merged_into_it(api, tokens):
    hq, staff = tokens.hq(), tokens.staff(stores=["sh-001"])
    # Given a WeChat member S with two logins merged into a counter member T, and a chain A -> B -> C
    u3, u4, u5 = _new_user(), _new_user(), _new_user()
    source, _, _ = _wechat_member(api, u3, u4)
    target = api.post("/members", registration(), staff)[1]["member_id"]
    assert api.post(f"/members/{target}/merge", {"source_member_id": source}, hq)[0] == 200
    a, a_phone, _ = _wechat_member(api, u5)
    b = api.post("/members", registration(), staff)[1]["member_id"]
    c = api.post("/members", registration(), staff)[1]["member_id"]
    assert api.post(f"/members/{b}/merge", {"source_member_id": a}, hq)[0] == 200
    assert api.post(f"/members/{c}/merge", {"source_member_id": b}, hq)[0] == 200
    # When both survivors are erased
    assert api.delete(f"/members/{target}", hq)[0] == 200
    assert api.delete(f"/members/{c}", hq)[0] == 200
    # Then every login of every merged-away member signs in as a new person (before: 404 member_erased)
    for user in (u3, u4, u5):
        assert _sign_in(api, user)["member"] is None
    # and the phone of a member merged two hops away is free again (before: 404 member_erased)
    status, fresh = api.post("/members", registration(a_phone), staff)
    assert status == 201 and fresh["member_id"] not in (a, b, c), fresh


def test_sign_in_and_binding_heal_a_login_left_linked_to_an_erased_member(api, stack, tokens):
    # Given a login whose marker still names an erased member (left behind by erasures before the fix)
    user = _new_user()
    erased = api.post("/members", registration(), tokens.staff(stores=["sh-001"]))[1]["member_id"]
    assert api.delete(f"/members/{erased}", tokens.hq())[0] == 200
    oid = _openid_hash(_sign_in(api, user)["token"])
    stack.client("dynamodb").update_item(
        TableName=stack.table_name, Key={"pk": {"S": f"OPENID#{oid}"}, "sk": {"S": "OPENID"}},
        UpdateExpression="SET member_id = :m", ExpressionAttributeValues={":m": {"S": erased}})
    stale_token = tokens.member(erased, openid_hash=oid)
    # When the person signs in, or binds a phone with a token minted back then
    session = _sign_in(api, user)
    bound = _bind(api, stale_token, phone := unique_phone())
    # Then sign-in answers a new, unbound person (before: 404 member_erased), and binding registers one
    assert session["member"] is None
    assert bound["member"]["member_id"] != erased and bound["member"]["phone"] == phone
    assert _sign_in(api, user)["member"]["member_id"] == bound["member"]["member_id"]
