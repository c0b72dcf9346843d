"""Bad input on every route that takes input: a 4xx in our error shape {"code","message","details"}, and
NOTHING changed. "Nothing changed" is checked twice: by a read through the API (the member looks the same,
the phone is still free, ...), and by scanning this module's own table before and after the request (not
one item added, removed or modified).

Also the edge cases that must be ACCEPTED (full-width digits, +86 formatting, emoji names), so the
rejections above cannot come from an app that simply rejects everything.
"""
from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest

from tests.support import STORES, registration, unique_phone

ERROR_KEYS = {"code", "message", "details"}
LIMIT = 64 * 1024  # the documented request-body limit
UNKNOWN_MEMBER = "01ARZ3NDEKTSV4RRFFQ69G5FAV"  # a well-formed ULID nobody holds
UNKNOWN_SOURCE = "01ARZ3NDEKTSV4RRFFQ69G5FAW"  # another one (a merge's source must differ from its target)


# ---- a table of our own, so a before/after scan sees only this module's data ---------------------------
@pytest.fixture(scope="module", autouse=True)
def own_table(stack, api, tokens) -> Iterator[str]:  # noqa: ANN001
    from chalicelib import bootstrap

    name = f"chaincrm-badinput-{uuid.uuid4().hex[:8]}"
    stack.ensure_table(name)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CHAINCRM_TABLE_NAME", name)
        bootstrap.reset()
        for store_id, region in STORES.items():  # the demo stores, created through the API
            body = {"name": f"Store {store_id}", "region_id": region, "city": "上海",
                    "store_type": "online" if store_id == "mall" else "standard"}
            assert api.put(f"/stores/{store_id}", body, tokens.hq())[0] == 201
        yield name
    bootstrap.reset()
    stack.client("dynamodb").delete_table(TableName=name)


def _table_items(stack: Any) -> dict[tuple[str, str], dict[str, Any]]:
    from chalicelib import bootstrap

    items: dict[tuple[str, str], dict[str, Any]] = {}
    pages = stack.client("dynamodb").get_paginator("scan").paginate(
        TableName=bootstrap.settings().table_name, ConsistentRead=True)
    for page in pages:
        for item in page["Items"]:
            items[(item["pk"]["S"], item["sk"]["S"])] = item
    return items


@pytest.fixture
def nothing_written(stack) -> Callable[[], Any]:  # noqa: ANN001
    """`with nothing_written(): ...` fails if the block added, removed or changed any item in the table."""

    @contextmanager
    def check() -> Iterator[None]:
        before = _table_items(stack)
        yield
        after = _table_items(stack)
        added = sorted(after.keys() - before.keys())
        removed = sorted(before.keys() - after.keys())
        changed = sorted(k for k in before.keys() & after.keys() if before[k] != after[k])
        assert not (added or removed or changed), \
            f"a rejected request wrote to the table: added={added} removed={removed} changed={changed}"

    return check


# ---- helpers --------------------------------------------------------------------------------------------
class Ctx:
    def __init__(self, api: Any, tokens: Any) -> None:
        self.api, self.tokens = api, tokens
        self.hq = tokens.hq()
        self.staff = tokens.staff(stores=["sh-001"])

    def member(self, **extra: Any) -> dict[str, Any]:
        phone = unique_phone()
        status, body = self.api.post("/members", registration(phone, **extra), self.hq)
        assert status == 201, body
        return {**body, "phone": phone}

    def view(self, member_id: str) -> dict[str, Any]:
        status, body = self.api.get(f"/members/{member_id}", self.hq)
        assert status == 200, body
        return body

    def phone_is_free(self, phone: str) -> None:
        status, found = self.api.get(f"/members?phone={phone}", self.hq)
        assert (status, found["items"]) == (200, []), "a rejected request registered the phone"

    def store(self) -> dict[str, Any]:
        store_id = f"bi-{uuid.uuid4().hex[:10]}"
        body = {"name": "原来的店", "region_id": "east", "city": "上海", "store_type": "standard"}
        status, created = self.api.put(f"/stores/{store_id}", body, self.hq)
        assert status == 201, created
        return created

    def wechat_session(self) -> str:
        status, body = self.api.post("/auth/wechat", {"code": f"bi-{uuid.uuid4().hex}"})
        assert status == 200, body
        return body["token"]


@pytest.fixture
def ctx(api, tokens) -> Ctx:  # noqa: ANN001
    return Ctx(api, tokens)


def assert_error(status: int, body: Any, want_status: int, code: str | None = None,
                 loc: list[Any] | None = None) -> None:
    assert status == want_status, f"expected {want_status}, got {status}: {body}"
    assert isinstance(body, dict) and set(body) == ERROR_KEYS, body
    assert isinstance(body["code"], str) and body["code"] and isinstance(body["message"], str)
    if code is not None:
        assert body["code"] == code, body
    if loc is not None:
        locs = [d.get("loc") for d in body["details"]] if isinstance(body["details"], list) else []
        assert any(found[:len(loc)] == loc for found in locs if isinstance(found, list)), \
            f"no detail names {loc}: {body['details']}"


def assert_phone_not_echoed(body: Any, phone: str) -> None:
    """PII must not be reflected: neither the submitted text nor its digits appear in the error."""
    text = json.dumps(body, ensure_ascii=False)
    if len(phone.strip()) >= 3:  # an empty or tiny value is a substring of anything
        assert phone not in text, text
    digits = re.sub(r"\D", "", phone)
    if len(digits) >= 6:
        assert digits not in text, text


def fullwidth(digits: str) -> str:
    return digits.translate(str.maketrans("0123456789", "０１２３４５６７８９"))


def invalid_phones() -> list[Any]:
    p = unique_phone()  # built from a fresh number, so "not echoed" cannot pass by coincidence
    return [
        pytest.param(p[:7], id="too short"),
        pytest.param(p + "1", id="too long"),
        pytest.param(p[:3] + "abcd" + p[7:], id="letters"),
        pytest.param("021" + p[3:], id="shanghai landline"),
        pytest.param("+1 " + p[1:4] + " " + p[4:7] + " " + p[7:], id="+1 north american"),
        pytest.param("+86 " + p[:10], id="+86 with 10 digits"),
        pytest.param("12" + p[2:], id="no 12x mobile prefix"),
        pytest.param("", id="empty"),
        pytest.param("   ", id="blank"),
    ]


# ---- POST /members ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("phone", invalid_phones())
def test_register_rejects_invalid_phone_without_echoing_it(api, ctx, nothing_written, phone):  # noqa: ANN001
    with nothing_written():
        # (set explicitly: registration("") would fall back to a fresh valid phone)
        status, body = api.post("/members", {**registration(), "phone": phone}, ctx.staff)
    assert_error(status, body, 422, "validation_error", ["body", "phone"])
    assert_phone_not_echoed(body, phone)


MASS_ASSIGNMENT = [
    pytest.param("points", 1_000_000, id="points"),
    pytest.param("tier", "diamond", id="tier"),
    pytest.param("balance", 99_999_00, id="balance"),
    pytest.param("member_id", UNKNOWN_MEMBER, id="member_id"),
    pytest.param("status", "active", id="status"),
    pytest.param("points_balance", 1_000_000, id="points_balance"),
    pytest.param("merged_into", UNKNOWN_MEMBER, id="merged_into"),
]


@pytest.mark.parametrize(("field", "value"), MASS_ASSIGNMENT)
def test_register_rejects_unknown_fields(api, ctx, nothing_written, field, value):  # noqa: ANN001
    # Mass assignment: a client must not be able to set server-owned fields at registration.
    phone = unique_phone()
    with nothing_written():
        status, body = api.post("/members", registration(phone, **{field: value}), ctx.hq)
    assert_error(status, body, 422, "validation_error", ["body", field])
    assert_phone_not_echoed(body, phone)
    ctx.phone_is_free(phone)


WRONG_TYPES = [
    pytest.param("channel", 1, ["body", "channel"], id="channel number"),
    pytest.param("store_id", ["sh-001"], ["body", "store_id"], id="store_id list"),
    pytest.param("consent", True, ["body", "consent"], id="consent bool"),
    pytest.param("consent", "yes", ["body", "consent"], id="consent string"),
    pytest.param("consent", {"marketing": "maybe"}, ["body", "consent", "marketing"], id="consent.marketing string"),
    pytest.param("consent", {}, ["body", "consent", "marketing"], id="consent without marketing"),
    pytest.param("name", 123, ["body", "name"], id="name number"),
    pytest.param("name", ["小明"], ["body", "name"], id="name list"),
    pytest.param("birthday", "yesterday", ["body", "birthday"], id="birthday word"),
    pytest.param("birthday", "1990-02-30", ["body", "birthday"], id="birthday impossible date"),
    pytest.param("gender", "robot", ["body", "gender"], id="gender unknown"),
    pytest.param("gender", 1, ["body", "gender"], id="gender number"),
]


@pytest.mark.parametrize(("field", "value", "loc"), WRONG_TYPES)
def test_register_rejects_wrong_types(api, ctx, nothing_written, field, value, loc):  # noqa: ANN001
    phone = unique_phone()
    with nothing_written():
        status, body = api.post("/members", {**registration(phone), field: value}, ctx.hq)
    assert_error(status, body, 422, "validation_error", loc)
    ctx.phone_is_free(phone)


def test_register_rejects_phone_as_json_number(api, ctx, nothing_written):  # noqa: ANN001
    phone = unique_phone()
    with nothing_written():
        status, body = api.post("/members", {**registration(), "phone": int(phone)}, ctx.hq)
    assert_error(status, body, 422, "validation_error", ["body", "phone"])
    assert_phone_not_echoed(body, phone)
    ctx.phone_is_free(phone)


@pytest.mark.parametrize("field", ["phone", "channel", "store_id", "consent"])
def test_register_requires_field(api, ctx, nothing_written, field):  # noqa: ANN001
    body_in = registration()
    del body_in[field]
    with nothing_written():
        status, body = api.post("/members", body_in, ctx.hq)
    assert_error(status, body, 422, "validation_error", ["body", field])
    assert any(d["loc"] == ["body", field] and d["type"] == "missing" for d in body["details"])


@pytest.mark.parametrize("channel", ["wechat", "STORE", "", "pos"])
def test_register_rejects_invalid_channel(api, ctx, nothing_written, channel):  # noqa: ANN001
    phone = unique_phone()
    with nothing_written():
        status, body = api.post("/members", registration(phone, channel=channel), ctx.hq)
    assert_error(status, body, 422, "validation_error", ["body", "channel"])
    ctx.phone_is_free(phone)


@pytest.mark.parametrize("token_kind", ["hq", "staff"])
def test_register_at_unknown_store_is_unknown_store(api, ctx, nothing_written, token_kind):  # noqa: ANN001
    phone = unique_phone()
    with nothing_written():
        status, body = api.post("/members", registration(phone, store_id="nope-404"), getattr(ctx, token_kind))
    assert_error(status, body, 422, "unknown_store", ["body", "store_id"])
    ctx.phone_is_free(phone)


@pytest.mark.parametrize("store_id", ["sh 001", "../sh-001", "x" * 41, "", "店-001"])
def test_register_rejects_malformed_store_id(api, ctx, nothing_written, store_id):  # noqa: ANN001
    phone = unique_phone()
    with nothing_written():
        status, body = api.post("/members", registration(phone, store_id=store_id), ctx.hq)
    assert_error(status, body, 422, "validation_error", ["body", "store_id"])
    ctx.phone_is_free(phone)


def _today() -> Any:
    from chalicelib.domain import clock

    return clock.now().date()  # the business day (Asia/Shanghai), as the app judges it


def bad_birthdays() -> list[Any]:
    return [
        pytest.param((_today() + timedelta(days=2)).isoformat(), id="in the future"),
        pytest.param("2999-01-01", id="far future"),
        pytest.param("1899-12-31", id="day before 1900"),
        pytest.param("0001-01-01", id="year 1"),
    ]


@pytest.mark.parametrize("birthday", bad_birthdays())
def test_register_rejects_birthday_out_of_range(api, ctx, nothing_written, birthday):  # noqa: ANN001
    phone = unique_phone()
    with nothing_written():
        status, body = api.post("/members", registration(phone, birthday=birthday), ctx.hq)
    assert_error(status, body, 422, "validation_error", ["body", "birthday"])
    ctx.phone_is_free(phone)


@pytest.mark.parametrize("birthday", [pytest.param("1900-01-01", id="1900-01-01"), pytest.param(None, id="today")])
def test_register_accepts_birthday_at_the_bounds(api, ctx, birthday):  # noqa: ANN001
    # The edges of the allowed range are accepted, so the rejections above are about the range.
    birthday = birthday or _today().isoformat()
    status, body = api.post("/members", registration(birthday=birthday), ctx.hq)
    assert status == 201 and body["birthday"] == birthday


BLANK_NAMES = [pytest.param("", id="empty"), pytest.param(" ", id="space"), pytest.param("    ", id="spaces"),
               pytest.param("\u3000\u3000", id="ideographic spaces"), pytest.param(" \t\n ", id="mixed whitespace")]

CONTROL_NAMES = [
    pytest.param("张\x00三", id="NUL"),
    pytest.param("张\n三", id="newline"),
    pytest.param("张\t三", id="tab"),
    pytest.param("张\r三", id="carriage return"),
    pytest.param("\x1b[31m张三\x1b[0m", id="ANSI escape"),
    pytest.param("张\x7f三", id="DEL"),
    # C1 control characters (U+0080-U+009F, Unicode category Cc) are control characters too: NEL, CSI.
    pytest.param("张\x85三", id="C1 NEL"),
    pytest.param("张\x9b31m三", id="C1 CSI"),
    # Bidi overrides make a name display as something else; a name of only invisible characters is blank.
    pytest.param("abc\u202egnp.exe", id="bidi override"),
    pytest.param("\u200b\u200b", id="only zero-width spaces"),
]

# A lone UTF-16 surrogate is legal JSON ("\\ud800") but not text: it could not be stored as UTF-8.
BROKEN_NAMES = [pytest.param("张\ud800三", id="lone surrogate")]

LONG_NAMES = [pytest.param("名" * 41, id="41 CJK chars"), pytest.param("a" * 41, id="41 ascii chars"),
              pytest.param("😀" * 41, id="41 emoji")]


@pytest.mark.parametrize("name", BLANK_NAMES + CONTROL_NAMES + BROKEN_NAMES + LONG_NAMES)
def test_register_rejects_bad_name(api, ctx, nothing_written, name):  # noqa: ANN001
    phone = unique_phone()
    with nothing_written():
        status, body = api.post("/members", registration(phone, name=name), ctx.hq)
    assert_error(status, body, 422, "validation_error", ["body", "name"])
    ctx.phone_is_free(phone)


@pytest.mark.parametrize("name", [pytest.param("名" * 40, id="40 CJK chars"), pytest.param("😀" * 40, id="40 emoji")])
def test_register_accepts_40_char_name(api, ctx, name):  # noqa: ANN001
    # 40 is the limit, counted in characters (not bytes): 41 is rejected above, 40 goes through.
    status, body = api.post("/members", registration(name=name), ctx.hq)
    assert (status, body["name"]) == (201, name)


@pytest.mark.parametrize("raw", [pytest.param("[]", id="array"), pytest.param('"member"', id="string"),
                                 pytest.param("null", id="null"), pytest.param("42", id="number")])
def test_register_rejects_json_that_is_not_an_object(api, ctx, nothing_written, raw):  # noqa: ANN001
    with nothing_written():
        status, body = api.post("/members", raw, ctx.hq)
    assert_error(status, body, 422, "validation_error", ["body"])


# ---- request-reading errors, on EVERY route that takes a body -------------------------------------------
@dataclass
class BodyCase:
    method: str
    path: str
    token: str | None
    valid: dict[str, Any]
    ok_status: int
    unchanged: Callable[[], None]


def _case_register(c: Ctx) -> BodyCase:
    phone = unique_phone()
    return BodyCase("POST", "/members", c.hq, registration(phone, name="小明"), 201, lambda: c.phone_is_free(phone))


def _case_patch(c: Ctx) -> BodyCase:
    m = c.member(name="原名")
    before = c.view(m["member_id"])
    return BodyCase("PATCH", f"/members/{m['member_id']}", c.hq, {"name": "改名", "birthday": "1990-01-02"}, 200,
                    lambda: _same(c.view(m["member_id"]), before))


def _case_merge(c: Ctx) -> BodyCase:
    target, source = c.member(), c.member()
    before = (c.view(target["member_id"]), c.view(source["member_id"]))
    return BodyCase("POST", f"/members/{target['member_id']}/merge", c.hq, {"source_member_id": source["member_id"]},
                    200, lambda: _same((c.view(target["member_id"]), c.view(source["member_id"])), before))


def _case_put_store(c: Ctx) -> BodyCase:
    store = c.store()
    return BodyCase("PUT", f"/stores/{store['store_id']}", c.hq,
                    {"name": "改过的店", "region_id": "south", "city": "广州", "store_type": "kiosk"}, 200,
                    lambda: _same(c.api.get(f"/stores/{store['store_id']}", c.hq), (200, store)))


def _case_wechat_login(c: Ctx) -> BodyCase:
    code = f"bi-{uuid.uuid4().hex}"

    def code_not_used() -> None:  # the rejected request never reached WeChat: the one-time code still works
        assert c.api.post("/auth/wechat", {"code": code})[0] == 200

    return BodyCase("POST", "/auth/wechat", None, {"code": code}, 200, code_not_used)


def _case_bind_phone(c: Ctx) -> BodyCase:
    phone = unique_phone()
    return BodyCase("POST", "/members/me/phone", c.wechat_session(), {"code": f"phone-{phone}"}, 200,
                    lambda: c.phone_is_free(phone))


def _same(actual: Any, expected: Any) -> None:
    assert actual == expected, "a rejected request changed the data"


BODY_ROUTES: dict[tuple[str, str], Callable[[Ctx], BodyCase]] = {
    ("POST", "/members"): _case_register,
    ("PATCH", "/members/{member_id}"): _case_patch,
    ("POST", "/members/{member_id}/merge"): _case_merge,
    ("PUT", "/stores/{store_id}"): _case_put_store,
    ("POST", "/auth/wechat"): _case_wechat_login,
    ("POST", "/members/me/phone"): _case_bind_phone,
}
QUERY_ROUTES = {("GET", "/members"), ("GET", "/stores")}  # covered by their own tests below


def test_every_route_that_takes_input_is_covered_here():
    from app import app  # noqa: F401  (registers the routes)
    from chalicelib.api.routing import ROUTES

    with_body = {(r.method, r.path) for r in ROUTES if r.body is not None}
    with_query = {(r.method, r.path) for r in ROUTES if r.query is not None}
    assert with_body == BODY_ROUTES.keys()
    assert with_query == QUERY_ROUTES


BODY_ROUTE_IDS = [pytest.param(k, id=f"{k[0]} {k[1]}") for k in BODY_ROUTES]


@pytest.mark.parametrize("route", BODY_ROUTE_IDS)
def test_valid_body_is_accepted(api, ctx, route):  # noqa: ANN001
    # The baseline every malformed variant below is built from: sent as is, it succeeds.
    case = BODY_ROUTES[route](ctx)
    status, body = api.call(case.method, case.path, case.valid, case.token)
    assert status == case.ok_status, body


def _deep_array(levels: int) -> str:
    return "[" * levels + "]" * levels


def _with_raw_field(valid: dict[str, Any], name: str, raw_json: str) -> str:
    return json.dumps(valid, ensure_ascii=False)[:-1] + f', "{name}": {raw_json}}}'


MALFORMED_BODIES: list[Any] = [
    # (id, make raw body from the valid one, content type, expected status, expected code or None)
    ("form encoded", lambda v: "phone=13800138000&channel=store", "application/json", 400, "invalid_json"),
    ("truncated JSON", lambda v: json.dumps(v)[:-5], "application/json", 400, "invalid_json"),
    ("empty body", lambda v: "", "application/json", 400, "invalid_json"),
    ("invalid UTF-8", lambda v: json.dumps(v).encode()[:-1] + b', "x": "\xff\xfe"}', "application/json", 400,
     "invalid_json"),
    ("NaN", lambda v: json.dumps({**v, "probe": float("nan")}), "application/json", 400, "invalid_json"),
    ("Infinity", lambda v: json.dumps({**v, "probe": float("inf")}), "application/json", 400, "invalid_json"),
    ("-Infinity", lambda v: json.dumps({**v, "probe": float("-inf")}), "application/json", 400, "invalid_json"),
    ("valid JSON as text/plain", lambda v: json.dumps(v), "text/plain", 415, "unsupported_media_type"),
    ("valid JSON as form content type", lambda v: json.dumps(v), "application/x-www-form-urlencoded", 415,
     "unsupported_media_type"),
    ("valid JSON with empty content type", lambda v: json.dumps(v), "", 415, "unsupported_media_type"),
    ("over 64 KB", lambda v: json.dumps({**v, "pad": "x" * (LIMIT + 10)}), "application/json", 413,
     "payload_too_large"),
    # 10,000 levels: must be refused cleanly (400 or 422), never a 500 from a RecursionError
    ("10,000 nested arrays", lambda v: _deep_array(10_000), "application/json", (400, 422), None),
    ("10,000 nested objects in a field", lambda v: _with_raw_field(v, "deep", '{"a":' * 10_000 + "1" + "}" * 10_000),
     "application/json", (400, 422), None),
]


@pytest.mark.parametrize("route", BODY_ROUTE_IDS)
@pytest.mark.parametrize(("make_raw", "content_type", "want_status", "want_code"),
                         [pytest.param(*m[1:], id=m[0]) for m in MALFORMED_BODIES])
def test_unreadable_body_is_rejected_and_changes_nothing(api, ctx, nothing_written, route, make_raw,  # noqa: ANN001
                                                         content_type, want_status, want_code):
    case = BODY_ROUTES[route](ctx)
    raw = make_raw(case.valid)
    with nothing_written():
        status, body = api.call(case.method, case.path, raw, case.token, headers={"Content-Type": content_type})
    if isinstance(want_status, tuple):
        assert status in want_status, (status, body)
        assert_error(status, body, status)
    else:
        assert_error(status, body, want_status, want_code)
    case.unchanged()


def test_body_limit_is_64_kb_exactly(api, ctx):  # noqa: ANN001
    # Exactly at the limit the body is read (and then judged: the name is far too long -> 422); one byte
    # more is refused unread (413).
    base = registration()

    def sized(n: int) -> str:
        text = json.dumps({**base, "name": ""})
        return json.dumps({**base, "name": "x" * (n - len(text))})
    assert len(sized(LIMIT)) == LIMIT
    status, body = api.post("/members", sized(LIMIT), ctx.hq)
    assert_error(status, body, 422, "validation_error", ["body", "name"])
    status, body = api.post("/members", sized(LIMIT + 1), ctx.hq)
    assert_error(status, body, 413, "payload_too_large")


# ---- PATCH /members/{id} ---------------------------------------------------------------------------------
@pytest.mark.parametrize("who", ["member", "hq"])
@pytest.mark.parametrize(("field", "value"), MASS_ASSIGNMENT + [
    pytest.param("channels", ["store", "mall"], id="channels"),
    pytest.param("home_store_id", "gz-001", id="home_store_id"),
    pytest.param("registered_at", "2000-01-01T00:00:00+08:00", id="registered_at"),
])
def test_patch_rejects_unknown_fields(api, ctx, tokens, nothing_written, who, field, value):  # noqa: ANN001
    # A member must not be able to give themselves points or a tier; nor may HQ write them via PATCH.
    m = ctx.member(name="原名")
    before = ctx.view(m["member_id"])
    token = tokens.member(m["member_id"]) if who == "member" else ctx.hq
    with nothing_written():
        status, body = api.patch(f"/members/{m['member_id']}", {"name": "改名", field: value}, token)
    assert_error(status, body, 422, "validation_error", ["body", field])
    assert ctx.view(m["member_id"]) == before


@pytest.mark.parametrize("phone", invalid_phones())
def test_patch_rejects_invalid_phone_without_echoing_it(api, ctx, nothing_written, phone):  # noqa: ANN001
    m = ctx.member()
    before = ctx.view(m["member_id"])
    with nothing_written():
        status, body = api.patch(f"/members/{m['member_id']}", {"phone": phone}, ctx.hq)
    assert_error(status, body, 422, "validation_error", ["body", "phone"])
    assert_phone_not_echoed(body, phone)
    assert ctx.view(m["member_id"]) == before


PATCH_INVALID = [
    pytest.param({"name": 123}, ["body", "name"], id="name number"),
    pytest.param({"birthday": "not-a-date"}, ["body", "birthday"], id="birthday word"),
    pytest.param({"gender": "robot"}, ["body", "gender"], id="gender unknown"),
    pytest.param({"consent": True}, ["body", "consent"], id="consent bool"),
    pytest.param({"consent": {"marketing": "maybe"}}, ["body", "consent", "marketing"], id="consent.marketing string"),
    pytest.param({"consent": {"marketing": True, "sms": True}}, ["body", "consent", "sms"], id="consent extra key"),
    *[pytest.param({"name": p.values[0]}, ["body", "name"], id=f"name {p.id}", marks=p.marks)
      for p in BLANK_NAMES + CONTROL_NAMES + BROKEN_NAMES + LONG_NAMES],
    *[pytest.param({"birthday": p.values[0]}, ["body", "birthday"], id=f"birthday {p.id}") for p in bad_birthdays()],
    # a present null clears a field, but consent and phone cannot be cleared
    pytest.param({"consent": None}, ["body", "consent"], id="consent null"),
    pytest.param({"phone": None}, ["body", "phone"], id="phone null"),
]


@pytest.mark.parametrize(("patch", "loc"), PATCH_INVALID)
def test_patch_rejects_invalid_value_and_changes_nothing(api, ctx, nothing_written, patch, loc):  # noqa: ANN001
    m = ctx.member(name="原名", birthday="1990-01-01", gender="female")
    before = ctx.view(m["member_id"])
    with nothing_written():
        status, body = api.patch(f"/members/{m['member_id']}", patch, ctx.hq)
    assert_error(status, body, 422, None, loc)
    assert ctx.view(m["member_id"]) == before


# ---- malformed ids in paths: 404, whatever the route ----------------------------------------------------
MEMBER_ID_ROUTES = [
    pytest.param("GET", "/members/{}", None, id="GET member"),
    pytest.param("PATCH", "/members/{}", {"name": "改名"}, id="PATCH member"),
    pytest.param("POST", "/members/{}/merge", {"source_member_id": UNKNOWN_SOURCE}, id="POST merge"),
    pytest.param("GET", "/members/{}/export", None, id="GET export"),
    pytest.param("DELETE", "/members/{}", None, id="DELETE member"),
]

MALFORMED_MEMBER_IDS = [
    pytest.param("abc", id="short word"),
    pytest.param("me", id="me"),
    pytest.param(UNKNOWN_MEMBER.lower(), id="lowercase ulid"),
    pytest.param(UNKNOWN_MEMBER[:-1], id="25 chars"),
    pytest.param(UNKNOWN_MEMBER + "0", id="27 chars"),
    pytest.param("U" + UNKNOWN_MEMBER[1:], id="letter U not in crockford"),
    pytest.param("..%2F..%2Fstores", id="encoded traversal"),
    pytest.param("%00" + UNKNOWN_MEMBER[3:], id="encoded NUL"),
]


@pytest.mark.parametrize(("method", "template", "body_in"), MEMBER_ID_ROUTES)
@pytest.mark.parametrize("member_id", MALFORMED_MEMBER_IDS + [pytest.param(UNKNOWN_MEMBER, id="well-formed unknown")])
def test_malformed_or_unknown_member_id_in_path_is_404(api, ctx, nothing_written, method, template,  # noqa: ANN001
                                                       body_in, member_id):
    with nothing_written():
        status, body = api.call(method, template.format(member_id), body_in, ctx.hq)
    assert_error(status, body, 404, "member_not_found")


@pytest.mark.parametrize(("method", "body_in"), [
    pytest.param("GET", None, id="GET store"),
    pytest.param("PUT", {"name": "x", "region_id": "east", "city": "上海", "store_type": "standard"}, id="PUT store"),
])
@pytest.mark.parametrize("store_id", [pytest.param("x" * 41, id="41 chars"), pytest.param("sh.001", id="dot"),
                                      pytest.param("sh%20001", id="encoded space"),
                                      pytest.param("%E5%BA%97", id="encoded CJK")])
def test_malformed_store_id_in_path_is_404(api, ctx, nothing_written, method, body_in, store_id):  # noqa: ANN001
    with nothing_written():
        status, body = api.call(method, f"/stores/{store_id}", body_in, ctx.hq)
    assert_error(status, body, 404, "store_not_found")


def _api_gateway(method: str, resource: str, path_params: dict[str, str], token: str,
                 body: Any = None) -> tuple[int, Any]:
    """Invoke the app with the event API Gateway sends: path parameters arrive URL-DECODED (the chalice test
    client passes them through still encoded, so it cannot show what `%0A` becomes in production)."""
    from chalice.local import LambdaContext

    from app import app

    event = {
        "requestContext": {"httpMethod": method, "resourcePath": resource, "identity": {"sourceIp": "127.0.0.1"},
                           "path": resource},
        "headers": {"authorization": f"Bearer {token}", "content-type": "application/json"},
        "pathParameters": path_params, "stageVariables": {}, "multiValueQueryStringParameters": None,
        "body": None if body is None else json.dumps(body),
    }
    response = app(event, LambdaContext("api_handler", 256))
    return response["statusCode"], json.loads(response["body"])


def test_api_gateway_shaped_call_works_for_a_valid_store_id(ctx):  # noqa: ANN001
    # The control for the test below: the hand-built event reaches the route like a real request.
    assert _api_gateway("GET", "/stores/{store_id}", {"store_id": "sh-001"}, ctx.hq) == \
        ctx.api.get("/stores/sh-001", ctx.hq)


# Regression: a '$'-anchored re.match admitted 'x\\n', and the store model stripped it to 'x' (overwrite).
def test_store_id_with_trailing_newline_is_404_and_does_not_touch_the_store(ctx, nothing_written):  # noqa: ANN001
    store = ctx.store()
    with nothing_written():
        status, body = _api_gateway("PUT", "/stores/{store_id}", {"store_id": store["store_id"] + "\n"}, ctx.hq,
                                    {"name": "被改了", "region_id": "south", "city": "广州", "store_type": "kiosk"})
    assert_error(status, body, 404, "store_not_found")
    assert ctx.api.get(f"/stores/{store['store_id']}", ctx.hq) == (200, store)


@pytest.mark.parametrize(("method", "template"), [("GET", "/members/{member_id}"), ("DELETE", "/members/{member_id}")])
def test_member_id_with_trailing_newline_is_404(ctx, nothing_written, method, template):  # noqa: ANN001
    m = ctx.member()
    with nothing_written():
        status, body = _api_gateway(method, template, {"member_id": m["member_id"] + "\n"}, ctx.hq)
    assert_error(status, body, 404, "member_not_found")
    assert ctx.view(m["member_id"])["status"] == "active"


# ---- GET /members?phone= ---------------------------------------------------------------------------------
@pytest.mark.parametrize("phone", invalid_phones())
def test_lookup_rejects_invalid_phone_without_echoing_it(api, ctx, phone):  # noqa: ANN001
    from urllib.parse import quote

    status, body = api.get(f"/members?phone={quote(phone)}", ctx.staff)
    assert_error(status, body, 422, "validation_error", ["query", "phone"])
    assert_phone_not_echoed(body, phone)


def test_lookup_requires_phone(api, ctx):  # noqa: ANN001
    status, body = api.get("/members", ctx.staff)
    assert_error(status, body, 422, "validation_error", ["query", "phone"])


# ---- GET /stores?cursor=&limit= --------------------------------------------------------------------------
def _b64(obj: Any) -> str:
    import base64

    return base64.urlsafe_b64encode(json.dumps(obj).encode()).decode().rstrip("=")


def _real_cursor(api: Any, token: str) -> dict[str, Any]:
    import base64

    status, page = api.get("/stores?limit=1", token)
    assert status == 200 and page["next_cursor"], page
    raw = page["next_cursor"]
    return json.loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))


def test_real_cursor_pages_through_stores(api, ctx):  # noqa: ANN001
    # Control for the invalid cursors below: a cursor the API issued works.
    first = api.get("/stores?limit=1", ctx.hq)[1]
    status, second = api.get(f"/stores?limit=1&cursor={first['next_cursor']}", ctx.hq)
    assert status == 200 and len(second["items"]) == 1
    assert second["items"][0]["store_id"] != first["items"][0]["store_id"]


@pytest.mark.parametrize("make_cursor", [
    pytest.param(lambda real: "abc!!", id="not base64"),
    pytest.param(lambda real: "bm90IGpzb24", id="base64 of non-JSON"),
    pytest.param(lambda real: _b64(["ORG", "STORE#sh-001"]), id="JSON list"),
    pytest.param(lambda real: _b64({**real, "pk": "MEMBER#" + UNKNOWN_MEMBER}), id="other partition"),
    pytest.param(lambda real: _b64({k: 5 for k in real}), id="non-string key values"),
    pytest.param(lambda real: _b64({**real, **{f"k{i}": "v" for i in range(10)}}), id="too many keys"),
])
def test_invalid_cursor_is_422_invalid_cursor(api, ctx, make_cursor):  # noqa: ANN001
    cursor = make_cursor(_real_cursor(api, ctx.hq))
    status, body = api.get(f"/stores?cursor={cursor}", ctx.hq)
    assert_error(status, body, 422, "invalid_cursor", ["query", "cursor"])


def test_oversized_cursor_is_422(api, ctx):  # noqa: ANN001
    status, body = api.get(f"/stores?cursor={'A' * 3000}", ctx.hq)
    assert_error(status, body, 422, None, ["query", "cursor"])


@pytest.mark.parametrize("limit", ["0", "1000", "101", "-1", "abc", "1.5"])
def test_invalid_limit_is_422(api, ctx, limit):  # noqa: ANN001
    status, body = api.get(f"/stores?limit={limit}", ctx.hq)
    assert_error(status, body, 422, "validation_error", ["query", "limit"])


@pytest.mark.parametrize(("limit", "count"), [("1", 1), ("100", len(STORES))])
def test_limits_at_the_bounds_are_accepted(api, ctx, limit, count):  # noqa: ANN001
    status, body = api.get(f"/stores?limit={limit}", ctx.hq)
    assert status == 200 and len(body["items"]) >= count


# ---- PUT /stores/{id} ------------------------------------------------------------------------------------
STORE_BODY = {"name": "改过的店", "region_id": "south", "city": "广州", "store_type": "kiosk"}


@pytest.mark.parametrize(("change", "loc"), [
    pytest.param({"manager_phone": "13800138000"}, ["body", "manager_phone"], id="unknown field"),
    pytest.param({"store_id": "other"}, ["body", "store_id"], id="store_id in body"),
    pytest.param({"store_type": "mega"}, ["body", "store_type"], id="unknown store_type"),
    pytest.param({"name": "   "}, ["body", "name"], id="blank name"),
    pytest.param({"name": ""}, ["body", "name"], id="empty name"),
    pytest.param({"name": "店" * 81}, ["body", "name"], id="81 char name"),
    pytest.param({"name": 5}, ["body", "name"], id="name number"),
    pytest.param({"region_id": "east side"}, ["body", "region_id"], id="region_id with space"),
    pytest.param({"opened_on": "2024-13-01"}, ["body", "opened_on"], id="impossible opened_on"),
    pytest.param({"business_hours": {"funday": {"open": "09:00", "close": "18:00"}}}, ["body", "business_hours"],
                 id="unknown weekday"),
    pytest.param({"business_hours": {"mon": {"open": "25:00", "close": "18:00"}}}, ["body", "business_hours"],
                 id="hour 25"),
    pytest.param({"business_hours": "9-18"}, ["body", "business_hours"], id="hours as string"),
    *[pytest.param({field: None}, ["body", field], id=f"{field} null")
      for field in ("name", "region_id", "city", "store_type")],
])
def test_put_store_rejects_invalid_body_and_keeps_the_store(api, ctx, nothing_written, change, loc):  # noqa: ANN001
    store = ctx.store()
    with nothing_written():
        status, body = api.put(f"/stores/{store['store_id']}", {**STORE_BODY, **change}, ctx.hq)
    assert_error(status, body, 422, "validation_error", loc)
    assert api.get(f"/stores/{store['store_id']}", ctx.hq) == (200, store)


@pytest.mark.parametrize("field", ["name", "region_id", "city", "store_type"])
def test_put_store_requires_field(api, ctx, nothing_written, field):  # noqa: ANN001
    store_id = f"bi-new-{uuid.uuid4().hex[:8]}"
    body_in = {k: v for k, v in STORE_BODY.items() if k != field}
    with nothing_written():
        status, body = api.put(f"/stores/{store_id}", body_in, ctx.hq)
    assert_error(status, body, 422, "validation_error", ["body", field])
    assert api.get(f"/stores/{store_id}", ctx.hq)[0] == 404


# ---- POST /members/{id}/merge ----------------------------------------------------------------------------
@pytest.mark.parametrize(("make_body", "status_code", "code", "loc"), [
    pytest.param(lambda t, s: {"source_member_id": "abc"}, 422, "validation_error", ["body", "source_member_id"],
                 id="malformed source"),
    pytest.param(lambda t, s: {"source_member_id": s.lower()}, 422, "validation_error", ["body", "source_member_id"],
                 id="lowercase source"),
    pytest.param(lambda t, s: {"source_member_id": [s]}, 422, "validation_error", ["body", "source_member_id"],
                 id="source as list"),
    pytest.param(lambda t, s: {}, 422, "validation_error", ["body", "source_member_id"], id="missing source"),
    pytest.param(lambda t, s: {"source_member_id": s, "force": True}, 422, "validation_error", ["body", "force"],
                 id="unknown field"),
    pytest.param(lambda t, s: {"source_member_id": t}, 422, "invalid_merge", ["body", "source_member_id"],
                 id="merge into itself"),
    pytest.param(lambda t, s: {"source_member_id": UNKNOWN_MEMBER}, 404, "member_not_found", None,
                 id="unknown source"),
])
def test_merge_rejects_bad_input_and_merges_nothing(api, ctx, nothing_written, make_body, status_code,  # noqa: ANN001
                                                    code, loc):
    target, source = ctx.member(), ctx.member()
    before = (ctx.view(target["member_id"]), ctx.view(source["member_id"]))
    with nothing_written():
        status, body = api.post(f"/members/{target['member_id']}/merge",
                                make_body(target["member_id"], source["member_id"]), ctx.hq)
    assert_error(status, body, status_code, code, loc)
    assert (ctx.view(target["member_id"]), ctx.view(source["member_id"])) == before


# ---- POST /auth/wechat -----------------------------------------------------------------------------------
@pytest.mark.parametrize(("make_body", "loc"), [
    pytest.param(lambda code: {}, ["body", "code"], id="missing code"),
    pytest.param(lambda code: {"code": ""}, ["body", "code"], id="empty code"),
    pytest.param(lambda code: {"code": "c" * 129}, ["body", "code"], id="129 char code"),
    pytest.param(lambda code: {"code": 123}, ["body", "code"], id="code number"),
    pytest.param(lambda code: {"code": code, "openid": "o-victim"}, ["body", "openid"], id="openid injected"),
    pytest.param(lambda code: {"code": code, "member_id": UNKNOWN_MEMBER}, ["body", "member_id"],
                 id="member_id injected"),
])
def test_wechat_login_rejects_bad_body_without_calling_wechat(api, nothing_written, make_body, loc):  # noqa: ANN001
    code = f"bi-{uuid.uuid4().hex}"
    with nothing_written():
        status, body = api.post("/auth/wechat", make_body(code))
    assert_error(status, body, 422, "validation_error", loc)
    # WeChat codes are single-use: the code still works, so the rejected request never spent it
    assert api.post("/auth/wechat", {"code": code})[0] == 200


def test_wechat_login_with_a_code_wechat_rejects_is_422(api, nothing_written):  # noqa: ANN001
    with nothing_written():
        status, body = api.post("/auth/wechat", {"code": f"bad-{uuid.uuid4().hex}"})
    assert_error(status, body, 422, "invalid_wechat_code", ["body", "code"])


# ---- POST /members/me/phone ------------------------------------------------------------------------------
@pytest.mark.parametrize(("make_body", "loc"), [
    pytest.param(lambda code, phone: {"code": code, "phone": phone}, ["body", "phone"], id="phone injected"),
    pytest.param(lambda code, phone: {"code": code, "member_id": UNKNOWN_MEMBER}, ["body", "member_id"],
                 id="member_id injected"),
    pytest.param(lambda code, phone: {}, ["body", "code"], id="missing code"),
    pytest.param(lambda code, phone: {"code": ""}, ["body", "code"], id="empty code"),
    pytest.param(lambda code, phone: {"code": code, "store_id": "sh 001"}, ["body", "store_id"], id="bad store_id"),
    pytest.param(lambda code, phone: {"code": code, "consent": "yes"}, ["body", "consent"], id="consent string"),
    pytest.param(lambda code, phone: {"code": code, "consent": {"marketing": "maybe"}},
                 ["body", "consent", "marketing"], id="consent.marketing string"),
])
def test_bind_phone_rejects_bad_body_and_registers_nothing(api, ctx, nothing_written, make_body, loc):  # noqa: ANN001
    session = ctx.wechat_session()
    phone = unique_phone()
    with nothing_written():
        status, body = api.post("/members/me/phone", make_body(f"phone-{phone}", unique_phone()), session)
    assert_error(status, body, 422, "validation_error", loc)
    assert_phone_not_echoed(body, phone)
    ctx.phone_is_free(phone)
    # the one-time phone code was not spent: the same request, well-formed, now binds the phone
    status, bound = api.post("/members/me/phone", {"code": f"phone-{phone}"}, session)
    assert status == 200 and bound["member"]["phone"] == phone


def test_bind_phone_with_unknown_store_registers_nothing(api, ctx, nothing_written):  # noqa: ANN001
    session, phone = ctx.wechat_session(), unique_phone()
    with nothing_written():
        status, body = api.post("/members/me/phone", {"code": f"phone-{phone}", "store_id": "nope-404"}, session)
    assert_error(status, body, 422, "unknown_store", ["body", "store_id"])
    ctx.phone_is_free(phone)


def test_bind_phone_with_foreign_number_is_422_and_not_echoed(api, ctx, nothing_written):  # noqa: ANN001
    session, digits = ctx.wechat_session(), unique_phone()[1:]
    with nothing_written():
        status, body = api.post("/members/me/phone", {"code": f"phone-intl-{digits}"}, session)
    assert_error(status, body, 422, "unsupported_phone_region")
    assert_phone_not_echoed(body, digits)


# ---- edge cases that must be ACCEPTED --------------------------------------------------------------------
def test_fullwidth_and_formatted_phones_find_the_same_member(api, ctx):  # noqa: ANN001
    phone = unique_phone()
    status, first = api.post("/members", registration(phone), ctx.staff)
    assert status == 201
    spellings = [fullwidth(phone), f"+86 {phone[:3]}-{phone[3:7]}-{phone[7:]}", f"＋８６ {fullwidth(phone)}",
                 f"0086{phone}", f"({phone[:3]}) {phone[3:7]} {phone[7:]}"]
    for spelling in spellings:
        # registering again under another spelling is the SAME person: 200 with the existing member
        status, again = api.post("/members", registration(spelling), ctx.staff)
        assert (status, again["member_id"]) == (200, first["member_id"]), spelling
        from urllib.parse import quote

        status, found = api.get(f"/members?phone={quote(spelling)}", ctx.staff)
        assert [m["member_id"] for m in found["items"]] == [first["member_id"]], spelling
    assert ctx.view(first["member_id"])["phone"] == phone  # stored normalised


def test_emoji_name_is_stored_and_returned_intact(api, ctx, tokens):  # noqa: ANN001
    name = "小明😀👩‍👩‍👧‍👦🇨🇳"  # astral-plane emoji, a ZWJ family sequence and a flag
    status, created = api.post("/members", registration(name=name), ctx.staff)
    assert (status, created["name"]) == (201, name)
    assert ctx.view(created["member_id"])["name"] == name
    renamed = "🐼熊猫🎋"
    status, patched = api.patch(f"/members/{created['member_id']}", {"name": renamed},
                                tokens.member(created["member_id"]))
    assert (status, patched["name"]) == (200, renamed)
    assert ctx.view(created["member_id"])["name"] == renamed
