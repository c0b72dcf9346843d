"""PIPL defects of issue 10: erasure reaches every WeChat login of the member (#5), and the export holds the
member's orders, their refunds and the phone's guest orders (#6)."""
from __future__ import annotations

import base64
import itertools
import json
import uuid
from typing import Any

from testkit.ledger import order, plain_day
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


# ---- #6: the export holds orders, refunds and the phone's guest orders ------------------------------------
INTERNAL = {"pk", "sk", "gsi1pk", "gsi1sk", "gsi2pk", "gsi2sk", "gsi3pk", "gsi3sk", "fingerprint",
            "guest_phone_hash", "phone_hash", "openid_hash", "phone_enc", "name_enc", "birthday_enc", "openid_enc"}


def _keys(value: Any) -> set[str]:
    if isinstance(value, dict):
        return set(value) | {k for v in value.values() for k in _keys(v)}
    if isinstance(value, list):
        return {k for v in value for k in _keys(v)}
    return set()


def test_export_holds_orders_with_lines_and_refunds(api, tokens):
    staff = tokens.staff(stores=["sh-001"])
    # Given a member with two orders (one refunded twice, once by line) and a merged duplicate's order
    member = api.post("/members", registration(), staff)[1]["member_id"]
    dup = api.post("/members", registration(), staff)[1]["member_id"]
    first, second = order(member, amount=9_000, lines=3), order(member, amount=5_000)
    dup_order = order(dup, amount=3_000)
    for body in (first, second, dup_order):
        assert api.post("/orders", body, staff)[0] == 201
    line = first["items"][0]
    refunds = [{"refund_id": "r-line", "amount": line["amount"],
                "items": [{"sku": line["sku"], "qty": 1, "amount": line["amount"]}]},
               {"refund_id": "r-more", "amount": 1_000}]
    for refund in refunds:
        assert api.post(f"/orders/{first['order_id']}/refunds", refund, staff)[0] == 201
    assert api.post(f"/members/{member}/merge", {"source_member_id": dup}, tokens.hq())[0] == 200

    # When the member exports their data
    status, export = api.get(f"/members/{member}/export", tokens.member(member))

    # Then every order is there with its lines, amounts, store, payment time and refunds so far
    assert status == 200, export
    held = {o["order_id"]: o for o in export["orders"]}
    assert set(held) == {first["order_id"], second["order_id"], dup_order["order_id"]}
    got = held[first["order_id"]]
    assert [(i["sku"], i["qty"], i["amount"]) for i in got["items"]] == \
        [(i["sku"], i["qty"], i["amount"]) for i in first["items"]]
    assert (got["amount"], got["store_id"], got["refunded_amount"]) == (9_000, "sh-001", line["amount"] + 1_000)
    assert got["paid_at"][:19] == first["paid_at"][:19]
    assert sorted((r["refund_id"], r["amount"]) for r in got["refunds"]) == [("r-line", line["amount"]),
                                                                              ("r-more", 1_000)]
    assert held[second["order_id"]]["refunds"] == []
    # the ledger entries stay in the records (earns of all three orders, both refunds)
    kinds = sorted(r["kind"] for r in export["records"] if r["type"] == "ledger")
    assert kinds == ["earn", "earn", "earn", "refund", "refund"]
    # and no storage key, fingerprint or lookup hash leaks into it
    assert not INTERNAL & _keys(export)
    assert export["guest_orders"] == []


def test_export_holds_the_phones_guest_orders_never_attached(api, tokens):
    staff = tokens.staff(stores=["sh-001"])
    phone = unique_phone()
    # Given a guest order older than the attach window (refunded in part) and a recent one, then registration
    old, recent = order(phone=phone, amount=7_000, paid_at=plain_day(40)), order(phone=phone, amount=4_000)
    for body in (old, recent):
        assert api.post("/orders", body, staff)[1]["guest"] is True
    assert api.post(f"/orders/{old['order_id']}/refunds", {"refund_id": "g-1", "amount": 2_000}, staff)[0] == 201
    member = api.post("/members", registration(phone), staff)[1]["member_id"]
    # Another phone's guest order must not appear
    assert api.post("/orders", order(phone=unique_phone(), amount=1_000), staff)[1]["guest"] is True

    # When HQ exports the member
    status, export = api.get(f"/members/{member}/export", tokens.hq())

    # Then the attached order is among the member's orders and the old one among the phone's guest orders
    assert status == 200, export
    assert [o["order_id"] for o in export["orders"]] == [recent["order_id"]]
    assert [o["order_id"] for o in export["guest_orders"]] == [old["order_id"]]
    guest = export["guest_orders"][0]
    assert guest["member_id"] is None and guest["amount"] == 7_000 and guest["refunded_amount"] == 2_000
    assert [(r["refund_id"], r["amount"]) for r in guest["refunds"]] == [("g-1", 2_000)]
    assert not INTERNAL & _keys(export)
