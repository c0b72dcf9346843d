"""Mini-program sign-in and verified-phone binding, against a fake WeChat server on loopback."""
from __future__ import annotations

import uuid

from testkit.support import registration, unique_phone


def _sign_in(api, user):
    status, body = api.post("/auth/wechat", {"code": f"{user}~{uuid.uuid4().hex[:6]}"})
    assert status == 200, body
    return body


def _bind(api, token, phone, **extra):
    return api.post("/members/me/phone", {"code": f"phone-{phone}", **extra}, token)


def test_new_person_signs_in_and_registers_with_verified_phone(api):
    user, phone = uuid.uuid4().hex[:8], unique_phone()
    session = _sign_in(api, user)
    assert session["member"] is None

    status, bound = _bind(api, session["token"], phone, store_id="sh-001", consent={"marketing": True})
    assert status == 200
    member = bound["member"]
    assert member["phone"] == phone and member["channels"] == ["miniprogram"] and member["home_store_id"] == "sh-001"
    assert member["consent"]["marketing"] is True

    status, view = api.get(f"/members/{member['member_id']}", bound["token"])
    assert status == 200 and view["member_id"] == member["member_id"]
    # signing in again later lands on the same member straight away
    assert _sign_in(api, user)["member"]["member_id"] == member["member_id"]


def test_existing_counter_member_is_joined_not_duplicated(api, tokens):
    phone = unique_phone()
    _, counter = api.post("/members", registration(phone), tokens.staff(stores=["sh-001"]))
    session = _sign_in(api, uuid.uuid4().hex[:8])
    status, bound = _bind(api, session["token"], phone)
    assert status == 200 and bound["member"]["member_id"] == counter["member_id"]
    assert bound["member"]["channels"] == ["miniprogram", "store"]


def test_answer_does_not_reveal_whether_the_phone_was_known(api, tokens):
    known = unique_phone()
    api.post("/members", registration(known), tokens.staff(stores=["sh-001"]))
    s1, b1 = _bind(api, _sign_in(api, uuid.uuid4().hex[:8])["token"], known)
    s2, b2 = _bind(api, _sign_in(api, uuid.uuid4().hex[:8])["token"], unique_phone())
    assert s1 == s2 == 200 and set(b1) == set(b2) and set(b1["member"]) == set(b2["member"])


def test_bound_member_changes_phone_through_wechat(api, tokens):
    old, new = unique_phone(), unique_phone()
    session = _sign_in(api, user := uuid.uuid4().hex[:8])
    member_id = _bind(api, session["token"], old)[1]["member"]["member_id"]
    status, body = _bind(api, _sign_in(api, user)["token"], new)
    assert status == 200 and body["member"]["member_id"] == member_id and body["member"]["phone"] == new
    staff = tokens.staff(stores=["sh-001"])
    assert api.get(f"/members?phone={old}", staff)[1]["items"] == []


def test_phone_of_another_membership_is_a_conflict(api, tokens):
    other = unique_phone()
    api.post("/members", registration(other), tokens.staff(stores=["sh-001"]))
    session = _sign_in(api, user := uuid.uuid4().hex[:8])
    _bind(api, session["token"], unique_phone())
    status, body = _bind(api, _sign_in(api, user)["token"], other)
    assert status == 409 and body["code"] == "phone_bound_elsewhere"


def test_bad_codes_foreign_numbers_and_outages(api, stack):
    status, body = api.post("/auth/wechat", {"code": "bad-code"})
    assert status == 422 and body["code"] == "invalid_wechat_code"
    token = _sign_in(api, uuid.uuid4().hex[:8])["token"]
    status, body = api.post("/members/me/phone", {"code": "phone-intl-4155550100"}, token)
    assert status == 422 and body["code"] == "unsupported_phone_region"
    status, body = api.post("/members/me/phone", {"code": "nonsense"}, token)
    assert status == 422 and body["code"] == "invalid_wechat_code"
    stack.wechat.fail_next = 1
    status, body = api.post("/auth/wechat", {"code": "someone"})
    assert status == 503 and body["code"] == "wechat_unavailable"


def test_phone_binding_needs_a_wechat_member_token(api, tokens):
    status, _ = api.post("/members/me/phone", {"code": "phone-13800138000"}, tokens.staff(stores=["sh-001"]))
    assert status == 403
    status, body = api.post("/members/me/phone", {"code": "phone-13800138000"}, tokens.member(None))
    assert status == 401 and body["code"] == "wechat_login_required"
