"""Registration, lookup, view, edit through the app (chalice.test.Client; auth runs in our own code)."""
from __future__ import annotations

from testkit.support import registration, unique_phone


def test_register_then_lookup_and_view(api, tokens):
    staff = tokens.staff(stores=["sh-001"])
    phone = unique_phone()

    status, body = api.post("/members", registration(phone, name="小明😀"), staff)
    assert status == 201
    member_id = body["member_id"]
    assert body["phone"] == f"{phone[:3]}****{phone[-4:]}"  # staff see it masked
    assert body["name"] == "小明😀"
    assert body["home_store_id"] == "sh-001" and body["channels"] == ["store"]

    status, found = api.get(f"/members?phone=%2B86%20{phone}", staff)
    assert status == 200
    assert [m["member_id"] for m in found["items"]] == [member_id] and found["next_cursor"] is None

    status, view = api.get(f"/members/{member_id}", tokens.hq())
    assert status == 200 and view["phone"] == phone  # HQ sees it in full


def test_same_phone_again_returns_existing_member_with_new_channel(api, tokens):
    phone = unique_phone()
    _, first = api.post("/members", registration(phone), tokens.staff(stores=["sh-001"]))
    status, again = api.post("/members", registration(phone, store_id="mall", channel="mall"),
                             tokens.staff("integration", stores=["mall"]))
    assert status == 200
    assert again["member_id"] == first["member_id"]
    assert again["channels"] == ["mall", "store"]


def test_lookup_of_unknown_phone_is_empty(api, tokens):
    status, body = api.get(f"/members?phone={unique_phone()}", tokens.staff(stores=["sh-001"]))
    assert (status, body) == (200, {"items": [], "next_cursor": None})


def test_member_edits_own_profile_but_not_phone(api, tokens):
    _, m = api.post("/members", registration(), tokens.staff(stores=["sh-001"]))
    me = tokens.member(m["member_id"])
    status, body = api.patch(f"/members/{m['member_id']}", {"name": "新名字", "birthday": "1990-01-02"}, me)
    assert status == 200 and body["name"] == "新名字" and body["birthday"] == "1990-01-02"
    status, body = api.patch(f"/members/{m['member_id']}", {"phone": unique_phone()}, me)
    assert status == 403 and body["code"] == "phone_not_editable"
    status, body = api.patch(f"/members/{m['member_id']}", {"points": 100}, me)
    assert status == 422 and body["details"][0]["loc"] == ["body", "points"]


def test_hq_changes_phone_and_old_phone_no_longer_finds_member(api, tokens):
    old, new = unique_phone(), unique_phone()
    _, m = api.post("/members", registration(old), tokens.staff(stores=["sh-001"]))
    status, body = api.patch(f"/members/{m['member_id']}", {"phone": new}, tokens.hq())
    assert status == 200 and body["phone"] == new
    staff = tokens.staff(stores=["sh-002"])
    assert api.get(f"/members?phone={old}", staff)[1]["items"] == []
    assert api.get(f"/members?phone={new}", staff)[1]["items"][0]["member_id"] == m["member_id"]
    # the old phone is free again: registering it makes a new member
    status, other = api.post("/members", registration(old), tokens.staff(stores=["sh-001"]))
    assert status == 201 and other["member_id"] != m["member_id"]
