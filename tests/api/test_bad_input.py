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
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from testkit.ledger import order as order_body
from testkit.ledger import plain_day
from testkit.support import STORES, HqCalls, registration, unique_phone

ERROR_KEYS = {"code", "message", "details"}
LIMIT = 64 * 1024  # the documented request-body limit
UNKNOWN_MEMBER = "01ARZ3NDEKTSV4RRFFQ69G5FAV"  # a well-formed ULID nobody holds
UNKNOWN_SOURCE = "01ARZ3NDEKTSV4RRFFQ69G5FAW"  # another one (a merge's source must differ from its target)
UNKNOWN_ORDER = "o-nobody-ever-posted-this"  # a well-formed order id nobody used


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
class Ctx(HqCalls):
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

    def config(self, path: str) -> dict[str, Any]:
        status, body = self.api.get(path, self.hq)
        assert status == 200, body
        return body


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


@pytest.mark.parametrize("name", BLANK_NAMES + CONTROL_NAMES + LONG_NAMES)
def test_register_rejects_bad_name(api, ctx, nothing_written, name):  # noqa: ANN001
    phone = unique_phone()
    with nothing_written():
        status, body = api.post("/members", registration(phone, name=name), ctx.hq)
    assert_error(status, body, 422, "validation_error", ["body", "name"])
    ctx.phone_is_free(phone)


@pytest.mark.parametrize("name", BROKEN_NAMES)
def test_body_that_is_not_unicode_text_is_unreadable(api, ctx, nothing_written, name):  # noqa: ANN001
    # The JSON grammar admits the escape, but the body is not Unicode text: answered like any unreadable body.
    phone = unique_phone()
    with nothing_written():
        status, body = api.post("/members", registration(phone, name=name), ctx.hq)
    assert_error(status, body, 400, "invalid_json")
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


def _case_post_order(c: Ctx, path: str = "/orders") -> BodyCase:
    m = c.member()
    body = order_body(m["member_id"], amount=10_000, lines=2)
    before = c.points(m["member_id"])

    def unchanged() -> None:
        assert c.order_view(body["order_id"])[0] == 404, "a rejected request posted the order"
        _same(c.points(m["member_id"]), before)

    return BodyCase("POST", path, c.staff, body, 201 if path == "/orders" else 200, unchanged)


def _case_preview_order(c: Ctx) -> BodyCase:
    return _case_post_order(c, "/orders/preview")


def _case_refund(c: Ctx) -> BodyCase:
    m = c.member()
    posted = c.order(m["member_id"])
    before = (c.order_view(posted["order_id"]), c.points(m["member_id"]))
    return BodyCase("POST", f"/orders/{posted['order_id']}/refunds", c.staff,
                    {"refund_id": "r-1", "amount": 4_000, "items": [{"sku": "sku-0", "qty": 1, "amount": 4_000}]}, 201,
                    lambda: _same((c.order_view(posted["order_id"]), c.points(m["member_id"])), before))


def _case_redeem(c: Ctx) -> BodyCase:
    m = c.funded_member()
    before = c.points(m["member_id"])
    return BodyCase("POST", f"/members/{m['member_id']}/points/redemptions", c.staff,
                    {"redemption_id": "red-1", "points": 30, "reason": "兑换饮品", "store_id": "sh-001"}, 201,
                    lambda: _same(c.points(m["member_id"]), before))


def _case_adjust(c: Ctx) -> BodyCase:
    m = c.member()
    before = c.points(m["member_id"])
    return BodyCase("POST", f"/members/{m['member_id']}/points/adjustments", c.hq,
                    {"adjustment_id": "adj-1", "points": 25, "reason": "补偿"}, 201,
                    lambda: _same(c.points(m["member_id"]), before))


def _case_put_config(c: Ctx, path: str) -> BodyCase:
    current = c.config(path)  # sent back unchanged it is valid (and changes nothing for the other tests)
    return BodyCase("PUT", path, c.hq, current, 200, lambda: _same(c.config(path), current))


def _same(actual: Any, expected: Any) -> None:
    assert actual == expected, "a rejected request changed the data"


BODY_ROUTES: dict[tuple[str, str], Callable[[Ctx], BodyCase]] = {
    ("POST", "/members"): _case_register,
    ("PATCH", "/members/{member_id}"): _case_patch,
    ("POST", "/members/{member_id}/merge"): _case_merge,
    ("PUT", "/stores/{store_id}"): _case_put_store,
    ("POST", "/auth/wechat"): _case_wechat_login,
    ("POST", "/members/me/phone"): _case_bind_phone,
    ("POST", "/orders"): _case_post_order,
    ("POST", "/orders/preview"): _case_preview_order,
    ("POST", "/orders/{order_id}/refunds"): _case_refund,
    ("POST", "/members/{member_id}/points/redemptions"): _case_redeem,
    ("POST", "/members/{member_id}/points/adjustments"): _case_adjust,
    ("PUT", "/tiers"): lambda c: _case_put_config(c, "/tiers"),
    ("PUT", "/points/rules"): lambda c: _case_put_config(c, "/points/rules"),
}
# covered by their own tests below
QUERY_ROUTES = {("GET", "/members"), ("GET", "/stores"), ("GET", "/members/{member_id}/orders"),
                ("GET", "/members/{member_id}/points")}


def test_every_route_that_takes_input_is_covered_here():
    from chalicelib.api import load_all

    ROUTES = load_all()  # noqa: N806
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
      for p in BLANK_NAMES + CONTROL_NAMES + LONG_NAMES],
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
    pytest.param("GET", "/members/{}", None, "hq", id="GET member"),
    pytest.param("PATCH", "/members/{}", {"name": "改名"}, "hq", id="PATCH member"),
    pytest.param("POST", "/members/{}/merge", {"source_member_id": UNKNOWN_SOURCE}, "hq", id="POST merge"),
    pytest.param("GET", "/members/{}/export", None, "hq", id="GET export"),
    pytest.param("DELETE", "/members/{}", None, "hq", id="DELETE member"),
    pytest.param("GET", "/members/{}/orders", None, "hq", id="GET orders"),
    pytest.param("GET", "/members/{}/points", None, "hq", id="GET points"),
    pytest.param("GET", "/members/{}/tier", None, "hq", id="GET tier"),
    # HQ may not spend points: the counter (with its store) is the caller that reaches the member lookup
    pytest.param("POST", "/members/{}/points/redemptions",
                 {"redemption_id": "red-1", "points": 1, "reason": "兑换", "store_id": "sh-001"}, "staff",
                 id="POST redemption"),
    pytest.param("POST", "/members/{}/points/redemptions/red-1/cancel", None, "hq", id="POST cancel"),
    pytest.param("POST", "/members/{}/points/adjustments", {"adjustment_id": "adj-1", "points": 5, "reason": "补偿"},
                 "hq", id="POST adjustment"),
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


@pytest.mark.parametrize(("method", "template", "body_in", "who"), MEMBER_ID_ROUTES)
@pytest.mark.parametrize("member_id", MALFORMED_MEMBER_IDS + [pytest.param(UNKNOWN_MEMBER, id="well-formed unknown")])
def test_malformed_or_unknown_member_id_in_path_is_404(api, ctx, nothing_written, method, template,  # noqa: ANN001
                                                       body_in, who, member_id):
    with nothing_written():
        status, body = api.call(method, template.format(member_id), body_in, getattr(ctx, who))
    assert_error(status, body, 404, "member_not_found")


ORDER_ID_ROUTES = [
    pytest.param("GET", "/orders/{}", None, id="GET order"),
    pytest.param("POST", "/orders/{}/refunds", {"refund_id": "r-1", "amount": 1}, id="POST refund"),
]


@pytest.mark.parametrize(("method", "template", "body_in"), ORDER_ID_ROUTES)
@pytest.mark.parametrize("order_id", [pytest.param("o" * 65, id="65 chars"), pytest.param("o%201", id="encoded space"),
                                      pytest.param("%E5%8D%95", id="encoded CJK"),
                                      pytest.param("o%2F1", id="encoded slash"),
                                      pytest.param(UNKNOWN_ORDER, id="well-formed unknown")])
def test_malformed_or_unknown_order_id_in_path_is_404(api, ctx, nothing_written, method, template,  # noqa: ANN001
                                                      body_in, order_id):
    with nothing_written():
        status, body = api.call(method, template.format(order_id), body_in, ctx.hq)
    assert_error(status, body, 404, "order_not_found")


@pytest.mark.parametrize("redemption_id", [pytest.param("r" * 65, id="65 chars"),
                                           pytest.param("r%201", id="encoded space"),
                                           pytest.param("nobody-redeemed-this", id="well-formed unknown"),
                                           pytest.param(None, id="another member's redemption")])
def test_malformed_or_unknown_redemption_id_is_404(api, ctx, tokens, nothing_written, redemption_id):  # noqa: ANN001
    m, other = ctx.funded_member(), ctx.funded_member()
    status, red = api.post(f"/members/{other['member_id']}/points/redemptions",
                           {"redemption_id": "theirs", "points": 10, "reason": "兑换"},
                           tokens.member(other["member_id"]))
    assert status == 201, red
    before = (ctx.points(m["member_id"]), ctx.points(other["member_id"]))
    with nothing_written():
        status, body = api.post(f"/members/{m['member_id']}/points/redemptions/{redemption_id or 'theirs'}/cancel",
                                None, ctx.hq)
    assert_error(status, body, 404, "redemption_not_found")
    assert (ctx.points(m["member_id"]), ctx.points(other["member_id"])) == before


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


def test_order_id_with_trailing_newline_is_404_and_refunds_nothing(ctx, nothing_written):  # noqa: ANN001
    m = ctx.member()
    posted = ctx.order(m["member_id"])
    before = (ctx.order_view(posted["order_id"]), ctx.points(m["member_id"]))
    with nothing_written():
        got = _api_gateway("GET", "/orders/{order_id}", {"order_id": posted["order_id"] + "\n"}, ctx.hq)
        assert_error(*got, 404, "order_not_found")
        status, body = _api_gateway("POST", "/orders/{order_id}/refunds", {"order_id": posted["order_id"] + "\n"},
                                    ctx.hq, {"refund_id": "r-nl", "amount": 10_000})
    assert_error(status, body, 404, "order_not_found")
    assert (ctx.order_view(posted["order_id"]), ctx.points(m["member_id"])) == before


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


# ---- POST /orders and POST /orders/preview -----------------------------------------------------------------
ORDER_PATHS = [pytest.param("/orders", id="post"), pytest.param("/orders/preview", id="preview")]


def _ago(**delta: float) -> str:
    from chalicelib.domain import clock

    return (clock.now() - timedelta(**delta)).isoformat()


def _lines(*amounts: Any, **line: Any) -> list[dict[str, Any]]:
    return [{"sku": f"sku-{i}", "name": "奶茶", "category": "tea", "qty": 1, "amount": a, **line}
            for i, a in enumerate(amounts)]


def _with_lines(body: dict[str, Any], *amounts: Any, **line: Any) -> dict[str, Any]:
    """The order with these line amounts and an amount that is their sum (so only the lines are wrong)."""
    return {**body, "items": _lines(*amounts, **line), "amount": sum(a for a in amounts if isinstance(a, int))}


def _without(body: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in body.items() if k != key}


ORDER_INVALID = [
    pytest.param(lambda b: {**b, "amount": b["amount"] - 1}, ["body"], id="amount below the sum of items"),
    pytest.param(lambda b: {**b, "amount": b["amount"] + 1}, ["body"], id="amount above the sum of items"),
    pytest.param(lambda b: {**b, "phone": unique_phone()}, ["body"], id="both member_id and phone"),
    pytest.param(lambda b: _without(b, "member_id"), ["body"], id="neither member_id nor phone"),
    pytest.param(lambda b: {**b, "member_id": None}, ["body"], id="member_id null and no phone"),
    pytest.param(lambda b: {**_with_lines(b, -100), "amount": -100}, ["body", "amount"], id="negative amount"),
    pytest.param(lambda b: _with_lines(b, -100, 10_100), ["body", "items", 0, "amount"], id="negative line amount"),
    pytest.param(lambda b: {**b, "amount": 10_000.0}, ["body", "amount"], id="float amount"),
    pytest.param(lambda b: {**b, "amount": 10_000.5}, ["body", "amount"], id="fractional amount"),
    pytest.param(lambda b: {**b, "amount": "10000"}, ["body", "amount"], id="amount as string"),
    pytest.param(lambda b: {**_with_lines(b, 1), "amount": True}, ["body", "amount"], id="amount true"),
    pytest.param(lambda b: {**b, "items": _lines(5_000, 5_000.0), "amount": 10_000}, ["body", "items", 1, "amount"],
                 id="float line amount"),
    pytest.param(lambda b: _with_lines(b, 5_000, 5_000, qty=0), ["body", "items", 0, "qty"], id="qty 0"),
    pytest.param(lambda b: _with_lines(b, 5_000, 5_000, qty=-1), ["body", "items", 0, "qty"], id="negative qty"),
    pytest.param(lambda b: _with_lines(b, 5_000, 5_000, qty=1.0), ["body", "items", 0, "qty"], id="float qty"),
    pytest.param(lambda b: {**b, "items": [], "amount": 0}, ["body", "items"], id="empty items"),
    pytest.param(lambda b: _with_lines(b, *[50] * 201), ["body", "items"], id="201 items"),
    pytest.param(lambda b: {**b, "items": [{**b["items"][0], "amount": 10_000, "discount": 5}], "amount": 10_000},
                 ["body", "items", 0, "discount"], id="unknown line field"),
    pytest.param(lambda b: {**b, "items": [_without(b["items"][0], "sku"), b["items"][1]]},
                 ["body", "items", 0, "sku"], id="line without sku"),
    pytest.param(lambda b: {**b, "paid_at": b["paid_at"][:19]}, ["body", "paid_at"], id="paid_at without offset"),
    pytest.param(lambda b: {**b, "paid_at": b["paid_at"][:10]}, ["body", "paid_at"], id="paid_at date only"),
    pytest.param(lambda b: {**b, "paid_at": "yesterday"}, ["body", "paid_at"], id="paid_at word"),
    pytest.param(lambda b: {**b, "paid_at": _ago(minutes=-11)}, ["body"], id="paid_at 11 minutes in the future"),
    pytest.param(lambda b: {**b, "paid_at": _ago(days=-1)}, ["body"], id="paid_at tomorrow"),
    pytest.param(lambda b: {**b, "paid_at": _ago(days=91)}, ["body"], id="paid_at 91 days ago"),
    pytest.param(lambda b: {**b, "paid_at": "2000-01-01T12:00:00+08:00"}, ["body"], id="paid_at in 2000"),
    pytest.param(lambda b: {**b, "points": 1_000_000}, ["body", "points"], id="unknown field points"),
    pytest.param(lambda b: {**b, "balance": 1_000_000}, ["body", "balance"], id="unknown field balance"),
    pytest.param(lambda b: {**b, "points_earned": 1_000_000}, ["body", "points_earned"],
                 id="unknown field points_earned"),
    pytest.param(lambda b: {**b, "tier": "diamond"}, ["body", "tier"], id="unknown field tier"),
    pytest.param(lambda b: {**b, "order_id": "o 1"}, ["body", "order_id"], id="order_id with a space"),
    pytest.param(lambda b: {**b, "order_id": "o" * 65}, ["body", "order_id"], id="order_id of 65 chars"),
    pytest.param(lambda b: {**b, "order_id": ""}, ["body", "order_id"], id="empty order_id"),
    pytest.param(lambda b: {**b, "order_id": "单号-1"}, ["body", "order_id"], id="order_id with CJK"),
    pytest.param(lambda b: {**b, "order_id": 12345}, ["body", "order_id"], id="order_id number"),
    pytest.param(lambda b: {**b, "member_id": "abc"}, ["body", "member_id"], id="malformed member_id"),
    pytest.param(lambda b: {**b, "store_id": "sh 001"}, ["body", "store_id"], id="malformed store_id"),
    pytest.param(lambda b: {**b, "channel": "pos"}, ["body", "channel"], id="unknown channel"),
    *[pytest.param(lambda b, f=f: _without(b, f), ["body", f], id=f"missing {f}")
      for f in ("order_id", "store_id", "channel", "paid_at", "amount", "items")],
]


@pytest.mark.parametrize("path", ORDER_PATHS)
@pytest.mark.parametrize(("edit", "loc"), ORDER_INVALID)
def test_order_rejects_invalid_body_and_writes_nothing(api, ctx, nothing_written, path, edit, loc):  # noqa: ANN001
    m = ctx.member()
    body = edit(order_body(m["member_id"], amount=10_000, lines=2))
    with nothing_written():
        status, err = api.post(path, body, ctx.staff)
    assert_error(status, err, 422, "validation_error", loc)
    assert ctx.api.get(f"/members/{m['member_id']}/orders", ctx.hq) == (200, {"items": [], "next_cursor": None})
    assert ctx.points(m["member_id"])["balance"] == 0


@pytest.mark.parametrize("path", ORDER_PATHS)
@pytest.mark.parametrize("phone", invalid_phones())
def test_order_rejects_invalid_phone_without_echoing_it(api, ctx, nothing_written, path, phone):  # noqa: ANN001
    body = order_body(phone=unique_phone(), amount=10_000)
    with nothing_written():
        status, err = api.post(path, {**body, "phone": phone}, ctx.staff)
    assert_error(status, err, 422, "validation_error", ["body", "phone"])
    assert_phone_not_echoed(err, phone)


@pytest.mark.parametrize("path", ORDER_PATHS)
@pytest.mark.parametrize("token_kind", ["hq", "staff"])
def test_order_at_unknown_store_is_unknown_store(api, ctx, nothing_written, path, token_kind):  # noqa: ANN001
    m = ctx.member()
    body = order_body(m["member_id"], store_id="nope-404")
    with nothing_written():
        status, err = api.post(path, body, getattr(ctx, token_kind))
    assert_error(status, err, 422, "unknown_store", ["body", "store_id"])
    assert ctx.order_view(body["order_id"])[0] == 404


@pytest.mark.parametrize("path", ORDER_PATHS)
def test_order_for_unknown_member_is_404(api, ctx, nothing_written, path):  # noqa: ANN001
    body = order_body(UNKNOWN_MEMBER)
    with nothing_written():
        status, err = api.post(path, body, ctx.staff)
    assert_error(status, err, 404, "member_not_found")
    assert ctx.order_view(body["order_id"])[0] == 404


@pytest.mark.parametrize("change", [
    pytest.param(lambda b, c: _with_lines(b, 2_500, 2_500), id="another amount"),
    pytest.param(lambda b, c: {**b, "member_id": c.member()["member_id"]}, id="another member"),
    pytest.param(lambda b, c: {**_without(b, "member_id"), "phone": unique_phone()}, id="a guest phone"),
    pytest.param(lambda b, c: {**b, "paid_at": plain_day(2)}, id="another paid_at"),
    pytest.param(lambda b, c: {**b, "store_id": "sh-002"}, id="another store"),
])
def test_order_id_reused_with_another_body_is_409_and_changes_nothing(api, ctx, nothing_written, change):  # noqa: ANN001
    m = ctx.member()
    first = ctx.order(m["member_id"])
    again = change(first, ctx)
    watched = [m["member_id"]] + ([again["member_id"]] if again.get("member_id") not in (None, m["member_id"]) else [])
    before = (ctx.order_view(first["order_id"]), [ctx.points(x) for x in watched])
    with nothing_written():
        status, err = api.post("/orders", again, ctx.hq)
    assert_error(status, err, 409, "order_id_reused")
    assert (ctx.order_view(first["order_id"]), [ctx.points(x) for x in watched]) == before


def test_order_replay_with_the_same_body_is_200_and_writes_nothing(api, ctx, nothing_written):  # noqa: ANN001
    # The control for the 409s above: the very same body again is a replay, not a conflict.
    m = ctx.member()
    body = order_body(m["member_id"], amount=10_000, lines=2)
    status, receipt = api.post("/orders", body, ctx.staff)
    assert status == 201, receipt
    with nothing_written():
        assert api.post("/orders", body, ctx.staff) == (200, receipt)
    assert ctx.points(m["member_id"])["balance"] == 100


@pytest.mark.parametrize("edit", [
    pytest.param(lambda b: _with_lines(b, *[50] * 200), id="200 items"),
    pytest.param(lambda b: {**b, "paid_at": _ago(days=89)}, id="paid_at 89 days ago"),
    pytest.param(lambda b: {**b, "paid_at": _ago(minutes=-5)}, id="paid_at 5 minutes ahead (clock skew)"),
    pytest.param(lambda b: {**b, "paid_at": (datetime.now(UTC) - timedelta(days=1)).isoformat()},
                 id="paid_at with a UTC offset"),
    pytest.param(lambda b: {**b, "order_id": f"POS-01:2024.1_{uuid.uuid4().hex[:8]}"},
                 id="order_id with all allowed punctuation"),
    pytest.param(lambda b: {**b, "order_id": "o" * 32 + uuid.uuid4().hex}, id="order_id of 64 chars"),
])
def test_order_at_the_bounds_is_accepted(api, ctx, edit):  # noqa: ANN001
    # The edges are accepted, so the rejections above are about the limits, not the app refusing everything.
    m = ctx.member()
    body = edit(order_body(m["member_id"], amount=10_000, lines=2))
    status, receipt = api.post("/orders", body, ctx.staff)
    assert status == 201, receipt
    assert ctx.order_view(body["order_id"])[0] == 200


# ---- POST /orders/{id}/refunds -----------------------------------------------------------------------------
REFUND_INVALID = [
    pytest.param({"amount": 0}, ["body", "amount"], id="amount 0"),
    pytest.param({"amount": -100}, ["body", "amount"], id="negative amount"),
    pytest.param({"amount": 100.0}, ["body", "amount"], id="float amount"),
    pytest.param({"amount": 100.5}, ["body", "amount"], id="fractional amount"),
    pytest.param({"amount": "100"}, ["body", "amount"], id="amount as string"),
    pytest.param({"amount": True}, ["body", "amount"], id="amount true"),
    pytest.param({"amount": 4_000, "items": [{"sku": "sku-0", "qty": 1, "amount": 3_000}]}, ["body"],
                 id="items sum below amount"),
    pytest.param({"amount": 4_000, "items": [{"sku": "sku-0", "qty": 1, "amount": 3_000},
                                             {"sku": "sku-1", "qty": 1, "amount": 3_000}]}, ["body"],
                 id="items sum above amount"),
    pytest.param({"amount": 4_000, "items": []}, ["body"], id="empty items"),
    pytest.param({"amount": 4_000, "items": [{"sku": "sku-0", "qty": 0, "amount": 4_000}]},
                 ["body", "items", 0, "qty"], id="item qty 0"),
    pytest.param({"amount": 4_000, "items": [{"sku": "sku-0", "qty": 1, "amount": 4_000.0}]},
                 ["body", "items", 0, "amount"], id="item float amount"),
    pytest.param({"amount": 4_000, "items": [{"sku": "sku-0", "qty": 1, "amount": 4_000, "name": "x"}]},
                 ["body", "items", 0, "name"], id="item unknown field"),
    pytest.param({"amount": 4_000, "points": 40}, ["body", "points"], id="unknown field points"),
    pytest.param({"amount": 4_000, "refund_id": "r 1"}, ["body", "refund_id"], id="refund_id with a space"),
    pytest.param({"amount": 4_000, "refund_id": "r" * 65}, ["body", "refund_id"], id="refund_id of 65 chars"),
    pytest.param({"amount": 4_000, "refund_id": None}, ["body", "refund_id"], id="refund_id null"),
    pytest.param({}, ["body", "amount"], id="missing amount"),
]


def _refund_target(c: Ctx) -> tuple[dict[str, Any], Callable[[], Any]]:
    m = c.member()
    posted = c.order(m["member_id"])  # 10_000 fen in two lines (sku-0, sku-1): 100 points
    return posted, lambda: (c.order_view(posted["order_id"]), c.points(m["member_id"]))


@pytest.mark.parametrize(("change", "loc"), REFUND_INVALID)
def test_refund_rejects_invalid_body_and_refunds_nothing(api, ctx, nothing_written, change, loc):  # noqa: ANN001
    posted, read = _refund_target(ctx)
    before = read()
    body = {k: v for k, v in {"refund_id": "r-1", **change}.items() if v is not None}
    with nothing_written():
        status, err = api.post(f"/orders/{posted['order_id']}/refunds", body, ctx.staff)
    assert_error(status, err, 422, "validation_error", loc)
    assert read() == before


@pytest.mark.parametrize(("already", "amount"), [pytest.param(0, 10_001, id="more than the order"),
                                                 pytest.param(6_000, 4_001, id="more than remains")])
def test_refund_exceeding_the_order_is_422_and_refunds_nothing(api, ctx, nothing_written, already,  # noqa: ANN001
                                                               amount):
    posted, read = _refund_target(ctx)
    path = f"/orders/{posted['order_id']}/refunds"
    if already:
        assert api.post(path, {"refund_id": "r-first", "amount": already}, ctx.staff)[0] == 201
    before = read()
    with nothing_written():
        status, err = api.post(path, {"refund_id": "r-2", "amount": amount}, ctx.staff)
    assert_error(status, err, 422, "refund_exceeds_order")
    assert read() == before
    # the control: exactly what remains is accepted
    status, done = api.post(path, {"refund_id": "r-3", "amount": amount - 1}, ctx.staff)
    assert (status, done["refunded_total"]) == (201, 10_000), done


@pytest.mark.parametrize("items", [
    pytest.param([{"sku": "sku-9", "qty": 1, "amount": 1_000}], id="sku not in the order"),
    pytest.param([{"sku": "sku-0", "qty": 1, "amount": 500}, {"sku": "SKU-1", "qty": 1, "amount": 500}],
                 id="one of two skus unknown (case differs)"),
])
def test_refund_of_unknown_items_is_422_and_refunds_nothing(api, ctx, nothing_written, items):  # noqa: ANN001
    posted, read = _refund_target(ctx)
    before = read()
    with nothing_written():
        status, err = api.post(f"/orders/{posted['order_id']}/refunds",
                               {"refund_id": "r-1", "amount": 1_000, "items": items}, ctx.staff)
    assert_error(status, err, 422, "unknown_items")
    assert read() == before


def test_refund_id_reused_with_another_body_is_409_and_changes_nothing(api, ctx, nothing_written):  # noqa: ANN001
    posted, read = _refund_target(ctx)
    path = f"/orders/{posted['order_id']}/refunds"
    status, first = api.post(path, {"refund_id": "r-1", "amount": 1_000}, ctx.staff)
    assert status == 201, first
    before = read()
    with nothing_written():
        status, err = api.post(path, {"refund_id": "r-1", "amount": 2_000}, ctx.staff)
        assert_error(status, err, 409, "refund_id_reused")
        assert api.post(path, {"refund_id": "r-1", "amount": 1_000}, ctx.staff) == (200, first)  # a replay
    assert read() == before


# ---- POST /members/{id}/points/redemptions -----------------------------------------------------------------
REDEMPTION = {"redemption_id": "red-1", "points": 30, "reason": "兑换饮品", "store_id": "sh-001"}

REDEMPTION_INVALID = [
    pytest.param({"points": 0}, ["body", "points"], id="points 0"),
    pytest.param({"points": -10}, ["body", "points"], id="negative points"),
    pytest.param({"points": 10.0}, ["body", "points"], id="float points"),
    pytest.param({"points": 10.5}, ["body", "points"], id="fractional points"),
    pytest.param({"points": "10"}, ["body", "points"], id="points as string"),
    pytest.param({"points": True}, ["body", "points"], id="points true"),
    pytest.param({"points": 1_000_000_001}, ["body", "points"], id="points over 1e9"),
    pytest.param({"points": 10**30}, ["body", "points"], id="points 1e30"),
    pytest.param({"reason": None}, ["body", "reason"], id="missing reason"),
    pytest.param({"reason": ""}, ["body", "reason"], id="empty reason"),
    pytest.param({"reason": "r" * 201}, ["body", "reason"], id="201 char reason"),
    pytest.param({"reason": 5}, ["body", "reason"], id="reason number"),
    pytest.param({"redemption_id": "red 1"}, ["body", "redemption_id"], id="redemption_id with a space"),
    pytest.param({"redemption_id": "r" * 65}, ["body", "redemption_id"], id="redemption_id of 65 chars"),
    pytest.param({"redemption_id": None}, ["body", "redemption_id"], id="missing redemption_id"),
    pytest.param({"store_id": "sh 001"}, ["body", "store_id"], id="malformed store_id"),
    pytest.param({"balance": 1_000}, ["body", "balance"], id="unknown field balance"),
    pytest.param({"member_id": UNKNOWN_MEMBER}, ["body", "member_id"], id="unknown field member_id"),
]


def _redemption(**change: Any) -> dict[str, Any]:
    return {k: v for k, v in {**REDEMPTION, **change}.items() if v is not None}


def _spender(c: Ctx, tokens: Any, who: str, member_id: str) -> str:
    return tokens.member(member_id) if who == "member" else c.staff


@pytest.mark.parametrize("who", ["member", "staff"])
@pytest.mark.parametrize(("change", "loc"), REDEMPTION_INVALID)
def test_redemption_rejects_invalid_body_and_spends_nothing(api, ctx, tokens, nothing_written, who,  # noqa: ANN001
                                                            change, loc):
    m = ctx.funded_member()
    before = ctx.points(m["member_id"])
    with nothing_written():
        status, err = api.post(f"/members/{m['member_id']}/points/redemptions", _redemption(**change),
                               _spender(ctx, tokens, who, m["member_id"]))
    assert_error(status, err, 422, "validation_error", loc)
    assert ctx.points(m["member_id"]) == before


@pytest.mark.parametrize("role", ["staff", "store_manager"])
def test_redemption_at_the_counter_requires_store_id(api, ctx, tokens, nothing_written, role):  # noqa: ANN001
    m = ctx.funded_member()
    before = ctx.points(m["member_id"])
    with nothing_written():
        status, err = api.post(f"/members/{m['member_id']}/points/redemptions", _redemption(store_id=None),
                               tokens.staff(role, stores=["sh-001"]))
    assert_error(status, err, 422, "validation_error", ["body", "store_id"])
    assert ctx.points(m["member_id"]) == before


@pytest.mark.parametrize("who", ["member", "staff"])
def test_redemption_at_unknown_store_is_unknown_store(api, ctx, tokens, nothing_written, who):  # noqa: ANN001
    m = ctx.funded_member()
    before = ctx.points(m["member_id"])
    with nothing_written():
        status, err = api.post(f"/members/{m['member_id']}/points/redemptions", _redemption(store_id="nope-404"),
                               _spender(ctx, tokens, who, m["member_id"]))
    assert_error(status, err, 422, "unknown_store", ["body", "store_id"])
    assert ctx.points(m["member_id"]) == before


@pytest.mark.parametrize("who", ["member", "staff"])
@pytest.mark.parametrize("spent_first", [pytest.param(0, id="fresh"), pytest.param(60, id="after spending 60")])
def test_redeeming_more_than_the_balance_is_409_and_changes_nothing(api, ctx, tokens, nothing_written, who,  # noqa: ANN001
                                                                     spent_first):
    m = ctx.funded_member()
    path, token = f"/members/{m['member_id']}/points/redemptions", _spender(ctx, tokens, who, m["member_id"])
    if spent_first:
        assert api.post(path, _redemption(redemption_id="first", points=spent_first), token)[0] == 201
    before = ctx.points(m["member_id"])
    left = before["balance"]
    with nothing_written():
        status, err = api.post(path, _redemption(points=left + 1), token)
    assert_error(status, err, 409, "insufficient_points")
    assert ctx.points(m["member_id"]) == before
    # the control: exactly the balance can be spent
    status, red = api.post(path, _redemption(redemption_id="all", points=left), token)
    assert (status, red["balance"]) == (201, 0), red


def test_redemption_id_reused_with_another_body_is_409_and_changes_nothing(api, ctx, nothing_written):  # noqa: ANN001
    m = ctx.funded_member()
    path = f"/members/{m['member_id']}/points/redemptions"
    status, first = api.post(path, _redemption(), ctx.staff)
    assert status == 201, first
    before = ctx.points(m["member_id"])
    with nothing_written():
        status, err = api.post(path, _redemption(points=31), ctx.staff)
        assert_error(status, err, 409, "redemption_id_reused")
        assert api.post(path, _redemption(), ctx.staff) == (200, first)  # a replay
    assert ctx.points(m["member_id"]) == before


# ---- POST /members/{id}/points/adjustments -----------------------------------------------------------------
ADJUSTMENT_INVALID = [
    pytest.param({"points": 0}, ["body"], id="points 0"),
    pytest.param({"points": 10.0}, ["body", "points"], id="float points"),
    pytest.param({"points": -2.5}, ["body", "points"], id="fractional points"),
    pytest.param({"points": "10"}, ["body", "points"], id="points as string"),
    pytest.param({"points": True}, ["body", "points"], id="points true"),
    pytest.param({"points": 1_000_000_001}, ["body", "points"], id="points over 1e9"),
    pytest.param({"points": -1_000_000_001}, ["body", "points"], id="points under -1e9"),
    pytest.param({"points": None}, ["body", "points"], id="missing points"),
    pytest.param({"reason": None}, ["body", "reason"], id="missing reason"),
    pytest.param({"reason": ""}, ["body", "reason"], id="empty reason"),
    pytest.param({"adjustment_id": "adj 1"}, ["body", "adjustment_id"], id="adjustment_id with a space"),
    pytest.param({"adjustment_id": "a" * 65}, ["body", "adjustment_id"], id="adjustment_id of 65 chars"),
    pytest.param({"expires_on": "2099-01-01"}, ["body", "expires_on"], id="unknown field expires_on"),
]


@pytest.mark.parametrize(("change", "loc"), ADJUSTMENT_INVALID)
def test_adjustment_rejects_invalid_body_and_changes_nothing(api, ctx, nothing_written, change, loc):  # noqa: ANN001
    m = ctx.funded_member()
    before = ctx.points(m["member_id"])
    body = {k: v for k, v in {"adjustment_id": "adj-1", "points": 25, "reason": "补偿", **change}.items()
            if v is not None}
    with nothing_written():
        status, err = api.post(f"/members/{m['member_id']}/points/adjustments", body, ctx.hq)
    assert_error(status, err, 422, "validation_error", loc)
    assert ctx.points(m["member_id"]) == before


def test_adjustment_id_reused_with_another_body_is_409_and_changes_nothing(api, ctx, nothing_written):  # noqa: ANN001
    m = ctx.funded_member()
    path = f"/members/{m['member_id']}/points/adjustments"
    status, first = api.post(path, {"adjustment_id": "adj-1", "points": 25, "reason": "补偿"}, ctx.hq)
    assert status == 201, first
    before = ctx.points(m["member_id"])
    with nothing_written():
        status, err = api.post(path, {"adjustment_id": "adj-1", "points": -25, "reason": "补偿"}, ctx.hq)
    assert_error(status, err, 409, "adjustment_id_reused")
    assert ctx.points(m["member_id"]) == before


# ---- PUT /tiers and PUT /points/rules ----------------------------------------------------------------------
def _tiers_edit(edit: Callable[[list[dict[str, Any]]], Any]) -> Callable[[dict[str, Any]], dict[str, Any]]:
    def apply(program: dict[str, Any]) -> dict[str, Any]:
        tiers = json.loads(json.dumps(program["tiers"]))  # a deep copy to edit
        edit(tiers)
        return {**program, "tiers": tiers}

    return apply


def _set(target: dict[str, Any], **values: Any) -> None:
    target.update(values)


TIERS_INVALID = [
    pytest.param(_tiers_edit(lambda t: t.reverse()), ["body"], id="tiers in reverse order"),
    pytest.param(_tiers_edit(lambda t: _set(t[2], threshold=t[1]["threshold"] - 1)), ["body"],
                 id="thresholds decreasing"),
    pytest.param(_tiers_edit(lambda t: _set(t[2], threshold=t[1]["threshold"])), ["body"], id="thresholds equal"),
    pytest.param(_tiers_edit(lambda t: _set(t[0], threshold=1)), ["body"], id="first threshold not 0"),
    pytest.param(_tiers_edit(lambda t: _set(t[0], threshold=-1)), ["body", "tiers", 0, "threshold"],
                 id="negative threshold"),
    pytest.param(_tiers_edit(lambda t: _set(t[2], tier_id=t[1]["tier_id"])), ["body"], id="duplicate tier ids"),
    pytest.param(lambda p: {**p, "tiers": []}, ["body", "tiers"], id="empty list"),
    pytest.param(lambda p: {"basis": p["basis"]}, ["body", "tiers"], id="no tiers"),
    pytest.param(lambda p: {**p, "version": 2}, ["body", "version"], id="unknown top-level field"),
    pytest.param(_tiers_edit(lambda t: _set(t[1], color="silver")), ["body", "tiers", 1, "color"],
                 id="unknown tier field"),
    pytest.param(_tiers_edit(lambda t: _set(t[1]["benefits"], cashback=5)),
                 ["body", "tiers", 1, "benefits", "cashback"], id="unknown benefit field"),
    pytest.param(lambda p: {**p, "basis": "visits"}, ["body", "basis"], id="unknown basis"),
    pytest.param(_tiers_edit(lambda t: _set(t[1], tier_id="Silver Tier")), ["body", "tiers", 1, "tier_id"],
                 id="malformed tier_id"),
    pytest.param(_tiers_edit(lambda t: _set(t[1], name="")), ["body", "tiers", 1, "name"], id="empty tier name"),
    pytest.param(_tiers_edit(lambda t: _set(t[1]["benefits"], points_multiplier=-1)),
                 ["body", "tiers", 1, "benefits", "points_multiplier"], id="negative multiplier"),
]


@pytest.mark.parametrize(("edit", "loc"), TIERS_INVALID)
def test_put_tiers_rejects_invalid_program_and_keeps_it(api, ctx, nothing_written, edit, loc):  # noqa: ANN001
    current = ctx.config("/tiers")
    with nothing_written():
        status, err = api.put("/tiers", edit(current), ctx.hq)
    assert_error(status, err, 422, "validation_error", loc)
    assert ctx.config("/tiers") == current


def _rules_edit(path: tuple[str, ...], value: Any) -> Callable[[dict[str, Any]], dict[str, Any]]:
    def apply(rules: dict[str, Any]) -> dict[str, Any]:
        copy = json.loads(json.dumps(rules))
        target = copy
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
        return copy

    return apply


RULES_INVALID = [
    pytest.param(_rules_edit(("points_per_yuan",), -1), ["body", "points_per_yuan"], id="points_per_yuan negative"),
    pytest.param(_rules_edit(("points_per_yuan",), 101), ["body", "points_per_yuan"], id="points_per_yuan 101"),
    pytest.param(_rules_edit(("expiry", "months"), 0), ["body", "expiry", "months"], id="expiry months 0"),
    pytest.param(_rules_edit(("expiry", "months"), -12), ["body", "expiry", "months"], id="expiry months negative"),
    pytest.param(_rules_edit(("expiry", "mode"), "never"), ["body", "expiry", "mode"], id="unknown expiry mode"),
    pytest.param(_rules_edit(("promotions", "member_day"), 31), ["body", "promotions", "member_day"],
                 id="member day 31"),
    pytest.param(_rules_edit(("promotions", "member_day_multiplier"), -1000),
                 ["body", "promotions", "member_day_multiplier"], id="negative promotion multiplier"),
    pytest.param(_rules_edit(("expiring_soon_days",), 0), ["body", "expiring_soon_days"], id="expiring_soon_days 0"),
    pytest.param(_rules_edit(("signup_bonus",), 100), ["body", "signup_bonus"], id="unknown field"),
    pytest.param(_rules_edit(("expiry", "grace_days"), 7), ["body", "expiry", "grace_days"], id="unknown expiry field"),
]


@pytest.mark.parametrize(("edit", "loc"), RULES_INVALID)
def test_put_rules_rejects_invalid_rules_and_keeps_them(api, ctx, nothing_written, edit, loc):  # noqa: ANN001
    current = ctx.config("/points/rules")
    with nothing_written():
        status, err = api.put("/points/rules", edit(current), ctx.hq)
    assert_error(status, err, 422, "validation_error", loc)
    assert ctx.config("/points/rules") == current


# ---- GET /members/{id}/orders and /points?cursor=&limit= ---------------------------------------------------
MEMBER_LISTINGS = [pytest.param("/members/{}/orders", "items", id="orders"),
                   pytest.param("/members/{}/points", "ledger", id="points ledger")]


def _page(body: dict[str, Any], key: str) -> dict[str, Any]:
    return body if key == "items" else body[key]


@pytest.fixture
def two_order_member(ctx) -> str:  # noqa: ANN001
    m = ctx.member()
    ctx.order(m["member_id"], paid_at=plain_day(2))
    ctx.order(m["member_id"], paid_at=plain_day(1))
    return m["member_id"]


@pytest.mark.parametrize(("template", "key"), MEMBER_LISTINGS)
def test_member_listing_real_cursor_pages(api, ctx, two_order_member, template, key):  # noqa: ANN001
    # Control for the invalid cursors below: a cursor the API issued works.
    path = template.format(two_order_member)
    status, first = api.get(f"{path}?limit=1", ctx.hq)
    assert status == 200 and len(_page(first, key)["items"]) == 1
    status, second = api.get(f"{path}?limit=1&cursor={_page(first, key)['next_cursor']}", ctx.hq)
    assert status == 200 and len(_page(second, key)["items"]) == 1
    assert _page(second, key)["items"] != _page(first, key)["items"]


@pytest.mark.parametrize(("template", "key"), MEMBER_LISTINGS)
@pytest.mark.parametrize("make_cursor", [
    pytest.param(lambda real: "abc!!", id="not base64"),
    pytest.param(lambda real: "bm90IGpzb24", id="base64 of non-JSON"),
    pytest.param(lambda real: _b64(["MEMBER", "ORDER"]), id="JSON list"),
    pytest.param(lambda real: real, id="another member's cursor"),
    pytest.param(lambda real: _b64({"pk": "ORG", "sk": "STORE#sh-001"}), id="another partition"),
])
def test_member_listing_invalid_cursor_is_422(api, ctx, two_order_member, template, key,  # noqa: ANN001
                                              make_cursor):
    status, page = api.get(f"{template.format(two_order_member)}?limit=1", ctx.hq)
    assert status == 200
    victim = ctx.member()["member_id"]  # the cursor is used on another member's listing
    cursor = make_cursor(_page(page, key)["next_cursor"])
    status, body = api.get(f"{template.format(victim)}?cursor={cursor}", ctx.hq)
    assert_error(status, body, 422, "invalid_cursor", ["query", "cursor"])


@pytest.mark.parametrize(("template", "key"), MEMBER_LISTINGS)
@pytest.mark.parametrize("limit", ["0", "101", "-1", "abc", "1.5"])
def test_member_listing_invalid_limit_is_422(api, ctx, template, key, limit):  # noqa: ANN001
    m = ctx.member()
    status, body = api.get(f"{template.format(m['member_id'])}?limit={limit}", ctx.hq)
    assert_error(status, body, 422, "validation_error", ["query", "limit"])


@pytest.mark.parametrize(("template", "key"), MEMBER_LISTINGS)
def test_member_listing_oversized_cursor_is_422(api, ctx, template, key):  # noqa: ANN001
    m = ctx.member()
    status, body = api.get(f"{template.format(m['member_id'])}?cursor={'A' * 3000}", ctx.hq)
    assert_error(status, body, 422, None, ["query", "cursor"])


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
