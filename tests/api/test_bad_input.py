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

    # ---- coupons (set up as HQ; redeemed at sh-001, the staff token's store)
    def template(self, **change: Any) -> str:
        template_id = f"bi-{uuid.uuid4().hex[:10]}"
        status, view = self.api.put(f"/coupon-templates/{template_id}", _template(**change), self.hq)
        assert status == 201, view
        return template_id

    def template_view(self, template_id: str) -> tuple[int, Any]:
        return self.api.get(f"/coupon-templates/{template_id}", self.hq)

    def issue(self, template_id: str, member_id: str) -> str:
        status, answer = self.api.post("/coupon-issues", _issue(template_id, [member_id]), self.hq)
        assert status == 201 and answer["issued_count"] == 1, answer
        return answer["issued"][0]["code"]

    def coupon(self, member_id: str, **template: Any) -> str:
        return self.issue(self.template(**template), member_id)

    def coupon_view(self, code: str) -> tuple[int, Any]:
        return self.api.get(f"/coupons/{code}?store_id=sh-001", self.hq)

    def coupons_of(self, member_id: str) -> list[tuple[str, str]]:
        """(code, state) of every coupon the member holds (each state asked for on its own)."""
        held = []
        for state in ("available", "used", "expired"):
            status, page = self.api.get(f"/members/{member_id}/coupons?state={state}", self.hq)
            assert status == 200, page
            held += [(c["code"], c["state"]) for c in page["items"]]
        return held

    def allocate(self, template_id: str, scope: str, scope_id: str, quantity: int) -> None:
        status, done = self.api.post("/benefit-pool/allocations", _allocation(template_id, scope, scope_id, quantity),
                                     self.hq)
        assert status == 201, done

    def pool(self, query: str = "") -> dict[str, Any]:
        """Every level's pool lines HQ sees: the brand's, region east's, store sh-001's (or the one asked)."""
        seen = {}
        for q in ([query] if query else ["", "region_id=east", "store_id=sh-001"]):
            status, body = self.api.get(f"/benefit-pool?{q}", self.hq)
            assert status == 200, body
            seen[q] = body
        return seen

    def article(self, **change: Any) -> str:
        """A new knowledge-base article (version 1): its id."""
        article_id = f"bi-{uuid.uuid4().hex[:10]}"
        status, view = self.api.put(f"/kb/articles/{article_id}", _article(**change), self.hq)
        assert status == 201, view
        return article_id

    def office_calendar(self) -> str:
        """A new office calendar (HQ): its id."""
        calendar_id = f"bi-{uuid.uuid4().hex[:10]}"
        status, view = self.api.put(f"/calendars/{calendar_id}", OFFICE_CALENDAR, self.hq)
        assert status == 201, view
        return calendar_id

    def redeemed(self, member_id: str) -> tuple[str, str]:
        """A coupon of the member's, redeemed by the staff at sh-001 for a new order: (code, order_id)."""
        code = self.coupon(member_id)
        body = _redeem_body(member_id)
        status, answer = self.api.post(f"/coupons/{code}/redeem", body, self.staff)
        assert status == 201, answer
        return code, body["order_id"]


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


def _case_put_template(c: Ctx) -> BodyCase:
    template_id = c.template()
    before = c.template_view(template_id)
    return BodyCase("PUT", f"/coupon-templates/{template_id}", c.hq, _template(name="改过的券", budget=20), 200,
                    lambda: _same(c.template_view(template_id), before))


def _case_issue(c: Ctx) -> BodyCase:
    m, template_id = c.member(), c.template()
    before = (c.template_view(template_id), c.coupons_of(m["member_id"]))
    return BodyCase("POST", "/coupon-issues", c.hq, _issue(template_id, [m["member_id"]]), 201,
                    lambda: _same((c.template_view(template_id), c.coupons_of(m["member_id"])), before))


def _case_exchange(c: Ctx) -> BodyCase:
    m, template_id = c.funded_member(), c.template(points_price=40)
    before = (c.points(m["member_id"]), c.coupons_of(m["member_id"]), c.template_view(template_id))
    return BodyCase("POST", f"/members/{m['member_id']}/points/exchanges", c.staff,
                    {"exchange_id": "x-1", "template_id": template_id}, 201,
                    lambda: _same((c.points(m["member_id"]), c.coupons_of(m["member_id"]),
                                   c.template_view(template_id)), before))


def _case_allocate(c: Ctx) -> BodyCase:
    template_id = c.template(budget=10)
    before = c.pool()
    return BodyCase("POST", "/benefit-pool/allocations", c.hq, _allocation(template_id, "store", "sh-001", 2), 201,
                    lambda: _same(c.pool(), before))


def _case_redeem_coupon(c: Ctx) -> BodyCase:
    m = c.member()
    code = c.coupon(m["member_id"])
    before = c.coupon_view(code)
    return BodyCase("POST", f"/coupons/{code}/redeem", c.staff, _redeem_body(m["member_id"]), 201,
                    lambda: _same(c.coupon_view(code), before))


def _case_cancel_coupon(c: Ctx) -> BodyCase:
    code, order_id = c.redeemed(c.member()["member_id"])
    before = c.coupon_view(code)
    return BodyCase("POST", f"/coupons/{code}/redemption/cancel", c.staff, {"order_id": order_id}, 200,
                    lambda: _same(c.coupon_view(code), before))


def _case_put_article(c: Ctx) -> BodyCase:
    article_id = c.article()
    before = c.api.get(f"/kb/articles/{article_id}", c.hq)
    return BodyCase("PUT", f"/kb/articles/{article_id}", c.hq, _article(title="改过的标题", base_version=1), 200,
                    lambda: _same(c.api.get(f"/kb/articles/{article_id}", c.hq), before))


# ---- tickets (set up as HQ at sh-001, the staff token's store; each a new ticket in store-sh-001's queue)
def _ticket_body(**change: Any) -> dict[str, Any]:
    return {"ticket_id": f"bi-{uuid.uuid4().hex[:10]}", "channel": "store", "type": "complaint",
            "subject": "奶茶太甜", "description": "点了三分糖，喝起来是全糖", "store_id": "sh-001", **change}


def _ticket(c: Ctx, **change: Any) -> str:
    status, ticket = c.api.post("/tickets", _ticket_body(**change), c.hq)
    assert status == 201, ticket
    return ticket["ticket_id"]


def _ticket_view(c: Ctx, ticket_id: str) -> tuple[int, Any]:
    return c.api.get(f"/tickets/{ticket_id}", c.hq)


def _task_body(**change: Any) -> dict[str, Any]:
    return {"task_id": f"bi-{uuid.uuid4().hex[:10]}", "store_id": "sh-001", "title": "收货并交给顾客",
            "due_at": "2030-01-01T09:00:00+08:00", **change}


def _ticket_task(c: Ctx) -> tuple[str, str]:
    """An open task for sh-001 on a new ticket: (ticket_id, task_id)."""
    ticket_id = _ticket(c)
    status, task = c.api.post(f"/tickets/{ticket_id}/tasks", _task_body(), c.hq)
    assert status == 201, task
    return ticket_id, task["task_id"]


def _case_open_ticket(c: Ctx) -> BodyCase:
    body = _ticket_body()
    return BodyCase("POST", "/tickets", c.staff, body, 201,
                    lambda: _same(_ticket_view(c, body["ticket_id"])[0], 404))


def _case_ticket_action(c: Ctx) -> BodyCase:
    ticket_id = _ticket(c)
    before = _ticket_view(c, ticket_id)
    return BodyCase("POST", f"/tickets/{ticket_id}/actions", c.hq,
                    {"action_id": "a-1", "type": "reply", "body": "您好，我们马上处理"}, 201,
                    lambda: _same(_ticket_view(c, ticket_id), before))


def _case_ticket_task(c: Ctx) -> BodyCase:
    ticket_id = _ticket(c)
    before = _ticket_view(c, ticket_id)
    return BodyCase("POST", f"/tickets/{ticket_id}/tasks", c.staff, _task_body(store_id="sh-002"), 201,
                    lambda: _same(_ticket_view(c, ticket_id), before))


def _case_put_queue(c: Ctx) -> BodyCase:
    from chalicelib import bootstrap

    queue_id = f"bi-{uuid.uuid4().hex[:10]}"
    assert c.api.put(f"/queues/{queue_id}", {"kind": "region", "name": "华东", "region_id": "east"}, c.hq)[0] == 201
    before = bootstrap.tickets().get_queue(queue_id)
    return BodyCase("PUT", f"/queues/{queue_id}", c.hq, {"kind": "hq", "name": "总部客服"}, 200,
                    lambda: _same(bootstrap.tickets().get_queue(queue_id), before))


def _case_availability(c: Ctx) -> BodyCase:
    from chalicelib import bootstrap

    sub = f"bi-{uuid.uuid4().hex[:10]}"
    return BodyCase("PUT", "/queues/store-sh-001/agents/me", c.tokens.staff(stores=["sh-001"], sub=sub),
                    {"available": False}, 200,
                    lambda: _same(bootstrap.tickets().get_agent("store-sh-001", sub), None))


def _case_put_routing_rules(c: Ctx) -> BodyCase:
    current = c.config("/routing-rules")  # sent back as read it is valid (and routes nothing differently)
    return BodyCase("PUT", "/routing-rules", c.hq, current, 200, lambda: _same(c.config("/routing-rules"), current))


def _case_complete_task(c: Ctx) -> BodyCase:
    ticket_id, task_id = _ticket_task(c)
    before = _ticket_view(c, ticket_id)
    return BodyCase("POST", f"/tasks/{task_id}/complete", c.staff, {"outcome": "done", "note": "已交付"}, 200,
                    lambda: _same(_ticket_view(c, ticket_id), before))


def _case_assign_task(c: Ctx) -> BodyCase:
    ticket_id, task_id = _ticket_task(c)
    before = _ticket_view(c, ticket_id)
    return BodyCase("POST", f"/tasks/{task_id}/assign", c.staff, {"assignee": "clerk-9"}, 200,
                    lambda: _same(_ticket_view(c, ticket_id), before))


# ---- calendars (this module's own table: the brand and office calendars written here touch no other suite)
def _case_put_brand_calendar(c: Ctx) -> BodyCase:
    before = c.api.put("/calendars/brand", BRAND_CALENDAR, c.hq)[1]
    return BodyCase("PUT", "/calendars/brand", c.hq, BRAND_CALENDAR, 200,
                    lambda: _same(c.api.get("/calendars/brand", c.hq), (200, before)))


def _case_put_office_calendar(c: Ctx) -> BodyCase:
    calendar_id = c.office_calendar()
    before = c.api.get(f"/calendars/{calendar_id}", c.hq)
    return BodyCase("PUT", f"/calendars/{calendar_id}", c.hq, OFFICE_CALENDAR, 200,
                    lambda: _same(c.api.get(f"/calendars/{calendar_id}", c.hq), before))


def _case_put_closures(c: Ctx) -> BodyCase:
    store_id = c.store()["store_id"]
    before = c.api.put(f"/stores/{store_id}/closures", STORE_CLOSURES, c.hq)
    return BodyCase("PUT", f"/stores/{store_id}/closures", c.hq, STORE_CLOSURES, 200,
                    lambda: _same(c.api.get(f"/stores/{store_id}/closures", c.hq), before))


# ---- SLA policy and notifications
def _case_put_sla_policy(c: Ctx) -> BodyCase:
    current = c.config("/sla-policies")  # sent back as read (its version the one read) it is valid
    return BodyCase("PUT", "/sla-policies", c.hq, current, 200, lambda: _same(c.config("/sla-policies"), current))


def _case_mark_read(c: Ctx) -> BodyCase:
    from chalicelib import bootstrap
    from chalicelib.store import keys

    sub, note_id = f"bi-{uuid.uuid4().hex[:10]}", f"bi-{uuid.uuid4().hex[:10]}"
    return BodyCase("POST", "/notifications/me/read", c.tokens.staff(stores=["sh-001"], sub=sub),
                    {"notification_ids": [note_id]}, 200,
                    lambda: _same(bootstrap.db().get(keys.notification_read_key(sub, note_id)), None))


# ---- member tags
TAG_RULE = {"tag": "健康饮食", "all": [{"field": "category_share", "category": "轻食", "op": "gte", "value": 600}]}


def _member_tags_item(member_id: str) -> Any:
    from chalicelib import bootstrap
    from chalicelib.store import keys

    return bootstrap.db().get(keys.member_tags_key(member_id))


def _case_put_tag_rules(c: Ctx) -> BodyCase:
    current = c.config("/tag-rules")  # naming the version read, a whole new list is valid
    return BodyCase("PUT", "/tag-rules", c.hq, {"rules": [TAG_RULE], "version": current["version"]}, 200,
                    lambda: _same(c.config("/tag-rules"), current))


def _case_add_tag(c: Ctx) -> BodyCase:
    member_id = c.member()["member_id"]
    return BodyCase("POST", f"/members/{member_id}/tags", c.staff, {"tag": "常客"}, 200,
                    lambda: _same(_member_tags_item(member_id), None))


def _case_put_rfm_settings(c: Ctx) -> BodyCase:
    current = c.config("/rfm-settings")  # the settings as they are, at the version read: valid, changes nothing
    return BodyCase("PUT", "/rfm-settings", c.hq, current, 200,
                    lambda: _same(c.config("/rfm-settings"), current))


# ---- report links (a link is signed, not stored: nothing_written is the whole check)
REPORT_RANGE = {"from": "2025-11-01", "to": "2025-11-30"}


def _case_store_link(c: Ctx) -> BodyCase:
    return BodyCase("POST", "/stores/sh-001/report-links", c.staff, dict(REPORT_RANGE), 201, lambda: None)


def _case_kpi_link(c: Ctx) -> BodyCase:
    return BodyCase("POST", "/analytics/report-links", c.tokens.staff("region_manager", region="east"),
                    {**REPORT_RANGE, "group_by": "city"}, 201, lambda: None)


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
    ("PUT", "/coupon-templates/{template_id}"): _case_put_template,
    ("POST", "/coupon-issues"): _case_issue,
    ("POST", "/members/{member_id}/points/exchanges"): _case_exchange,
    ("POST", "/coupons/{code}/redeem"): _case_redeem_coupon,
    ("POST", "/coupons/{code}/redemption/cancel"): _case_cancel_coupon,
    ("POST", "/benefit-pool/allocations"): _case_allocate,
    ("PUT", "/kb/articles/{article_id}"): _case_put_article,
    ("POST", "/tickets"): _case_open_ticket,
    ("POST", "/tickets/{ticket_id}/actions"): _case_ticket_action,
    ("POST", "/tickets/{ticket_id}/tasks"): _case_ticket_task,
    ("PUT", "/queues/{queue_id}"): _case_put_queue,
    ("PUT", "/queues/{queue_id}/agents/me"): _case_availability,
    ("PUT", "/routing-rules"): _case_put_routing_rules,
    ("POST", "/tasks/{task_id}/complete"): _case_complete_task,
    ("POST", "/tasks/{task_id}/assign"): _case_assign_task,
    ("PUT", "/calendars/brand"): _case_put_brand_calendar,
    ("PUT", "/calendars/{calendar_id}"): _case_put_office_calendar,
    ("PUT", "/stores/{store_id}/closures"): _case_put_closures,
    ("PUT", "/sla-policies"): _case_put_sla_policy,
    ("POST", "/notifications/me/read"): _case_mark_read,
    ("PUT", "/tag-rules"): _case_put_tag_rules,
    ("POST", "/members/{member_id}/tags"): _case_add_tag,
    ("PUT", "/rfm-settings"): _case_put_rfm_settings,
    ("POST", "/stores/{store_id}/report-links"): _case_store_link,
    ("POST", "/analytics/report-links"): _case_kpi_link,
}
# covered by their own tests below
QUERY_ROUTES = {("GET", "/members"), ("GET", "/stores"), ("GET", "/members/{member_id}/orders"),
                ("GET", "/members/{member_id}/points"), ("GET", "/coupons/{code}"),
                ("GET", "/members/{member_id}/coupons"), ("GET", "/benefit-pool"),
                ("GET", "/coupon-templates/{template_id}/stats"), ("GET", "/coupons/settlement"),
                ("GET", "/kb/articles"), ("GET", "/tickets"), ("GET", "/members/{member_id}/tickets"),
                ("GET", "/stores/{store_id}/tasks"), ("GET", "/notifications/me"),
                ("GET", "/tickets/stats"), ("GET", "/analytics/rfm"), ("GET", "/stores/{store_id}/report"),
                ("GET", "/analytics/kpis"), ("GET", "/stores/{store_id}/report.html"),
                ("GET", "/analytics/report.html")}


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
    # HQ may not exchange points either: the counter is the caller that reaches the member lookup
    pytest.param("POST", "/members/{}/points/exchanges", {"exchange_id": "x-1", "template_id": "t-1"}, "staff",
                 id="POST exchange"),
    pytest.param("GET", "/members/{}/coupons", None, "hq", id="GET coupons"),
    pytest.param("POST", "/members/{}/tags", {"tag": "常客"}, "staff", id="POST tag"),
    pytest.param("DELETE", "/members/{}/tags/%E5%B8%B8%E5%AE%A2", None, "staff", id="DELETE tag"),
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


# ---- coupons: shared bodies ----------------------------------------------------------------------------------
TEMPLATE = {"name": "减5元", "kind": "cash", "value": 500, "valid_days": 7}


def _template(**change: Any) -> dict[str, Any]:
    """The cash template with `change` applied (a None removes the field)."""
    return {k: v for k, v in {**TEMPLATE, **change}.items() if v is not None}


def _issue(template_id: str, member_ids: Any, **change: Any) -> dict[str, Any]:
    body = {"issue_id": f"i-{uuid.uuid4().hex[:10]}", "template_id": template_id, "member_ids": member_ids, **change}
    return {k: v for k, v in body.items() if v is not None}


def _redeem_body(member_id: str, /, **change: Any) -> dict[str, Any]:
    """10_000 fen at sh-001 in two lines (6_000 + 4_000), for a new order (a None removes the field)."""
    body = {"member_id": member_id, "store_id": "sh-001", "order_id": f"o-{uuid.uuid4().hex[:10]}",
            "order_amount": 10_000, "lines": [{"sku": "sku-0", "amount": 6_000}, {"sku": "sku-1", "amount": 4_000}]}
    return {k: v for k, v in {**body, **change}.items() if v is not None}


def _allocation(template_id: Any, scope: Any, scope_id: Any, quantity: Any, **change: Any) -> dict[str, Any]:
    body = {"allocation_id": f"a-{uuid.uuid4().hex[:10]}", "template_id": template_id, "scope": scope,
            "scope_id": scope_id, "quantity": quantity, **change}
    return {k: v for k, v in body.items() if v is not None}


def _in(days: float) -> str:
    return (datetime.now(UTC) + timedelta(days=days)).isoformat()


def _unknown_members(n: int) -> list[str]:
    """n distinct well-formed member ids that nobody holds."""
    return [f"01ARZ3NDEKTSV4RR{i:010d}" for i in range(n)]


def assert_reason(body: dict[str, Any], why: str | None) -> None:
    """A rule that spans fields (loc ["body"]) is the one meant: some detail's message names it."""
    if why is not None:
        assert any(why in d["msg"] for d in body["details"]), body["details"]


# ---- PUT /coupon-templates/{template_id} ---------------------------------------------------------------------
DISCOUNT = {"kind": "discount", "value": None, "pct": 85, "cap": 2_000}
GIFT = {"kind": "gift", "value": None, "gift": {"name": "奶茶", "cost": 1_500}}
WINDOW = {"valid_days": None, "valid_from": _in(1), "valid_to": _in(30)}

TEMPLATE_INVALID = [
    pytest.param({"kind": "coupon"}, ["body", "kind"], None, id="unknown kind"),
    pytest.param({"kind": 1}, ["body", "kind"], None, id="kind number"),
    pytest.param({"kind": None}, ["body", "kind"], None, id="missing kind"),
    pytest.param({"kind": "threshold", "value": 3_000, "min_spend": 2_999}, ["body"], "min_spend must be at least",
                 id="threshold min_spend below value"),
    pytest.param({"kind": "threshold", "value": 3_000}, ["body"], "min_spend must be at least",
                 id="threshold without min_spend"),
    pytest.param({**DISCOUNT, "cap": None}, ["body"], "needs cap", id="discount without cap"),
    pytest.param({**DISCOUNT, "pct": None}, ["body"], "needs pct", id="discount without pct"),
    pytest.param({**DISCOUNT, "pct": 100}, ["body", "pct"], None, id="discount pct 100"),
    pytest.param({**DISCOUNT, "pct": 0}, ["body", "pct"], None, id="discount pct 0"),
    pytest.param({**DISCOUNT, "pct": 85.0}, ["body", "pct"], None, id="discount float pct"),
    pytest.param({**DISCOUNT, "cap": 2_000.0}, ["body", "cap"], None, id="discount float cap"),
    pytest.param({**DISCOUNT, "value": 500}, ["body"], "value does not apply", id="discount with a value"),
    pytest.param({"value": None}, ["body"], "needs value", id="cash without value"),
    pytest.param({"value": 0}, ["body"], "at least 1 fen", id="cash value 0"),
    pytest.param({"cap": 100}, ["body"], "cap does not apply", id="cash with a cap"),
    pytest.param({"value": -500}, ["body", "value"], None, id="negative value"),
    pytest.param({"value": 500.0}, ["body", "value"], None, id="float fen value"),
    pytest.param({"value": 500.5}, ["body", "value"], None, id="fractional value"),
    pytest.param({"value": "500"}, ["body", "value"], None, id="value as string"),
    pytest.param({"value": True}, ["body", "value"], None, id="value true"),
    pytest.param({"value": 10_000_000_001}, ["body", "value"], None, id="value over 1e10 fen"),
    pytest.param({"min_spend": 1_000.0}, ["body", "min_spend"], None, id="float fen min_spend"),
    pytest.param({**GIFT, "gift": None}, ["body"], "needs gift", id="gift without gift"),
    pytest.param({**GIFT, "gift": {"name": "奶茶", "cost": 1_500.0}}, ["body", "gift", "cost"], None,
                 id="gift float fen cost"),
    pytest.param({**GIFT, "gift": {"name": "奶茶", "cost": 1_500, "qty": 1}}, ["body", "gift", "qty"], None,
                 id="gift unknown field"),
    pytest.param({**GIFT, "gift": "奶茶"}, ["body", "gift"], None, id="gift as string"),
    pytest.param({"valid_from": _in(1), "valid_to": _in(30)}, ["body"], "either", id="both valid_days and a window"),
    pytest.param({"valid_days": None}, ["body"], "either", id="neither valid_days nor a window"),
    pytest.param({**WINDOW, "valid_from": _in(30), "valid_to": _in(1)}, ["body"], "before", id="window reversed"),
    pytest.param({**WINDOW, "valid_to": WINDOW["valid_from"]}, ["body"], "before", id="empty window"),
    pytest.param({**WINDOW, "valid_to": None}, ["body"], "before", id="window without its end"),
    pytest.param({**WINDOW, "valid_from": "2030-01-01T00:00:00"}, ["body", "valid_from"], None,
                 id="valid_from without offset"),
    pytest.param({**WINDOW, "valid_to": "2030-01-01"}, ["body", "valid_to"], None, id="valid_to date only"),
    pytest.param({**WINDOW, "valid_to": 1_900_000_000}, ["body", "valid_to"], None, id="valid_to as epoch number"),
    pytest.param({"valid_days": -1}, ["body", "valid_days"], None, id="valid_days -1"),
    pytest.param({"valid_days": 3_651}, ["body", "valid_days"], None, id="valid_days over 10 years"),
    pytest.param({"valid_days": 7.0}, ["body", "valid_days"], None, id="float valid_days"),
    pytest.param({"valid_days": "7"}, ["body", "valid_days"], None, id="valid_days as string"),
    pytest.param({"budget": 0}, ["body", "budget"], None, id="budget 0"),
    pytest.param({"budget": 10.0}, ["body", "budget"], None, id="float budget"),
    pytest.param({"budget": 100_000_001}, ["body", "budget"], None, id="budget over 1e8"),
    pytest.param({"per_member_limit": 0}, ["body", "per_member_limit"], None, id="per_member_limit 0"),
    pytest.param({"points_price": 0}, ["body", "points_price"], None, id="points_price 0"),
    pytest.param({"points_price": 40.0}, ["body", "points_price"], None, id="float points_price"),
    pytest.param({"store_scope": "stores"}, ["body"], "store_scope 'stores'", id="store scope without stores"),
    pytest.param({"store_ids": ["sh-001"]}, ["body"], "store_scope 'all'", id="scope all listing stores"),
    pytest.param({"store_scope": "regions", "region_ids": ["east"], "store_ids": ["sh-001"]}, ["body"],
                 "store_scope 'regions'", id="scope regions listing stores too"),
    pytest.param({"store_scope": "city"}, ["body", "store_scope"], None, id="unknown store_scope"),
    pytest.param({"store_scope": "stores", "store_ids": ["sh 001"]}, ["body", "store_ids", 0], None,
                 id="malformed store id in scope"),
    pytest.param({"stackable": "yes"}, ["body", "stackable"], None, id="stackable string"),
    pytest.param({"active": 1}, ["body", "active"], None, id="active number"),
    pytest.param({"name": ""}, ["body", "name"], None, id="empty name"),
    pytest.param({"name": "券" * 61}, ["body", "name"], None, id="61 char name"),
    pytest.param({"name": None}, ["body", "name"], None, id="missing name"),
    # server-owned fields: not for a client to set
    *[pytest.param({field: value}, ["body", field], None, id=f"unknown field {field}")
      for field, value in (("issued", 0), ("left", 1_000), ("version", 9), ("template_id", "other"),
                           ("updated_by", "hq-evil"))],
]


@pytest.mark.parametrize(("change", "loc", "why"), TEMPLATE_INVALID)
def test_put_template_rejects_invalid_terms_and_keeps_the_template(api, ctx, nothing_written, change,  # noqa: ANN001
                                                                   loc, why):
    template_id = ctx.template()
    before = ctx.template_view(template_id)
    with nothing_written():
        status, err = api.put(f"/coupon-templates/{template_id}", _template(**change), ctx.hq)
    assert_error(status, err, 422, "validation_error", loc)
    assert_reason(err, why)
    assert ctx.template_view(template_id) == before


@pytest.mark.parametrize("change", [
    pytest.param({"kind": "threshold", "value": 3_000, "min_spend": 3_000}, id="threshold min_spend equal to value"),
    pytest.param(DISCOUNT, id="discount with pct and cap"),
    pytest.param({**DISCOUNT, "pct": 1}, id="discount pct 1"),
    pytest.param({**DISCOUNT, "pct": 99}, id="discount pct 99"),
    pytest.param(GIFT, id="gift"),
    pytest.param(WINDOW, id="a fixed window"),
    pytest.param({"valid_days": 0}, id="valid_days 0"),
    pytest.param({"valid_days": 3_650}, id="valid_days 3650"),
    pytest.param({"budget": 1, "per_member_limit": 1, "points_price": 1}, id="limits at 1"),
    pytest.param({"store_scope": "stores", "store_ids": ["sh-001"]}, id="scope stores"),
    pytest.param({"store_scope": "regions", "region_ids": ["east"]}, id="scope regions"),
    pytest.param({"name": "券" * 60, "stackable": True, "active": False}, id="60 char name, flags"),
])
def test_put_template_accepts_every_kind_at_its_bounds(api, ctx, change):  # noqa: ANN001
    # The controls for the rejections above: each kind, window and bound is accepted as such.
    template_id = f"bi-{uuid.uuid4().hex[:10]}"
    status, view = api.put(f"/coupon-templates/{template_id}", _template(**change), ctx.hq)
    assert status == 201, view
    assert ctx.template_view(template_id) == (200, view)


def test_budget_below_the_coupons_issued_is_409_and_keeps_the_template(api, ctx, nothing_written):  # noqa: ANN001
    template_id = ctx.template(budget=5)
    members = [ctx.member()["member_id"] for _ in range(2)]
    status, issued = api.post("/coupon-issues", _issue(template_id, members), ctx.hq)
    assert (status, issued["issued_count"]) == (201, 2), issued
    before = ctx.template_view(template_id)
    with nothing_written():
        status, err = api.put(f"/coupon-templates/{template_id}", _template(budget=1), ctx.hq)
    assert_error(status, err, 409, "budget_below_issued")
    assert ctx.template_view(template_id) == before
    # the control: exactly the coupons issued is a budget with nothing left
    status, view = api.put(f"/coupon-templates/{template_id}", _template(budget=2), ctx.hq)
    assert (status, view["issued"], view["left"]) == (200, 2, 0), view


# BUG (chalicelib/api/routing.py PATH_PARAMS has no rule for template_id): any text is a template id, so
# PUT creates templates no issue or exchange can ever name (their template_id must match ^[A-Za-z0-9_-]{1,40}$).
@pytest.mark.parametrize("template_id", [pytest.param("t" * 41, id="41 chars"), pytest.param("t.1", id="dot"),
                                         pytest.param("t%201", id="encoded space"),
                                         pytest.param("%E5%88%B8", id="encoded CJK")])
def test_malformed_template_id_in_path_creates_nothing(api, ctx, nothing_written, template_id):  # noqa: ANN001
    with nothing_written():
        status, body = api.put(f"/coupon-templates/{template_id}", _template(), ctx.hq)
    assert status in (404, 422), (status, body)
    assert_error(status, body, status)


def test_unknown_template_is_404(api, ctx):  # noqa: ANN001
    status, body = api.get("/coupon-templates/nobody-made-this", ctx.staff)
    assert_error(status, body, 404, "template_not_found")


# ---- POST /coupon-issues ----------------------------------------------------------------------------------------
ISSUE_INVALID = [
    pytest.param(lambda t, m: _issue(t, []), ["body", "member_ids"], id="no members"),
    pytest.param(lambda t, m: _issue(t, [m, *_unknown_members(1_000)]), ["body", "member_ids"],
                 id="1001 members"),
    pytest.param(lambda t, m: _issue(t, m), ["body", "member_ids"], id="member_ids a string"),
    pytest.param(lambda t, m: _issue(t, None), ["body"], id="neither member_ids nor audience"),
    pytest.param(lambda t, m: _issue(t, ["abc"]), ["body", "member_ids", 0], id="malformed member id"),
    pytest.param(lambda t, m: _issue(t, [m.lower()]), ["body", "member_ids", 0], id="lowercase member id"),
    pytest.param(lambda t, m: _issue(t, [m, 5]), ["body", "member_ids", 1], id="member id number"),
    pytest.param(lambda t, m: _issue("t 1", [m]), ["body", "template_id"], id="template_id with a space"),
    pytest.param(lambda t, m: _issue("t" * 41, [m]), ["body", "template_id"], id="template_id of 41 chars"),
    pytest.param(lambda t, m: _issue(5, [m]), ["body", "template_id"], id="template_id number"),
    pytest.param(lambda t, m: _issue(None, [m]), ["body", "template_id"], id="missing template_id"),
    pytest.param(lambda t, m: _issue(t, [m], issue_id="i 1"), ["body", "issue_id"], id="issue_id with a space"),
    pytest.param(lambda t, m: _issue(t, [m], issue_id="i" * 65), ["body", "issue_id"], id="issue_id of 65 chars"),
    pytest.param(lambda t, m: _without(_issue(t, [m]), "issue_id"), ["body", "issue_id"], id="missing issue_id"),
    pytest.param(lambda t, m: _issue(t, [m], valid_days=365), ["body", "valid_days"], id="unknown field valid_days"),
    pytest.param(lambda t, m: _issue(t, [m], store_id="sh-001", region_id="east"), ["body"],
                 id="both a store's and a region's quota"),
    pytest.param(lambda t, m: _issue(t, [m], store_id="sh 001"), ["body", "store_id"], id="malformed quota store_id"),
    pytest.param(lambda t, m: _issue(t, [m], region_id=5), ["body", "region_id"], id="quota region_id number"),
    pytest.param(lambda t, m: _issue(t, [m], codes=["ABCDEFGHJKMNPQ"]), ["body", "codes"], id="unknown field codes"),
]


@pytest.mark.parametrize(("make_body", "loc"), ISSUE_INVALID)
def test_issue_rejects_invalid_body_and_issues_nothing(api, ctx, nothing_written, make_body, loc):  # noqa: ANN001
    m, template_id = ctx.member()["member_id"], ctx.template(budget=5)
    before = (ctx.template_view(template_id), ctx.coupons_of(m))
    with nothing_written():
        status, err = api.post("/coupon-issues", make_body(template_id, m), ctx.hq)
    assert_error(status, err, 422, "validation_error", loc)
    assert (ctx.template_view(template_id), ctx.coupons_of(m)) == before


def _audience(template_id: str, audience: Any, **change: Any) -> dict[str, Any]:
    return {"issue_id": f"a-{uuid.uuid4().hex[:10]}", "template_id": template_id, "audience": audience, **change}


ISSUE_AUDIENCE_INVALID = [
    pytest.param(lambda t, m: _audience(t, {"segment": "重要价值"}, member_ids=[m]), ["body"],
                 id="both member_ids and audience"),
    pytest.param(lambda t, m: _audience(t, {}), ["body", "audience"], id="an audience with no criterion"),
    pytest.param(lambda t, m: _audience(t, {"segment": "VIP"}), ["body", "audience", "segment"], id="unknown segment"),
    pytest.param(lambda t, m: _audience(t, {"segment": None, "tags": None}), ["body", "audience"],
                 id="only nulls"),
    pytest.param(lambda t, m: _audience(t, {"tags": []}), ["body", "audience", "tags"], id="no tags"),
    pytest.param(lambda t, m: _audience(t, {"tags": ["健康饮食", "健康饮食"]}), ["body", "audience"], id="a tag twice"),
    pytest.param(lambda t, m: _audience(t, {"tags": ["   "]}), ["body", "audience", "tags", 0], id="a blank tag"),
    pytest.param(lambda t, m: _audience(t, {"tags": ["x" * 21]}), ["body", "audience", "tags", 0],
                 id="a tag of 21 chars"),
    pytest.param(lambda t, m: _audience(t, {"tags": [f"t{i}" for i in range(11)]}), ["body", "audience", "tags"],
                 id="11 tags"),
    pytest.param(lambda t, m: _audience(t, {"tags": "健康饮食"}), ["body", "audience", "tags"], id="tags a string"),
    pytest.param(lambda t, m: _audience(t, {"home_store_id": "sh 001"}), ["body", "audience", "home_store_id"],
                 id="malformed home_store_id"),
    pytest.param(lambda t, m: _audience(t, {"home_store_id": "sh-001", "region_id": "east"}),
                 ["body", "audience", "region_id"], id="unknown audience field"),
    pytest.param(lambda t, m: _audience(t, ["重要价值"]), ["body", "audience"], id="audience a list"),
]


@pytest.mark.parametrize(("make_body", "loc"), ISSUE_AUDIENCE_INVALID)
def test_audience_issue_rejects_invalid_body_and_records_no_job(api, ctx, nothing_written, make_body, loc):  # noqa: ANN001
    m, template_id = ctx.member()["member_id"], ctx.template(budget=5)
    body = make_body(template_id, m)
    with nothing_written():
        status, err = api.post("/coupon-issues", body, ctx.hq)
    assert_error(status, err, 422, "validation_error", loc)
    assert api.get(f"/coupon-issues/{body['issue_id']}", ctx.hq)[0] == 404


def test_audience_issue_of_an_unknown_template_is_404_and_records_no_job(api, ctx, nothing_written):  # noqa: ANN001
    body = _audience("nobody-made-this", {"home_store_id": "sh-001"})
    with nothing_written():
        status, err = api.post("/coupon-issues", body, ctx.hq)
    assert_error(status, err, 404, "template_not_found")


@pytest.mark.parametrize("issue_id", ["i 1", "i" * 65, "a~0~0", "%00", "unknown-issue"])
def test_malformed_or_unknown_issue_id_is_404(api, ctx, nothing_written, issue_id):  # noqa: ANN001
    with nothing_written():
        status, body = api.get(f"/coupon-issues/{issue_id}", ctx.hq)
    assert_error(status, body, 404, "issue_not_found")


def test_issue_to_1000_members_at_once_is_accepted(api, ctx):  # noqa: ANN001
    # The control for "1001 members": 1,000 is the limit; the unknown ones are skipped with their reason.
    m, template_id = ctx.member()["member_id"], ctx.template()
    status, answer = api.post("/coupon-issues", _issue(template_id, [m, *_unknown_members(999)]), ctx.hq)
    assert status == 201, answer
    assert (answer["requested"], answer["issued_count"], [i["member_id"] for i in answer["issued"]]) == (1_000, 1, [m])
    assert {s["reason"] for s in answer["skipped"]} == {"unknown_member"} and len(answer["skipped"]) == 999
    assert ctx.template_view(template_id)[1]["issued"] == 1


def _with_store_quota(c: Ctx, quantity: int) -> str:
    template_id = c.template(budget=10)
    c.allocate(template_id, "store", "sh-001", quantity)
    return template_id


@pytest.mark.parametrize(("make_template", "quota", "status_code", "code"), [
    pytest.param(lambda c: "nobody-made-this", {}, 404, "template_not_found", id="unknown template"),
    pytest.param(lambda c: c.template(active=False), {}, 409, "template_inactive", id="inactive template"),
    pytest.param(lambda c: c.template(budget=1), {}, 409, "budget_exhausted", id="budget of 1 for 2 members"),
    pytest.param(lambda c: _with_store_quota(c, 1), {"store_id": "sh-001"}, 409, "quota_exhausted",
                 id="store quota of 1 for 2 members"),
    pytest.param(lambda c: c.template(budget=10), {"store_id": "sh-001"}, 409, "quota_exhausted",
                 id="store given no quota"),
    pytest.param(lambda c: _with_store_quota(c, 5), {"store_id": "nope-404"}, 422, "unknown_store",
                 id="quota of an unknown store"),
])
def test_issue_that_cannot_be_made_is_refused_and_issues_nothing(api, ctx, nothing_written,  # noqa: ANN001
                                                                  make_template, quota, status_code, code):
    members = [ctx.member()["member_id"] for _ in range(2)]
    template_id = make_template(ctx)
    before = (ctx.template_view(template_id), ctx.pool("store_id=sh-001"), [ctx.coupons_of(m) for m in members])
    with nothing_written():
        status, err = api.post("/coupon-issues", _issue(template_id, members, **quota), ctx.hq)
    assert_error(status, err, status_code, code)
    assert (ctx.template_view(template_id), ctx.pool("store_id=sh-001"), [ctx.coupons_of(m) for m in members]) \
        == before


def test_issue_of_exactly_the_store_quota_is_accepted(api, ctx):  # noqa: ANN001
    # The control for "store quota of 1 for 2 members".
    members = [ctx.member()["member_id"] for _ in range(2)]
    template_id = _with_store_quota(ctx, 2)
    status, answer = api.post("/coupon-issues", _issue(template_id, members, store_id="sh-001"), ctx.hq)
    assert (status, answer["issued_count"]) == (201, 2), answer
    line = next(x for x in ctx.pool("store_id=sh-001")["store_id=sh-001"]["items"] if x["template_id"] == template_id)
    assert (line["issued"], line["left"]) == (2, 0), line


def test_issue_id_reused_with_another_body_is_409_and_issues_nothing(api, ctx, nothing_written):  # noqa: ANN001
    m, other, template_id = ctx.member()["member_id"], ctx.member()["member_id"], ctx.template()
    body = _issue(template_id, [m])
    status, first = api.post("/coupon-issues", body, ctx.hq)
    assert status == 201, first
    before = (ctx.template_view(template_id), ctx.coupons_of(m), ctx.coupons_of(other))
    with nothing_written():
        status, err = api.post("/coupon-issues", {**body, "member_ids": [other]}, ctx.hq)
        assert_error(status, err, 409, "issue_id_reused")
        assert api.post("/coupon-issues", body, ctx.hq) == (200, first)  # a replay
    assert (ctx.template_view(template_id), ctx.coupons_of(m), ctx.coupons_of(other)) == before


# ---- POST /members/{id}/points/exchanges -------------------------------------------------------------------------
EXCHANGE_INVALID = [
    pytest.param({"exchange_id": "x 1"}, ["body", "exchange_id"], id="exchange_id with a space"),
    pytest.param({"exchange_id": "x" * 65}, ["body", "exchange_id"], id="exchange_id of 65 chars"),
    pytest.param({"exchange_id": 5}, ["body", "exchange_id"], id="exchange_id number"),
    pytest.param({"exchange_id": None}, ["body", "exchange_id"], id="missing exchange_id"),
    pytest.param({"template_id": "t 1"}, ["body", "template_id"], id="template_id with a space"),
    pytest.param({"template_id": 7}, ["body", "template_id"], id="template_id number"),
    pytest.param({"template_id": None}, ["body", "template_id"], id="missing template_id"),
    pytest.param({"points": 40}, ["body", "points"], id="unknown field points"),
    pytest.param({"member_id": UNKNOWN_MEMBER}, ["body", "member_id"], id="unknown field member_id"),
]


def _exchange_target(c: Ctx, **template: Any) -> tuple[str, str, Callable[[], Any]]:
    """A member holding 100 points and a template priced at 40 (unless `template` says otherwise)."""
    m = c.funded_member()["member_id"]
    template_id = c.template(**{"points_price": 40, **template})
    return m, template_id, lambda: (c.points(m), c.coupons_of(m), c.template_view(template_id))


@pytest.mark.parametrize("who", ["member", "staff"])
@pytest.mark.parametrize(("change", "loc"), EXCHANGE_INVALID)
def test_exchange_rejects_invalid_body_and_spends_nothing(api, ctx, tokens, nothing_written, who,  # noqa: ANN001
                                                          change, loc):
    m, template_id, read = _exchange_target(ctx)
    before = read()
    body = {k: v for k, v in {"exchange_id": "x-1", "template_id": template_id, **change}.items() if v is not None}
    with nothing_written():
        status, err = api.post(f"/members/{m}/points/exchanges", body, _spender(ctx, tokens, who, m))
    assert_error(status, err, 422, "validation_error", loc)
    assert read() == before


@pytest.mark.parametrize(("template", "issue_first", "status_code", "code"), [
    pytest.param({"points_price": None}, False, 409, "not_exchangeable", id="template without a points price"),
    pytest.param({"points_price": 101}, False, 409, "insufficient_points", id="price above the balance"),
    pytest.param({"active": False}, False, 409, "template_inactive", id="inactive template"),
    pytest.param({"budget": 1}, True, 409, "budget_exhausted", id="budget used up"),
    pytest.param({"per_member_limit": 1}, True, 409, "limit_reached", id="member at the limit"),
])
def test_exchange_that_cannot_be_made_is_409_and_spends_nothing(api, ctx, nothing_written, template,  # noqa: ANN001
                                                                 issue_first, status_code, code):
    m, template_id, read = _exchange_target(ctx, **template)
    if issue_first:  # the budget's one coupon, or the member's one, is already out
        ctx.issue(template_id, m)
    before = read()
    with nothing_written():
        status, err = api.post(f"/members/{m}/points/exchanges", {"exchange_id": "x-1", "template_id": template_id},
                               ctx.staff)
    assert_error(status, err, status_code, code)
    assert read() == before


def test_exchange_of_an_unknown_template_is_404(api, ctx, nothing_written):  # noqa: ANN001
    m, _, read = _exchange_target(ctx)
    before = read()
    with nothing_written():
        status, err = api.post(f"/members/{m}/points/exchanges", {"exchange_id": "x-1", "template_id": "nobody-made"},
                               ctx.staff)
    assert_error(status, err, 404, "template_not_found")
    assert read() == before


def test_exchange_of_exactly_the_balance_is_accepted(api, ctx):  # noqa: ANN001
    # The control for "price above the balance": 100 of 100 points is spendable.
    m, template_id, _ = _exchange_target(ctx, points_price=100)
    status, answer = api.post(f"/members/{m}/points/exchanges", {"exchange_id": "x-1", "template_id": template_id},
                              ctx.staff)
    assert (status, answer["points"], answer["balance"]) == (201, 100, 0), answer
    assert ctx.coupons_of(m) == [(answer["coupon"]["code"], "available")]


def test_exchange_id_reused_with_another_body_is_409_and_spends_nothing(api, ctx, nothing_written):  # noqa: ANN001
    m, template_id, read = _exchange_target(ctx)
    path, body = f"/members/{m}/points/exchanges", {"exchange_id": "x-1", "template_id": template_id}
    status, first = api.post(path, body, ctx.staff)
    assert status == 201, first
    another = ctx.template(points_price=10)
    before = read()
    with nothing_written():
        status, err = api.post(path, {**body, "template_id": another}, ctx.staff)
        assert_error(status, err, 409, "exchange_id_reused")
        assert api.post(path, body, ctx.staff) == (200, first)  # a replay
    assert read() == before


# ---- POST /coupons/{code}/redeem -----------------------------------------------------------------------------------
def _redeem_lines(*amounts: Any) -> list[dict[str, Any]]:
    return [{"sku": f"sku-{i}", "amount": a} for i, a in enumerate(amounts)]


REDEEM_INVALID = [
    pytest.param({"order_amount": 0, "lines": None}, ["body", "order_amount"], None, id="order_amount 0"),
    pytest.param({"order_amount": -100, "lines": None}, ["body", "order_amount"], None, id="negative order_amount"),
    pytest.param({"order_amount": 10_000.0}, ["body", "order_amount"], None, id="float fen order_amount"),
    pytest.param({"order_amount": 10_000.5, "lines": None}, ["body", "order_amount"], None,
                 id="fractional order_amount"),
    pytest.param({"order_amount": "10000"}, ["body", "order_amount"], None, id="order_amount as string"),
    pytest.param({"order_amount": True, "lines": None}, ["body", "order_amount"], None, id="order_amount true"),
    pytest.param({"order_amount": 10_000_000_001, "lines": None}, ["body", "order_amount"], None,
                 id="order_amount over 1e10"),
    pytest.param({"order_amount": None}, ["body", "order_amount"], None, id="missing order_amount"),
    pytest.param({"lines": _redeem_lines(6_000, 3_999)}, ["body"], "add up", id="lines below order_amount"),
    pytest.param({"lines": _redeem_lines(6_000, 4_001)}, ["body"], "add up", id="lines above order_amount"),
    pytest.param({"lines": []}, ["body", "lines"], None, id="empty lines"),
    pytest.param({"lines": _redeem_lines(6_000.0, 4_000)}, ["body", "lines", 0, "amount"], None, id="float fen line"),
    pytest.param({"lines": _redeem_lines(-1, 10_001)}, ["body", "lines", 0, "amount"], None, id="negative line"),
    pytest.param({"lines": _redeem_lines("6000", 4_000)}, ["body", "lines", 0, "amount"], None,
                 id="line amount string"),
    pytest.param({"lines": [{"amount": 6_000}, {"sku": "sku-1", "amount": 4_000}]}, ["body", "lines", 0, "sku"],
                 None, id="line without sku"),
    pytest.param({"lines": [{"sku": "", "amount": 6_000}, {"sku": "sku-1", "amount": 4_000}]},
                 ["body", "lines", 0, "sku"], None, id="line with empty sku"),
    pytest.param({"lines": [{"sku": "sku-0", "amount": 10_000, "qty": 1}]}, ["body", "lines", 0, "qty"], None,
                 id="line unknown field"),
    pytest.param({"lines": _redeem_lines(*[50] * 201), "order_amount": 10_050}, ["body", "lines"], None,
                 id="201 lines"),
    pytest.param({"member_id": "abc"}, ["body", "member_id"], None, id="malformed member_id"),
    pytest.param({"member_id": None}, ["body", "member_id"], None, id="missing member_id"),
    pytest.param({"store_id": "sh 001"}, ["body", "store_id"], None, id="malformed store_id"),
    pytest.param({"store_id": None}, ["body", "store_id"], None, id="missing store_id"),
    pytest.param({"order_id": "o 1"}, ["body", "order_id"], None, id="order_id with a space"),
    pytest.param({"order_id": "o" * 65}, ["body", "order_id"], None, id="order_id of 65 chars"),
    pytest.param({"order_id": None}, ["body", "order_id"], None, id="missing order_id"),
    pytest.param({"discount": 500}, ["body", "discount"], None, id="unknown field discount"),
    pytest.param({"code": "ABCDEFGHJKMNPQ"}, ["body", "code"], None, id="unknown field code"),
]


@pytest.mark.parametrize(("change", "loc", "why"), REDEEM_INVALID)
def test_redeem_rejects_invalid_body_and_keeps_the_coupon(api, ctx, nothing_written, change, loc, why):  # noqa: ANN001
    m = ctx.member()["member_id"]
    code = ctx.coupon(m)
    before = ctx.coupon_view(code)
    with nothing_written():
        status, err = api.post(f"/coupons/{code}/redeem", _redeem_body(m, **change), ctx.staff)
    assert_error(status, err, 422, "validation_error", loc)
    assert_reason(err, why)
    assert ctx.coupon_view(code) == before


@pytest.mark.parametrize("change", [
    pytest.param({"lines": _redeem_lines(*[50] * 200)}, id="200 lines"),
    pytest.param({"lines": None}, id="no lines"),
    pytest.param({"order_amount": 1, "lines": _redeem_lines(1)}, id="order of 1 fen"),
    pytest.param({"order_amount": 10_000_000_000, "lines": None}, id="order of 1e10 fen"),
])
def test_redeem_at_the_bounds_is_accepted(api, ctx, change):  # noqa: ANN001
    m = ctx.member()["member_id"]
    code = ctx.coupon(m)
    body = _redeem_body(m, **change)
    status, answer = api.post(f"/coupons/{code}/redeem", body, ctx.staff)
    assert status == 201, answer
    assert answer["discount"] == min(500, body["order_amount"])
    if "lines" in body:
        assert sum(line["discount"] for line in answer["lines"]) == answer["discount"]


REDEEM_REFUSED = [
    pytest.param(lambda c, m: ({}, _redeem_body(m, store_id="nope-404")), 422, "unknown_store", id="unknown store"),
    pytest.param(lambda c, m: ({}, _redeem_body(c.member()["member_id"])), 422, "not_your_coupon",
                 id="another member's coupon"),
    pytest.param(lambda c, m: ({"kind": "threshold", "value": 3_000, "min_spend": 20_000}, _redeem_body(m)), 422,
                 "below_minimum_spend", id="below the minimum spend"),
    pytest.param(lambda c, m: ({"store_scope": "stores", "store_ids": ["gz-001"]}, _redeem_body(m)), 422,
                 "store_not_in_scope", id="a store the coupon is not for"),
    pytest.param(lambda c, m: ({"valid_days": None, "valid_from": _in(1), "valid_to": _in(2)}, _redeem_body(m)), 422,
                 "not_yet_valid", id="not valid yet"),
]


@pytest.mark.parametrize(("make", "status_code", "code"), REDEEM_REFUSED)
def test_coupon_that_cannot_be_used_here_is_refused_and_kept(api, ctx, nothing_written, make,  # noqa: ANN001
                                                             status_code, code):
    m = ctx.member()["member_id"]
    template, body = make(ctx, m)
    coupon = ctx.coupon(m, **template)
    before = ctx.coupon_view(coupon)
    with nothing_written():
        status, err = api.post(f"/coupons/{coupon}/redeem", body, ctx.staff)
    assert_error(status, err, status_code, code)
    assert ctx.coupon_view(coupon) == before


def test_redeem_for_an_order_already_posted_is_409(api, ctx, nothing_written):  # noqa: ANN001
    m = ctx.member()["member_id"]
    code, posted = ctx.coupon(m), ctx.order(m)
    before = ctx.coupon_view(code)
    with nothing_written():
        status, err = api.post(f"/coupons/{code}/redeem", _redeem_body(m, order_id=posted["order_id"]), ctx.staff)
    assert_error(status, err, 409, "order_posted")
    assert ctx.coupon_view(code) == before


def test_redeemed_coupon_is_409_for_another_order_or_another_body(api, ctx, nothing_written):  # noqa: ANN001
    m = ctx.member()["member_id"]
    code = ctx.coupon(m)
    body = _redeem_body(m)
    status, first = api.post(f"/coupons/{code}/redeem", body, ctx.staff)
    assert status == 201, first
    before = ctx.coupon_view(code)
    with nothing_written():
        status, err = api.post(f"/coupons/{code}/redeem", _redeem_body(m), ctx.staff)
        assert_error(status, err, 409, "already_redeemed")
        status, err = api.post(f"/coupons/{code}/redeem", {**body, "lines": None}, ctx.staff)
        assert_error(status, err, 409, "redemption_conflict")
        assert api.post(f"/coupons/{code}/redeem", body, ctx.staff) == (200, first)  # a replay
    assert ctx.coupon_view(code) == before


# ---- POST /benefit-pool/allocations --------------------------------------------------------------------------------
ALLOCATION_INVALID = [
    pytest.param({"quantity": 0}, ["body"], "must not be 0", id="quantity 0"),
    pytest.param({"quantity": 2.0}, ["body", "quantity"], None, id="float quantity"),
    pytest.param({"quantity": "2"}, ["body", "quantity"], None, id="quantity as string"),
    pytest.param({"quantity": True}, ["body", "quantity"], None, id="quantity true"),
    pytest.param({"quantity": 1_000_001}, ["body", "quantity"], None, id="quantity over 1e6"),
    pytest.param({"quantity": -1_000_001}, ["body", "quantity"], None, id="quantity under -1e6"),
    pytest.param({"quantity": None}, ["body", "quantity"], None, id="missing quantity"),
    pytest.param({"scope": "city"}, ["body", "scope"], None, id="unknown scope"),
    pytest.param({"scope": None}, ["body", "scope"], None, id="missing scope"),
    pytest.param({"scope_id": "sh 001"}, ["body", "scope_id"], None, id="malformed scope_id"),
    pytest.param({"scope_id": None}, ["body", "scope_id"], None, id="missing scope_id"),
    pytest.param({"template_id": "t 1"}, ["body", "template_id"], None, id="malformed template_id"),
    pytest.param({"template_id": None}, ["body", "template_id"], None, id="missing template_id"),
    pytest.param({"allocation_id": "a 1"}, ["body", "allocation_id"], None, id="allocation_id with a space"),
    pytest.param({"allocation_id": "a" * 65}, ["body", "allocation_id"], None, id="allocation_id of 65 chars"),
    pytest.param({"source": "HQ"}, ["body", "source"], None, id="unknown field source"),
]


@pytest.mark.parametrize(("change", "loc", "why"), ALLOCATION_INVALID)
def test_allocation_rejects_invalid_body_and_moves_nothing(api, ctx, nothing_written, change, loc, why):  # noqa: ANN001
    template_id = ctx.template(budget=10)
    before = ctx.pool()
    body = {k: v for k, v in {**_allocation(template_id, "store", "sh-001", 2), **change}.items() if v is not None}
    with nothing_written():
        status, err = api.post("/benefit-pool/allocations", body, ctx.hq)
    assert_error(status, err, 422, "validation_error", loc)
    assert_reason(err, why)
    assert ctx.pool() == before


@pytest.mark.parametrize(("make_body", "status_code", "code"), [
    pytest.param(lambda c, t: _allocation("nobody-made-this", "store", "sh-001", 2), 404, "template_not_found",
                 id="unknown template"),
    pytest.param(lambda c, t: _allocation(t, "store", "nope-404", 2), 422, "unknown_store", id="unknown store"),
    pytest.param(lambda c, t: _allocation(t, "region", "atlantis", 2), 422, "unknown_region", id="unknown region"),
    pytest.param(lambda c, t: _allocation(t, "store", "sh-001", 11), 409, "quota_exhausted",
                 id="more than the budget"),
    pytest.param(lambda c, t: (c.allocate(t, "store", "sh-001", 2), _allocation(t, "store", "sh-001", -3))[1], 409,
                 "return_exceeds_quota", id="returning more than was given"),
])
def test_allocation_that_cannot_be_made_is_refused_and_moves_nothing(api, ctx, nothing_written,  # noqa: ANN001
                                                                     make_body, status_code, code):
    template_id = ctx.template(budget=10)
    body = make_body(ctx, template_id)
    before = ctx.pool()
    with nothing_written():
        status, err = api.post("/benefit-pool/allocations", body, ctx.hq)
    assert_error(status, err, status_code, code)
    assert ctx.pool() == before


def test_allocation_of_the_whole_budget_and_its_return_are_accepted(api, ctx):  # noqa: ANN001
    # The controls for "more than the budget" and "returning more than was given".
    template_id = ctx.template(budget=10)
    assert api.post("/benefit-pool/allocations", _allocation(template_id, "store", "sh-001", 10), ctx.hq)[0] == 201
    assert api.post("/benefit-pool/allocations", _allocation(template_id, "store", "sh-001", -10), ctx.hq)[0] == 201
    line = next(x for x in ctx.pool("store_id=sh-001")["store_id=sh-001"]["items"] if x["template_id"] == template_id)
    assert (line["received"], line["left"]) == (0, 0), line


def test_allocation_id_reused_with_another_body_is_409_and_moves_nothing(api, ctx, nothing_written):  # noqa: ANN001
    template_id = ctx.template(budget=10)
    body = _allocation(template_id, "store", "sh-001", 2)
    status, first = api.post("/benefit-pool/allocations", body, ctx.hq)
    assert status == 201, first
    before = ctx.pool()
    with nothing_written():
        status, err = api.post("/benefit-pool/allocations", {**body, "quantity": 3}, ctx.hq)
        assert_error(status, err, 409, "allocation_id_reused")
        assert api.post("/benefit-pool/allocations", body, ctx.hq) == (200, first)  # a replay
    assert ctx.pool() == before


# ---- GET /benefit-pool, /coupon-templates/{id}/stats, /coupons/settlement ----------------------------------------
def _business_day(days_ago: int = 0) -> str:
    from chalicelib.domain import clock

    return (clock.business_day(clock.now()) - timedelta(days=days_ago)).isoformat()


@pytest.mark.parametrize(("query", "who", "loc"), [
    pytest.param("store_id=sh%20001", "hq", ["query", "store_id"], id="malformed store_id"),
    pytest.param("region_id=east%20side", "hq", ["query", "region_id"], id="malformed region_id"),
    pytest.param("store_id=sh-001&region_id=east", "hq", ["query", "store_id"], id="both a store and a region"),
    pytest.param("", "staff", ["query", "store_id"], id="counter staff naming no store"),
])
def test_pool_rejects_invalid_query(api, ctx, query, who, loc):  # noqa: ANN001
    status, body = api.get(f"/benefit-pool?{query}", getattr(ctx, who))
    assert_error(status, body, 422, "validation_error", loc)
    # the control: the counter's own store
    assert api.get("/benefit-pool?store_id=sh-001", ctx.staff)[0] == 200


@pytest.mark.parametrize(("make_query", "loc"), [
    pytest.param(lambda: f"to={_business_day()}", ["query", "from"], id="missing from"),
    pytest.param(lambda: f"from={_business_day()}", ["query", "to"], id="missing to"),
    pytest.param(lambda: f"from=2026-02-30&to={_business_day()}", ["query", "from"], id="impossible from"),
    pytest.param(lambda: f"from={_business_day()}&to=yesterday", ["query", "to"], id="to a word"),
    pytest.param(lambda: f"from={_business_day()}&to={_business_day(1)}", ["query", "to"], id="to before from"),
    pytest.param(lambda: f"from={_business_day(366)}&to={_business_day()}", ["query", "to"], id="367 days"),
    pytest.param(lambda: f"from={_business_day()}&to={_business_day()}&store_id=sh%20001", ["query", "store_id"],
                 id="malformed store_id"),
])
def test_stats_rejects_invalid_query(api, ctx, make_query, loc):  # noqa: ANN001
    template_id = ctx.template()
    status, body = api.get(f"/coupon-templates/{template_id}/stats?{make_query()}", ctx.hq)
    assert_error(status, body, 422, "validation_error", loc)


def test_stats_of_366_days_are_accepted_and_of_an_unknown_template_404(api, ctx):  # noqa: ANN001
    # The control for "367 days"; and a template nobody made is not found.
    template_id = ctx.template()
    query = f"from={_business_day(365)}&to={_business_day()}"
    status, body = api.get(f"/coupon-templates/{template_id}/stats?{query}", ctx.hq)
    assert (status, body["template_id"], body["issued"]) == (200, template_id, 0), body
    status, body = api.get(f"/coupon-templates/nobody-made-this/stats?{query}", ctx.hq)
    assert_error(status, body, 404, "template_not_found")


@pytest.mark.parametrize("month", [pytest.param(None, id="missing month"), pytest.param("2026-13", id="month 13"),
                                   pytest.param("2026-00", id="month 0"), pytest.param("2026-1", id="one digit"),
                                   pytest.param("26-01", id="two digit year"), pytest.param("1999-12", id="1999"),
                                   pytest.param("2026-01-01", id="a day")])
def test_settlement_rejects_invalid_month(api, ctx, month):  # noqa: ANN001
    status, body = api.get("/coupons/settlement" + (f"?month={month}" if month else ""), ctx.hq)
    assert_error(status, body, 422, "validation_error", ["query", "month"])
    # the control: this month
    status, body = api.get(f"/coupons/settlement?month={_business_day()[:7]}", ctx.hq)
    assert (status, body["level"]) == (200, "HQ"), body


# ---- malformed or unknown coupon codes: 404, whatever the route ------------------------------------------------
COUPON_CODE_ROUTES = [
    pytest.param("GET", "/coupons/{}?store_id=sh-001", lambda m: None, id="GET coupon"),
    pytest.param("POST", "/coupons/{}/redeem", _redeem_body, id="POST redeem"),
    pytest.param("POST", "/coupons/{}/redemption/cancel", lambda m: {"order_id": "o-1"}, id="POST cancel"),
]


@pytest.mark.parametrize(("method", "template", "make_body"), COUPON_CODE_ROUTES)
@pytest.mark.parametrize("make_code", [
    pytest.param(lambda real: "abc", id="short word"),
    pytest.param(lambda real: real[:-1], id="13 chars"),
    pytest.param(lambda real: real + "2", id="15 chars"),
    pytest.param(lambda real: "O" + real[1:], id="letter O not in the alphabet"),
    pytest.param(lambda real: "0" + real[1:], id="digit 0 not in the alphabet"),
    pytest.param(lambda real: "%00" + real[1:], id="encoded NUL"),
    pytest.param(lambda real: "..%2F" + real, id="encoded traversal"),
    pytest.param(lambda real: "2" * 14, id="well-formed unknown"),
])
def test_malformed_or_unknown_coupon_code_is_404(api, ctx, nothing_written, method, template, make_body,  # noqa: ANN001
                                                 make_code):
    m = ctx.member()["member_id"]
    real = ctx.coupon(m)
    with nothing_written():
        status, body = api.call(method, template.format(make_code(real)), make_body(m), ctx.hq)
    assert_error(status, body, 404, "coupon_not_found")


def test_coupon_code_as_read_out_at_the_counter_is_found(api, ctx):  # noqa: ANN001
    # The control for the 404s above: lower case, grouped with a dash or spaces, is the same coupon.
    m = ctx.member()["member_id"]
    code = ctx.coupon(m)
    for spelling in (code.lower(), f"{code[:4]}-{code[4:9]}-{code[9:]}", f"{code[:7].lower()}-{code[7:]}"):
        status, found = api.get(f"/coupons/{spelling}?store_id=sh-001", ctx.staff)
        assert (status, found["code"]) == (200, code), spelling


# ---- POST /coupons/{code}/redemption/cancel ------------------------------------------------------------------------
@pytest.mark.parametrize(("make_body", "loc"), [
    pytest.param(lambda oid: {}, ["body", "order_id"], id="missing order_id"),
    pytest.param(lambda oid: {"order_id": ""}, ["body", "order_id"], id="empty order_id"),
    pytest.param(lambda oid: {"order_id": "o 1"}, ["body", "order_id"], id="order_id with a space"),
    pytest.param(lambda oid: {"order_id": "o" * 65}, ["body", "order_id"], id="order_id of 65 chars"),
    pytest.param(lambda oid: {"order_id": 5}, ["body", "order_id"], id="order_id number"),
    pytest.param(lambda oid: {"order_id": [oid]}, ["body", "order_id"], id="order_id list"),
    pytest.param(lambda oid: {"order_id": oid, "store_id": "sh-001"}, ["body", "store_id"],
                 id="unknown field store_id"),
])
def test_cancel_rejects_invalid_body_and_keeps_the_redemption(api, ctx, nothing_written, make_body,  # noqa: ANN001
                                                              loc):
    code, order_id = ctx.redeemed(ctx.member()["member_id"])
    before = ctx.coupon_view(code)
    with nothing_written():
        status, err = api.post(f"/coupons/{code}/redemption/cancel", make_body(order_id), ctx.staff)
    assert_error(status, err, 422, "validation_error", loc)
    assert ctx.coupon_view(code) == before and before[1]["state"] == "used"


def test_cancel_for_another_order_is_409_and_keeps_the_redemption(api, ctx, nothing_written):  # noqa: ANN001
    code, order_id = ctx.redeemed(ctx.member()["member_id"])
    before = ctx.coupon_view(code)
    with nothing_written():
        status, err = api.post(f"/coupons/{code}/redemption/cancel", {"order_id": order_id + "-x"}, ctx.staff)
    assert_error(status, err, 409, "not_redeemed_for_order")
    assert ctx.coupon_view(code) == before
    # the control: for its own order the coupon is released
    status, released = api.post(f"/coupons/{code}/redemption/cancel", {"order_id": order_id}, ctx.staff)
    assert (status, released["state"]) == (200, "available"), released


# ---- GET /coupons/{code}?store_id=&order_amount= -----------------------------------------------------------------
@pytest.mark.parametrize(("query", "code", "loc"), [
    pytest.param("store_id=sh-001&order_amount=0", "validation_error", ["query", "order_amount"], id="order_amount 0"),
    pytest.param("store_id=sh-001&order_amount=-1", "validation_error", ["query", "order_amount"],
                 id="negative order_amount"),
    pytest.param("store_id=sh-001&order_amount=abc", "validation_error", ["query", "order_amount"],
                 id="order_amount word"),
    pytest.param("store_id=sh-001&order_amount=1.5", "validation_error", ["query", "order_amount"],
                 id="fractional order_amount"),
    pytest.param("store_id=sh-001&order_amount=10000000001", "validation_error", ["query", "order_amount"],
                 id="order_amount over 1e10"),
    pytest.param("store_id=sh%20001", "validation_error", ["query", "store_id"], id="malformed store_id"),
    pytest.param(f"store_id={'s' * 41}", "validation_error", ["query", "store_id"], id="41 char store_id"),
    pytest.param("store_id=nope-404", "unknown_store", ["query", "store_id"], id="unknown store"),
    pytest.param("order_amount=10000", "validation_error", ["query", "store_id"], id="no store at the counter"),
])
def test_coupon_lookup_rejects_invalid_query(api, ctx, query, code, loc):  # noqa: ANN001
    coupon = ctx.coupon(ctx.member()["member_id"])
    status, body = api.get(f"/coupons/{coupon}?{query}", ctx.staff)
    assert_error(status, body, 422, code, loc)


@pytest.mark.parametrize(("amount", "discount"), [("1", 1), ("10000000000", 500)])
def test_coupon_lookup_at_the_bounds_is_accepted(api, ctx, amount, discount):  # noqa: ANN001
    coupon = ctx.coupon(ctx.member()["member_id"])
    status, body = api.get(f"/coupons/{coupon}?store_id=sh-001&order_amount={amount}", ctx.staff)
    assert (status, body["usable"], body["discount"]) == (200, True, discount), body


# ---- GET /members/{id}/coupons?state=&cursor=&limit= ---------------------------------------------------------------
@pytest.fixture
def two_coupon_member(ctx) -> str:  # noqa: ANN001
    m = ctx.member()["member_id"]
    ctx.coupon(m)
    ctx.coupon(m)
    return m


def test_member_coupons_real_cursor_pages(api, ctx, two_coupon_member):  # noqa: ANN001
    # Control for the invalid cursors below: a cursor the API issued works.
    path = f"/members/{two_coupon_member}/coupons?state=available&limit=1"
    status, first = api.get(path, ctx.hq)
    assert status == 200 and len(first["items"]) == 1 and first["next_cursor"], first
    status, second = api.get(f"{path}&cursor={first['next_cursor']}", ctx.hq)
    assert status == 200 and len(second["items"]) == 1, second
    assert second["items"][0]["code"] != first["items"][0]["code"]


@pytest.mark.parametrize("query", [pytest.param("state=bogus", id="unknown state"),
                                   pytest.param("state=AVAILABLE", id="state in capitals")])
def test_member_coupons_rejects_unknown_state(api, ctx, two_coupon_member, query):  # noqa: ANN001
    status, body = api.get(f"/members/{two_coupon_member}/coupons?{query}", ctx.hq)
    assert_error(status, body, 422, "validation_error", ["query", "state"])


@pytest.mark.parametrize("limit", ["0", "101", "-1", "abc", "1.5"])
def test_member_coupons_invalid_limit_is_422(api, ctx, two_coupon_member, limit):  # noqa: ANN001
    status, body = api.get(f"/members/{two_coupon_member}/coupons?state=available&limit={limit}", ctx.hq)
    assert_error(status, body, 422, "validation_error", ["query", "limit"])


@pytest.mark.parametrize("make_cursor", [
    pytest.param(lambda real: "abc!!", id="not base64"),
    pytest.param(lambda real: "bm90IGpzb24", id="base64 of non-JSON"),
    pytest.param(lambda real: _b64(["MCOUPONS", "COUPON"]), id="JSON list"),
    pytest.param(lambda real: real, id="another member's cursor"),
    pytest.param(lambda real: _b64({"gsi1pk": "ORG", "gsi1sk": "STORE#sh-001"}), id="another partition"),
])
def test_member_coupons_invalid_cursor_is_422(api, ctx, two_coupon_member, make_cursor):  # noqa: ANN001
    status, page = api.get(f"/members/{two_coupon_member}/coupons?state=available&limit=1", ctx.hq)
    assert status == 200 and page["next_cursor"], page
    victim = ctx.member()["member_id"]
    ctx.coupon(victim)
    cursor = make_cursor(page["next_cursor"])
    status, body = api.get(f"/members/{victim}/coupons?state=available&cursor={cursor}", ctx.hq)
    assert_error(status, body, 422, "invalid_cursor", ["query", "cursor"])


def test_member_coupons_oversized_cursor_is_422(api, ctx, two_coupon_member):  # noqa: ANN001
    status, body = api.get(f"/members/{two_coupon_member}/coupons?state=available&cursor={'A' * 3000}", ctx.hq)
    assert_error(status, body, 422, None, ["query", "cursor"])


# BUG (chalicelib/store/coupons.py member_coupons: decode_cursor checks only gsi1pk): the member's own cursor,
# taken under another state, is outside the query's key range; DynamoDB refuses it (ValidationException: 500).
def test_member_coupons_cursor_of_another_state_is_422(api, ctx, two_coupon_member):  # noqa: ANN001
    for code, _ in ctx.coupons_of(two_coupon_member):
        assert api.post(f"/coupons/{code}/redeem", _redeem_body(two_coupon_member), ctx.staff)[0] == 201
    status, used = api.get(f"/members/{two_coupon_member}/coupons?state=used&limit=1", ctx.hq)
    assert status == 200 and used["next_cursor"], used
    ctx.coupon(two_coupon_member)
    status, body = api.get(f"/members/{two_coupon_member}/coupons?state=available&cursor={used['next_cursor']}",
                           ctx.hq)
    assert_error(status, body, 422, "invalid_cursor", ["query", "cursor"])


# Regression: with no state the key condition's lower bound was "" (DynamoDB refuses an empty key value: 500).
def test_member_coupons_without_a_state_lists_every_state(api, ctx, two_coupon_member):  # noqa: ANN001
    used, _ = ctx.coupons_of(two_coupon_member)[0]
    assert api.post(f"/coupons/{used}/redeem", _redeem_body(two_coupon_member), ctx.staff)[0] == 201
    status, page = api.get(f"/members/{two_coupon_member}/coupons", ctx.hq)
    assert status == 200, page
    held = ctx.coupons_of(two_coupon_member)
    assert {s for _, s in held} == {"available", "used"}
    assert sorted((c["code"], c["state"]) for c in page["items"]) == sorted(held)


# ---- the knowledge base: PUT /kb/articles/{id}, GET /kb/articles/{id}, GET /kb/articles?q=&category=&limit= ------
def _article(**change: Any) -> dict[str, Any]:
    return {"category": "faq", "title": "退款须知", "tags": ["退款"], "body": "请携带小票到门店办理。", **change}


@pytest.mark.parametrize(("change", "loc"), [
    pytest.param({"category": None}, ["body", "category"], id="null category"),
    pytest.param({"category": "FAQ"}, ["body", "category"], id="upper-case category"),
    pytest.param({"category": "退款"}, ["body", "category"], id="category not a slug"),
    pytest.param({"category": "x" * 33}, ["body", "category"], id="33-char category"),
    pytest.param({"title": ""}, ["body", "title"], id="empty title"),
    pytest.param({"title": "   "}, ["body", "title"], id="blank title"),
    pytest.param({"title": "标" * 121}, ["body", "title"], id="121-char title"),
    pytest.param({"title": "一行\n两行"}, ["body", "title"], id="newline in title"),
    pytest.param({"title": "\u202e反转"}, ["body", "title"], id="bidi override in title"),
    pytest.param({"body": ""}, ["body", "body"], id="empty body"),
    pytest.param({"body": "\u0000"}, ["body", "body"], id="NUL body"),
    pytest.param({"body": "x" * 20_001}, ["body", "body"], id="20,001-char body"),
    pytest.param({"tags": "退款"}, ["body", "tags"], id="tags not a list"),
    pytest.param({"tags": [""]}, ["body", "tags", 0], id="empty tag"),
    pytest.param({"tags": ["标" * 21]}, ["body", "tags", 0], id="21-char tag"),
    pytest.param({"tags": [f"t{n}" for n in range(11)]}, ["body", "tags"], id="11 tags"),
    pytest.param({"base_version": -1}, ["body", "base_version"], id="negative base_version"),
    pytest.param({"base_version": "1"}, ["body", "base_version"], id="base_version as text"),
    pytest.param({"base_version": 1.5}, ["body", "base_version"], id="fractional base_version"),
    pytest.param({"version": 9}, ["body", "version"], id="unknown field"),
])
def test_put_article_rejects_invalid_body_and_keeps_the_article(api, ctx, nothing_written, change, loc):  # noqa: ANN001
    article_id = ctx.article()
    before = api.get(f"/kb/articles/{article_id}", ctx.hq)
    with nothing_written():
        status, body = api.put(f"/kb/articles/{article_id}", _article(**change), ctx.hq)
    assert_error(status, body, 422, "validation_error", loc)
    assert api.get(f"/kb/articles/{article_id}", ctx.hq) == before


@pytest.mark.parametrize("field", ["category", "title", "body"])
def test_put_article_requires_field(api, ctx, nothing_written, field):  # noqa: ANN001
    body = _article()
    del body[field]
    with nothing_written():
        status, answer = api.put(f"/kb/articles/bi-{uuid.uuid4().hex[:10]}", body, ctx.hq)
    assert_error(status, answer, 422, "validation_error", ["body", field])


def test_put_article_at_the_bounds_is_accepted(api, ctx):  # noqa: ANN001
    at_bounds = _article(category="x" * 32, title="标" * 120, body="字" * 20_000, tags=[f"标签{n}" for n in range(10)])
    # 20,000 CJK characters fit the 64 KB request as UTF-8 (3 bytes each), not as \u escapes (6 each)
    raw = json.dumps(at_bounds, ensure_ascii=False)
    status, view = api.put(f"/kb/articles/{'a' * 64}", raw, ctx.hq)
    assert status in (200, 201) and view["body"] == "字" * 20_000, view


def test_stale_base_version_is_409_and_keeps_the_article(api, ctx, nothing_written):  # noqa: ANN001
    article_id = ctx.article()
    with nothing_written():
        status, body = api.put(f"/kb/articles/{article_id}", _article(title="新", base_version=2), ctx.hq)
    assert_error(status, body, 409, "version_conflict")
    assert body["details"] == {"base_version": 2, "current_version": 1}


@pytest.mark.parametrize("article_id", [pytest.param("a" * 65, id="65 chars"), pytest.param("a.b", id="dot"),
                                        pytest.param("a%20b", id="encoded space"), pytest.param("文章", id="CJK")])
@pytest.mark.parametrize("method", ["PUT", "GET"])
def test_malformed_article_id_is_404_and_writes_nothing(api, ctx, nothing_written, method, article_id):  # noqa: ANN001
    with nothing_written():
        status, body = api.call(method, f"/kb/articles/{article_id}", _article() if method == "PUT" else None,
                                ctx.hq)
    assert_error(status, body, 404, "article_not_found")


def test_unknown_article_is_404(api, ctx):  # noqa: ANN001
    status, body = api.get(f"/kb/articles/bi-{uuid.uuid4().hex[:10]}", ctx.staff)
    assert_error(status, body, 404, "article_not_found")


@pytest.mark.parametrize(("query", "code", "loc"), [
    pytest.param("", "validation_error", ["query"], id="neither q nor category"),
    pytest.param("limit=5", "validation_error", ["query"], id="only a limit"),
    pytest.param("q=", "validation_error", ["query", "q"], id="empty q"),
    pytest.param("q=" + "字" * 65, "validation_error", ["query", "q"], id="65-char q"),
    pytest.param("category=FAQ", "validation_error", ["query", "category"], id="upper-case category"),
    pytest.param("category=a%23b", "validation_error", ["query", "category"], id="category with #"),
    pytest.param("q=x&limit=0", "validation_error", ["query", "limit"], id="limit 0"),
    pytest.param("q=x&limit=21", "validation_error", ["query", "limit"], id="limit 21"),
    pytest.param("q=x&limit=ten", "validation_error", ["query", "limit"], id="limit not a number"),
    pytest.param("q=%EF%BC%81%EF%BC%9F", "no_search_terms", ["query", "q"], id="only punctuation"),
    pytest.param("q=%F0%9F%98%80", "no_search_terms", ["query", "q"], id="only an emoji"),
])
def test_kb_search_rejects_invalid_query(api, ctx, query, code, loc):  # noqa: ANN001
    status, body = api.get(f"/kb/articles?{query}", ctx.staff)
    assert_error(status, body, 422, code, loc)


def test_kb_search_at_the_bounds_is_accepted(api, ctx):  # noqa: ANN001
    word = f"bi{uuid.uuid4().hex[:10]}"
    article_id = ctx.article(title=f"{word} 说明")
    for query in (f"q={word}&limit=1", f"q={word}%20" + "字" * (63 - len(word)) + "&limit=20", "category=faq&limit=20",
                  f"q={word}&category=faq"):
        status, answer = api.get(f"/kb/articles?{query}", ctx.staff)
        assert status == 200, (query, answer)
        assert "category=faq&limit=20" == query or [a["article_id"] for a in answer["items"]][:1] == [article_id]


# ---- service tickets: POST /tickets, actions and tasks, queues and agents, routing rules, the task list -------
TICKET_INVALID = [
    pytest.param({"channel": "wechat"}, ["body", "channel"], id="unknown channel"),
    pytest.param({"channel": None}, ["body", "channel"], id="null channel"),
    pytest.param({"type": "COMPLAINT"}, ["body", "type"], id="upper-case type"),
    pytest.param({"subject": ""}, ["body", "subject"], id="empty subject"),
    pytest.param({"subject": "题" * 201}, ["body", "subject"], id="201-char subject"),
    pytest.param({"description": ""}, ["body", "description"], id="empty description"),
    pytest.param({"description": "x" * 5_001}, ["body", "description"], id="5,001-char description"),
    pytest.param({"store_id": "sh 001"}, ["body", "store_id"], id="malformed store_id"),
    pytest.param({"member_id": "abc"}, ["body", "member_id"], id="malformed member_id"),
    pytest.param({"order_id": "o/1"}, ["body", "order_id"], id="malformed order_id"),
    pytest.param({"priority": "asap"}, ["body", "priority"], id="unknown priority"),
    pytest.param({"ticket_id": "t" * 65}, ["body", "ticket_id"], id="65-char ticket_id"),
    pytest.param({"ticket_id": 7}, ["body", "ticket_id"], id="numeric ticket_id"),
    pytest.param({"status": "closed"}, ["body", "status"], id="unknown field status"),
    pytest.param({"queue_id": "hq-service"}, ["body", "queue_id"], id="unknown field queue_id"),
]


@pytest.mark.parametrize(("change", "loc"), TICKET_INVALID)
def test_open_ticket_rejects_invalid_body_and_opens_nothing(api, ctx, nothing_written, change, loc):  # noqa: ANN001
    body = _ticket_body(**change)
    with nothing_written():
        status, answer = api.post("/tickets", body, ctx.hq)
    assert_error(status, answer, 422, "validation_error", loc)


@pytest.mark.parametrize("field", ["ticket_id", "channel", "type", "subject", "description"])
def test_open_ticket_requires_field(api, ctx, nothing_written, field):  # noqa: ANN001
    body = _ticket_body()
    del body[field]
    with nothing_written():
        status, answer = api.post("/tickets", body, ctx.hq)
    assert_error(status, answer, 422, "validation_error", ["body", field])


@pytest.mark.parametrize(("change", "who", "status_code", "code", "loc"), [
    pytest.param({"store_id": "nowhere"}, "hq", 422, "unknown_store", ["body", "store_id"], id="unknown store"),
    pytest.param({"store_id": None}, "staff", 422, "store_required", ["body", "store_id"], id="staff without store"),
    pytest.param({"order_id": UNKNOWN_ORDER}, "hq", 422, "unknown_order", ["body", "order_id"], id="unknown order"),
    pytest.param({"member_id": UNKNOWN_MEMBER}, "hq", 404, "member_not_found", None, id="unknown member"),
])
def test_open_ticket_about_what_is_not_there_is_refused(api, ctx, nothing_written, change, who,  # noqa: ANN001
                                                         status_code, code, loc):
    body = _ticket_body(**change)
    with nothing_written():
        status, answer = api.post("/tickets", body, getattr(ctx, who))
    assert_error(status, answer, status_code, code, loc)


def test_open_ticket_about_another_members_order_is_422(api, ctx, nothing_written):  # noqa: ANN001
    m, other = ctx.member(), ctx.member()
    order_id = ctx.order(other["member_id"])["order_id"]
    with nothing_written():
        status, answer = api.post("/tickets", _ticket_body(member_id=m["member_id"], order_id=order_id), ctx.hq)
    assert_error(status, answer, 422, "order_not_members", ["body", "order_id"])


def test_ticket_id_reused_with_another_body_is_409_and_opens_nothing(api, ctx, nothing_written):  # noqa: ANN001
    body = _ticket_body()
    assert api.post("/tickets", body, ctx.staff)[0] == 201
    before = _ticket_view(ctx, body["ticket_id"])
    with nothing_written():
        status, answer = api.post("/tickets", {**body, "subject": "别的事"}, ctx.staff)
        assert api.post("/tickets", body, ctx.staff)[0] == 200  # the same body again: a replay
    assert_error(status, answer, 409, "ticket_id_taken")
    assert _ticket_view(ctx, body["ticket_id"]) == before


ACTION_INVALID = [
    pytest.param({"type": "escalate"}, ["body", "type"], id="unknown type"),
    pytest.param({"type": "task_added"}, ["body", "type"], id="recorded-only type"),
    pytest.param({"body": None}, ["body"], id="reply without body"),
    pytest.param({"body": ""}, ["body", "body"], id="empty reply"),
    pytest.param({"body": "x" * 5_001}, ["body", "body"], id="5,001-char reply"),
    pytest.param({"score": 5}, ["body"], id="reply with a score"),
    pytest.param({"article_ids": ["a b"]}, ["body", "article_ids", 0], id="malformed article id"),
    pytest.param({"article_ids": [f"a{n}" for n in range(11)]}, ["body", "article_ids"], id="11 articles"),
    pytest.param({"type": "comment", "article_ids": ["a1"]}, ["body"], id="comment citing an article"),
    pytest.param({"type": "rate", "body": None, "score": 0}, ["body", "score"], id="score 0"),
    pytest.param({"type": "rate", "body": None, "score": 6}, ["body", "score"], id="score 6"),
    pytest.param({"type": "rate", "body": None, "score": "5"}, ["body", "score"], id="score as text"),
    pytest.param({"type": "rate", "body": None, "score": 4.5}, ["body", "score"], id="fractional score"),
    pytest.param({"type": "assign", "body": None}, ["body"], id="assign without assignee"),
    pytest.param({"type": "transfer", "body": None, "queue_id": "HQ"}, ["body", "queue_id"], id="malformed queue"),
    pytest.param({"type": "hold", "body": None, "assignee": "x"}, ["body"], id="hold with an assignee"),
    pytest.param({"action_id": "a/1"}, ["body", "action_id"], id="malformed action_id"),
    pytest.param({"by": "hq-1"}, ["body", "by"], id="unknown field by"),
]


def _action(**change: Any) -> dict[str, Any]:
    body = {"action_id": f"bi-{uuid.uuid4().hex[:10]}", "type": "reply", "body": "您好", **change}
    return {k: v for k, v in body.items() if v is not None}


@pytest.mark.parametrize(("change", "loc"), ACTION_INVALID)
def test_action_rejects_invalid_body_and_records_nothing(api, ctx, nothing_written, change, loc):  # noqa: ANN001
    ticket_id = _ticket(ctx)
    before = _ticket_view(ctx, ticket_id)
    with nothing_written():
        status, answer = api.post(f"/tickets/{ticket_id}/actions", _action(**change), ctx.hq)
    assert_error(status, answer, 422, "validation_error", loc)
    assert _ticket_view(ctx, ticket_id) == before


@pytest.mark.parametrize(("change", "status_code", "code", "loc"), [
    pytest.param({"type": "transfer", "body": None, "queue_id": "nowhere"}, 422, "unknown_queue",
                 ["body", "queue_id"], id="transfer to an unknown queue"),
    pytest.param({"type": "transfer", "body": None, "queue_id": "store-nowhere"}, 422, "unknown_queue",
                 ["body", "queue_id"], id="transfer to the queue of an unknown store"),
    pytest.param({"type": "transfer", "body": None, "queue_id": "store-sh-001"}, 422, "same_queue",
                 ["body", "queue_id"], id="transfer to its own queue"),
    pytest.param({"type": "assign", "body": None, "assignee": "nobody-here"}, 422, "not_an_agent",
                 ["body", "assignee"], id="assign to someone not an agent"),
    pytest.param({"type": "resume", "body": None}, 409, "action_not_allowed", None, id="resume a new ticket"),
    pytest.param({"type": "reopen", "body": None}, 409, "action_not_allowed", None, id="reopen a new ticket"),
    pytest.param({"type": "rate", "body": None, "score": 5}, 409, "action_not_allowed", None,
                 id="rate a new ticket"),
])
def test_action_the_ticket_cannot_take_is_refused_and_records_nothing(api, ctx, tokens, nothing_written,  # noqa: ANN001
                                                                      change, status_code, code, loc):
    member_id = ctx.member()["member_id"]
    ticket_id = _ticket(ctx, member_id=member_id)
    before = _ticket_view(ctx, ticket_id)
    who = tokens.member(member_id) if change.get("type") == "rate" else ctx.hq
    with nothing_written():
        status, answer = api.post(f"/tickets/{ticket_id}/actions", _action(**change), who)
    assert_error(status, answer, status_code, code, loc)
    assert _ticket_view(ctx, ticket_id) == before


def test_action_id_reused_with_another_body_is_409_and_records_nothing(api, ctx, nothing_written):  # noqa: ANN001
    ticket_id = _ticket(ctx)
    body = _action(type="comment", body="内部备注")
    assert api.post(f"/tickets/{ticket_id}/actions", body, ctx.hq)[0] == 201
    before = _ticket_view(ctx, ticket_id)
    with nothing_written():
        status, answer = api.post(f"/tickets/{ticket_id}/actions", {**body, "body": "别的"}, ctx.hq)
        assert api.post(f"/tickets/{ticket_id}/actions", body, ctx.hq)[0] == 200  # the same body: a replay
    assert_error(status, answer, 409, "action_id_taken")
    assert _ticket_view(ctx, ticket_id) == before


TASK_INVALID = [
    pytest.param({"store_id": "sh 002"}, ["body", "store_id"], id="malformed store_id"),
    pytest.param({"title": ""}, ["body", "title"], id="empty title"),
    pytest.param({"title": "题" * 201}, ["body", "title"], id="201-char title"),
    pytest.param({"due_at": "2030-01-01T09:00:00"}, ["body", "due_at"], id="due_at without offset"),
    pytest.param({"due_at": "2030-02-30T09:00:00+08:00"}, ["body", "due_at"], id="30 February"),
    pytest.param({"due_at": 1893459600}, ["body", "due_at"], id="due_at as a number"),
    pytest.param({"assignee": ""}, ["body", "assignee"], id="empty assignee"),
    pytest.param({"task_id": "t" * 65}, ["body", "task_id"], id="65-char task_id"),
    pytest.param({"state": "done"}, ["body", "state"], id="unknown field state"),
]


@pytest.mark.parametrize(("change", "loc"), TASK_INVALID)
def test_ticket_task_rejects_invalid_body_and_adds_nothing(api, ctx, nothing_written, change, loc):  # noqa: ANN001
    ticket_id = _ticket(ctx)
    with nothing_written():
        status, answer = api.post(f"/tickets/{ticket_id}/tasks", _task_body(**change), ctx.hq)
    assert_error(status, answer, 422, "validation_error", loc)


@pytest.mark.parametrize("field", ["task_id", "store_id", "title", "due_at"])
def test_ticket_task_requires_field(api, ctx, nothing_written, field):  # noqa: ANN001
    ticket_id = _ticket(ctx)
    body = _task_body()
    del body[field]
    with nothing_written():
        status, answer = api.post(f"/tickets/{ticket_id}/tasks", body, ctx.hq)
    assert_error(status, answer, 422, "validation_error", ["body", field])


def test_ticket_task_that_cannot_be_added_is_refused_and_adds_nothing(api, ctx, nothing_written):  # noqa: ANN001
    ticket_id = _ticket(ctx)
    task = _task_body()
    assert api.post(f"/tickets/{ticket_id}/tasks", task, ctx.hq)[0] == 201
    resolved = _ticket(ctx)
    assert api.post(f"/tickets/{resolved}/actions", _action(type="resolve", body=None), ctx.hq)[0] == 201
    before = (_ticket_view(ctx, ticket_id), _ticket_view(ctx, resolved))
    with nothing_written():
        status, answer = api.post(f"/tickets/{ticket_id}/tasks", _task_body(store_id="nowhere"), ctx.hq)
        assert_error(status, answer, 422, "unknown_store", ["body", "store_id"])
        status, answer = api.post(f"/tickets/{ticket_id}/tasks", {**task, "title": "别的"}, ctx.hq)
        assert_error(status, answer, 409, "task_id_taken")
        status, answer = api.post(f"/tickets/{resolved}/tasks", _task_body(), ctx.hq)
        assert_error(status, answer, 409, "action_not_allowed")
    assert (_ticket_view(ctx, ticket_id), _ticket_view(ctx, resolved)) == before


@pytest.mark.parametrize(("method", "template", "make_body"), [
    pytest.param("GET", "/tickets/{}", lambda: None, id="GET ticket"),
    pytest.param("POST", "/tickets/{}/actions", lambda: _action(), id="POST action"),
    pytest.param("POST", "/tickets/{}/tasks", lambda: _task_body(), id="POST task"),
])
@pytest.mark.parametrize("ticket_id", [pytest.param("t" * 65, id="65 chars"), pytest.param("t%201", id="encoded space"),
                                       pytest.param("%E5%8D%95", id="encoded CJK"),
                                       pytest.param("t%2F1", id="encoded slash"),
                                       pytest.param("bi-nobody-opened-this", id="well-formed unknown")])
def test_malformed_or_unknown_ticket_id_is_404(api, ctx, nothing_written, method, template, make_body,  # noqa: ANN001
                                               ticket_id):
    with nothing_written():
        status, body = api.call(method, template.format(ticket_id), make_body(), ctx.hq)
    assert_error(status, body, 404, "ticket_not_found")


@pytest.mark.parametrize(("change", "loc"), [
    pytest.param({"kind": "store"}, ["path", "queue_id"], id="a store queue"),
    pytest.param({"kind": "team"}, ["body", "kind"], id="unknown kind"),
    pytest.param({"kind": "region"}, ["body"], id="region queue without its region"),
    pytest.param({"region_id": "east"}, ["body"], id="hq queue with a region"),
    pytest.param({"name": ""}, ["body", "name"], id="empty name"),
    pytest.param({"name": "名" * 101}, ["body", "name"], id="101-char name"),
    pytest.param({"agents": ["hq-1"]}, ["body", "agents"], id="unknown field"),
])
def test_put_queue_rejects_invalid_body_and_keeps_the_queue(api, ctx, nothing_written, change, loc):  # noqa: ANN001
    case = _case_put_queue(ctx)
    with nothing_written():
        status, body = api.put(case.path, {**case.valid, **change}, ctx.hq)
    assert_error(status, body, 422, None, loc)
    case.unchanged()


@pytest.mark.parametrize("queue_id", [pytest.param("store-sh-001", id="a store's queue"),
                                      pytest.param("store-nowhere", id="an unknown store's queue")])
def test_put_queue_never_defines_a_store_queue(api, ctx, nothing_written, queue_id):  # noqa: ANN001
    with nothing_written():
        status, body = api.put(f"/queues/{queue_id}", {"kind": "hq", "name": "x"}, ctx.hq)
    assert_error(status, body, 422, "implicit_queue", ["path", "queue_id"])


@pytest.mark.parametrize("method", ["PUT queue", "PUT agent"])
@pytest.mark.parametrize("queue_id", [pytest.param("Q1", id="upper case"), pytest.param("q" * 49, id="49 chars"),
                                      pytest.param("-q", id="leading hyphen"),
                                      pytest.param("q%201", id="encoded space"),
                                      pytest.param("%E9%98%9F", id="encoded CJK")])
def test_malformed_queue_id_is_404_and_writes_nothing(api, ctx, nothing_written, method, queue_id):  # noqa: ANN001
    path, body = ((f"/queues/{queue_id}", {"kind": "hq", "name": "x"}) if method == "PUT queue"
                  else (f"/queues/{queue_id}/agents/me", {"available": True}))
    with nothing_written():
        status, answer = api.put(path, body, ctx.hq)
    assert_error(status, answer, 404, "queue_not_found")


@pytest.mark.parametrize("queue_id", ["bi-nobody-defined-this", "store-nowhere"])
def test_agent_of_an_unknown_queue_is_404(api, ctx, nothing_written, queue_id):  # noqa: ANN001
    with nothing_written():
        status, body = api.put(f"/queues/{queue_id}/agents/me", {"available": True}, ctx.hq)
    assert_error(status, body, 404, "queue_not_found")


@pytest.mark.parametrize("body", [
    pytest.param({"available": "true"}, id="text"), pytest.param({"available": 1}, id="number"),
    pytest.param({"available": None}, id="null"), pytest.param({}, id="missing"),
    pytest.param({"available": True, "open": 0}, id="unknown field"),
])
def test_availability_rejects_invalid_body(api, ctx, nothing_written, body):  # noqa: ANN001
    case = _case_availability(ctx)
    with nothing_written():
        status, answer = api.put(case.path, body, case.token)
    assert_error(status, answer, 422, "validation_error")
    case.unchanged()


RULE = {"name": "退款", "types": ["refund"], "queue_id": "{store}"}


@pytest.mark.parametrize(("rules", "version", "loc"), [
    pytest.param("all", None, ["body", "rules"], id="rules not a list"),
    pytest.param([{**RULE, "types": ["refunds"]}], None, ["body", "rules", 0, "types", 0], id="unknown type"),
    pytest.param([{**RULE, "channels": ["fax"]}], None, ["body", "rules", 0, "channels", 0], id="unknown channel"),
    pytest.param([{**RULE, "assignment": "random"}], None, ["body", "rules", 0, "assignment"], id="unknown assignment"),
    pytest.param([{**RULE, "queue_id": "HQ"}], None, ["body", "rules", 0, "queue_id"], id="malformed queue"),
    pytest.param([{**RULE, "name": ""}], None, ["body", "rules", 0, "name"], id="empty name"),
    pytest.param([{**RULE, "when": "always"}], None, ["body", "rules", 0, "when"], id="unknown rule field"),
    pytest.param([{k: v for k, v in RULE.items() if k != "queue_id"}], None, ["body", "rules", 0, "queue_id"],
                 id="rule without a queue"),
    pytest.param([RULE] * 201, None, ["body", "rules"], id="201 rules"),
    pytest.param([RULE], -1, ["body", "version"], id="negative version"),
    pytest.param([RULE], "1", ["body", "version"], id="version as text"),
    pytest.param([{**RULE, "queue_id": "bi-nobody-defined-this"}], None, ["body", "rules[0].queue_id"],
                 id="unknown queue"),
])
def test_put_routing_rules_rejects_invalid_rules_and_keeps_them(api, ctx, nothing_written, rules, version,  # noqa: ANN001
                                                                loc):
    before = ctx.config("/routing-rules")
    body = {"rules": rules} if version is None else {"rules": rules, "version": version}
    with nothing_written():
        status, answer = api.put("/routing-rules", body, ctx.hq)
    assert_error(status, answer, 422, None, loc)
    assert ctx.config("/routing-rules") == before


def test_put_routing_rules_of_a_stale_version_is_409_and_keeps_them(api, ctx, nothing_written):  # noqa: ANN001
    before = ctx.config("/routing-rules")
    with nothing_written():
        status, answer = api.put("/routing-rules", {"rules": [RULE], "version": before["version"] + 1}, ctx.hq)
    assert_error(status, answer, 409, "version_conflict")
    assert ctx.config("/routing-rules") == before


@pytest.mark.parametrize(("path", "body", "loc"), [
    pytest.param("complete", {"outcome": "finished"}, ["body", "outcome"], id="complete: unknown outcome"),
    pytest.param("complete", {}, ["body", "outcome"], id="complete: no outcome"),
    pytest.param("complete", {"outcome": "done", "note": "x" * 2_001}, ["body", "note"], id="complete: long note"),
    pytest.param("complete", {"outcome": "done", "at": "now"}, ["body", "at"], id="complete: unknown field"),
    pytest.param("assign", {"assignee": ""}, ["body", "assignee"], id="assign: empty assignee"),
    pytest.param("assign", {"assignee": "x" * 201}, ["body", "assignee"], id="assign: 201-char assignee"),
    pytest.param("assign", {}, ["body", "assignee"], id="assign: no assignee"),
    pytest.param("assign", {"assignee": 7}, ["body", "assignee"], id="assign: numeric assignee"),
])
def test_task_rejects_invalid_body_and_keeps_the_task(api, ctx, nothing_written, path, body, loc):  # noqa: ANN001
    ticket_id, task_id = _ticket_task(ctx)
    before = _ticket_view(ctx, ticket_id)
    with nothing_written():
        status, answer = api.post(f"/tasks/{task_id}/{path}", body, ctx.staff)
    assert_error(status, answer, 422, "validation_error", loc)
    assert _ticket_view(ctx, ticket_id) == before


@pytest.mark.parametrize("path", ["complete", "assign"])
@pytest.mark.parametrize("task_id", [pytest.param("t" * 65, id="65 chars"), pytest.param("t%201", id="encoded space"),
                                     pytest.param("bi-nobody-made-this", id="well-formed unknown")])
def test_malformed_or_unknown_task_id_is_404(api, ctx, nothing_written, path, task_id):  # noqa: ANN001
    body = {"outcome": "done"} if path == "complete" else {"assignee": "clerk-9"}
    with nothing_written():
        status, answer = api.post(f"/tasks/{task_id}/{path}", body, ctx.hq)
    assert_error(status, answer, 404, "task_not_found")


def test_a_done_task_is_409_for_another_outcome_or_an_assignee(api, ctx, nothing_written):  # noqa: ANN001
    ticket_id, task_id = _ticket_task(ctx)
    assert api.post(f"/tasks/{task_id}/complete", {"outcome": "done"}, ctx.staff)[0] == 200
    before = _ticket_view(ctx, ticket_id)
    with nothing_written():
        status, answer = api.post(f"/tasks/{task_id}/complete", {"outcome": "failed"}, ctx.staff)
        assert_error(status, answer, 409, "task_done")
        status, answer = api.post(f"/tasks/{task_id}/assign", {"assignee": "clerk-9"}, ctx.staff)
        assert_error(status, answer, 409, "task_done")
        assert api.post(f"/tasks/{task_id}/complete", {"outcome": "done"}, ctx.staff)[0] == 200  # a replay
    assert _ticket_view(ctx, ticket_id) == before


@pytest.mark.parametrize(("query", "status_code", "code", "loc"), [
    pytest.param("", 422, "unsupported_filter", ["query"], id="no filter"),
    pytest.param("status=new", 422, "unsupported_filter", ["query"], id="only a status"),
    pytest.param("queue=store-sh-001&store_id=sh-001", 422, "unsupported_filter", ["query"], id="queue and store"),
    pytest.param("store_id=sh-001&assignee=me", 422, "unsupported_filter", ["query"], id="store and assignee"),
    pytest.param("assignee=hq-1", 422, "validation_error", ["query", "assignee"], id="assignee not me"),
    pytest.param("queue=store-sh-001&status=done", 422, "validation_error", ["query", "status"], id="unknown status"),
    pytest.param("queue=Store-SH", 422, "validation_error", ["query", "queue"], id="malformed queue"),
    pytest.param("store_id=sh%20001", 422, "validation_error", ["query", "store_id"], id="malformed store"),
    pytest.param("queue=store-sh-001&limit=0", 422, "validation_error", ["query", "limit"], id="limit 0"),
    pytest.param("queue=store-sh-001&limit=101", 422, "validation_error", ["query", "limit"], id="limit 101"),
    pytest.param("queue=store-sh-001&limit=1.5", 422, "validation_error", ["query", "limit"], id="fractional limit"),
    pytest.param("queue=store-sh-001&cursor=abc!!", 422, "invalid_cursor", ["query", "cursor"], id="cursor not b64"),
    pytest.param("queue=store-sh-001&cursor=" + "A" * 3000, 422, "validation_error", ["query", "cursor"],
                 id="oversized cursor"),
    pytest.param("queue=store-sh-001&cursor=bm90IGpzb24", 422, "invalid_cursor", ["query", "cursor"],
                 id="cursor of no listing"),
    pytest.param("queue=bi-nobody-defined-this", 404, "queue_not_found", None, id="unknown queue"),
    pytest.param("store_id=nowhere", 404, "store_not_found", None, id="unknown store"),
])
def test_ticket_list_rejects_invalid_query(api, ctx, query, status_code, code, loc):  # noqa: ANN001
    status, body = api.get(f"/tickets?{query}", ctx.hq)
    assert_error(status, body, status_code, code, loc)


def _cursor_of(api: Any, path: str, token: str) -> str:
    status, page = api.get(path, token)
    assert status == 200 and page["next_cursor"], page
    return page["next_cursor"]


def test_ticket_list_cursor_pages_and_is_valid_only_for_its_listing(api, ctx):  # noqa: ANN001
    for _ in range(2):
        _ticket(ctx)
    cursor = _cursor_of(api, "/tickets?queue=store-sh-001&limit=1", ctx.hq)
    status, page = api.get(f"/tickets?queue=store-sh-001&limit=1&cursor={cursor}", ctx.hq)
    assert status == 200 and len(page["items"]) == 1, page
    for other in ("queue=store-sh-001&status=closed", "store_id=sh-001", "queue=hq-service"):
        status, body = api.get(f"/tickets?{other}&cursor={cursor}", ctx.hq)
        assert_error(status, body, 422, "invalid_cursor", ["query", "cursor"])


def test_member_tickets_reject_invalid_query_and_unknown_members(api, ctx, tokens):  # noqa: ANN001
    member_id = ctx.member()["member_id"]
    for _ in range(2):
        _ticket(ctx, member_id=member_id)
    cursor = _cursor_of(api, f"/members/{member_id}/tickets?limit=1", ctx.hq)
    status, page = api.get(f"/members/{member_id}/tickets?limit=1&cursor={cursor}", ctx.hq)
    assert status == 200 and len(page["items"]) == 1, page
    other = ctx.member()["member_id"]
    for query, code in ((f"cursor={cursor}", "invalid_cursor"), ("cursor=abc!!", "invalid_cursor"),
                        ("limit=0", "validation_error"), ("limit=101", "validation_error")):
        status, body = api.get(f"/members/{other if 'cursor=' in query else member_id}/tickets?{query}", ctx.hq)
        assert_error(status, body, 422, code, ["query"])
    for bad in ("abc", UNKNOWN_MEMBER.lower(), UNKNOWN_MEMBER):
        status, body = api.get(f"/members/{bad}/tickets", ctx.hq)
        assert_error(status, body, 404, "member_not_found")


@pytest.mark.parametrize(("query", "code", "loc"), [
    pytest.param("state=late", "validation_error", ["query", "state"], id="unknown state"),
    pytest.param("limit=0", "validation_error", ["query", "limit"], id="limit 0"),
    pytest.param("limit=101", "validation_error", ["query", "limit"], id="limit 101"),
    pytest.param("cursor=abc!!", "invalid_cursor", ["query", "cursor"], id="cursor not base64"),
])
def test_store_tasks_reject_invalid_query(api, ctx, query, code, loc):  # noqa: ANN001
    status, body = api.get(f"/stores/sh-001/tasks?{query}", ctx.staff)
    assert_error(status, body, 422, code, loc)


def test_store_tasks_cursor_pages_and_is_valid_only_for_its_listing(api, ctx):  # noqa: ANN001
    for _ in range(2):
        _ticket_task(ctx)
    cursor = _cursor_of(api, "/stores/sh-001/tasks?limit=1", ctx.staff)
    status, page = api.get(f"/stores/sh-001/tasks?limit=1&cursor={cursor}", ctx.staff)
    assert status == 200 and len(page["items"]) == 1, page
    for other in ("/stores/sh-001/tasks?state=done", "/stores/sh-002/tasks"):
        status, body = api.get(f"{other}{'&' if '?' in other else '?'}cursor={cursor}", ctx.hq)
        assert_error(status, body, 422, "invalid_cursor", ["query", "cursor"])


@pytest.mark.parametrize("store_id", [pytest.param("x" * 41, id="41 chars"), pytest.param("sh.001", id="dot"),
                                      pytest.param("nowhere", id="well-formed unknown")])
def test_tasks_of_a_malformed_or_unknown_store_are_404(api, ctx, store_id):  # noqa: ANN001
    status, body = api.get(f"/stores/{store_id}/tasks", ctx.hq)
    assert_error(status, body, 404, "store_not_found")


# ---- SLA: PUT /sla-policies, GET /notifications/me, POST /notifications/me/read, GET /tickets?sla= ---------
SLA_RULE = {"priority": "urgent", "first_response": {"minutes": 10, "clock": "wall"},
            "resolution": {"minutes": 120, "clock": "business"}}


def _sla_rule(**change: Any) -> dict[str, Any]:
    return {**SLA_RULE, **change}


def _target(**change: Any) -> dict[str, Any]:
    return {"minutes": 30, "clock": "business", **change}


@pytest.mark.parametrize(("change", "loc"), [
    pytest.param({"rules": [SLA_RULE, SLA_RULE]}, ["body"], id="two rules for one case"),
    pytest.param({"rules": [SLA_RULE, _sla_rule(type=None)]}, ["body"], id="type null is the same case as absent"),
    pytest.param({"rules": [SLA_RULE] * 41}, ["body", "rules"], id="41 rules"),
    pytest.param({"rules": None}, ["body", "rules"], id="rules null"),
    pytest.param({"rules": SLA_RULE}, ["body", "rules"], id="rules an object"),
    pytest.param({"rules": [_sla_rule(priority="critical")]}, ["body", "rules", 0, "priority"], id="unknown priority"),
    pytest.param({"rules": [_sla_rule(type="other")]}, ["body", "rules", 0, "type"], id="unknown type"),
    pytest.param({"rules": [_sla_rule(first_response=_target(minutes=0))]},
                 ["body", "rules", 0, "first_response", "minutes"], id="0 minutes"),
    pytest.param({"rules": [_sla_rule(resolution=_target(minutes=525_601))]},
                 ["body", "rules", 0, "resolution", "minutes"], id="over a year"),
    pytest.param({"rules": [_sla_rule(first_response=_target(minutes="30"))]},
                 ["body", "rules", 0, "first_response", "minutes"], id="minutes as text"),
    pytest.param({"rules": [_sla_rule(first_response=_target(minutes=30.5))]},
                 ["body", "rules", 0, "first_response", "minutes"], id="fractional minutes"),
    pytest.param({"rules": [_sla_rule(first_response=_target(clock="calendar"))]},
                 ["body", "rules", 0, "first_response", "clock"], id="unknown clock"),
    pytest.param({"rules": [{k: v for k, v in SLA_RULE.items() if k != "resolution"}]},
                 ["body", "rules", 0, "resolution"], id="rule without resolution"),
    pytest.param({"rules": [_sla_rule(escalate_to="hq")]}, ["body", "rules", 0, "escalate_to"],
                 id="unknown rule field"),
    pytest.param({"rules": [], "probe": 1}, ["body", "probe"], id="unknown field"),
    pytest.param({"at_risk_pct": 0}, ["body", "at_risk_pct"], id="at risk at 0 %"),
    pytest.param({"at_risk_pct": 100}, ["body", "at_risk_pct"], id="at risk at 100 %"),
    pytest.param({"at_risk_pct": True}, ["body", "at_risk_pct"], id="at risk true"),
    pytest.param({"hq_after_minutes": 0}, ["body", "hq_after_minutes"], id="HQ after 0 minutes"),
    pytest.param({"version": -1}, ["body", "version"], id="negative version"),
    pytest.param({"version": "1"}, ["body", "version"], id="version as text"),
])
def test_put_sla_policy_rejects_invalid_body_and_keeps_the_policy(api, ctx, nothing_written, change, loc):  # noqa: ANN001
    before = ctx.config("/sla-policies")
    with nothing_written():
        status, body = api.put("/sla-policies", {"rules": [], **change}, ctx.hq)
    assert_error(status, body, 422, "validation_error", loc)
    assert ctx.config("/sla-policies") == before


def test_put_sla_policy_at_the_bounds_is_accepted_and_a_stale_version_is_409(api, ctx, nothing_written):  # noqa: ANN001
    before = ctx.config("/sla-policies")
    every_case = [{"priority": p, **({"type": t} if t else {}), "first_response": _target(minutes=1),
                   "resolution": _target(minutes=525_600, clock="wall")}
                  for p in ("low", "normal", "high", "urgent")
                  for t in (None, "complaint", "product", "service", "refund", "inquiry", "cross_store")]
    body = {"rules": every_case, "at_risk_pct": 99, "hq_after_minutes": 525_600, "version": before["version"]}
    status, saved = api.put("/sla-policies", body, ctx.hq)
    assert (status, saved["version"], len(saved["rules"]), saved["at_risk_pct"]) == \
        (200, before["version"] + 1, 28, 99), saved
    with nothing_written():
        status, answer = api.put("/sla-policies", {"rules": [], "version": before["version"]}, ctx.hq)
    assert_error(status, answer, 409, "version_conflict")
    assert ctx.config("/sla-policies") == saved
    status, back = api.put("/sla-policies", {"rules": [], "at_risk_pct": 1, "version": saved["version"]}, ctx.hq)
    assert (status, back["rules"], back["at_risk_pct"]) == (200, [], 1), back
    assert api.put("/sla-policies", {"rules": [], "version": back["version"]}, ctx.hq)[0] == 200  # the defaults


@pytest.mark.parametrize(("body", "loc"), [
    pytest.param({"notification_ids": []}, ["body", "notification_ids"], id="no ids"),
    pytest.param({"notification_ids": [f"n-{i}" for i in range(101)]}, ["body", "notification_ids"], id="101 ids"),
    pytest.param({"notification_ids": [""]}, ["body", "notification_ids", 0], id="empty id"),
    pytest.param({"notification_ids": ["n" * 201]}, ["body", "notification_ids", 0], id="201-char id"),
    pytest.param({"notification_ids": [7]}, ["body", "notification_ids", 0], id="numeric id"),
    pytest.param({"notification_ids": "n-1"}, ["body", "notification_ids"], id="a string, not a list"),
    pytest.param({}, ["body", "notification_ids"], id="missing ids"),
    pytest.param({"notification_ids": ["n-1"], "all": True}, ["body", "all"], id="unknown field"),
])
def test_mark_read_rejects_invalid_body_and_marks_nothing(api, ctx, tokens, nothing_written, body, loc):  # noqa: ANN001
    with nothing_written():
        status, answer = api.post("/notifications/me/read", body, tokens.staff(stores=["sh-001"]))
    assert_error(status, answer, 422, "validation_error", loc)


def test_mark_read_of_100_ids_of_200_chars_is_accepted(api, ctx, tokens):  # noqa: ANN001
    from chalicelib import bootstrap
    from chalicelib.store import keys

    sub = f"bi-{uuid.uuid4().hex[:10]}"
    ids = [f"{i:03d}{uuid.uuid4().hex}".ljust(200, "n") for i in range(100)]
    status, answer = api.post("/notifications/me/read", {"notification_ids": ids},
                              tokens.staff("region_manager", region="east", sub=sub))
    assert (status, answer) == (200, {"marked": 100}), answer
    assert all(bootstrap.db().get(keys.notification_read_key(sub, i)) is not None for i in (ids[0], ids[-1]))


@pytest.mark.parametrize("limit", ["0", "101", "-1", "abc", "1.5", ""])
def test_my_notifications_reject_an_invalid_limit(api, ctx, tokens, limit):  # noqa: ANN001
    status, body = api.get(f"/notifications/me?limit={limit}", tokens.staff(stores=["sh-001"]))
    assert_error(status, body, 422, "validation_error", ["query", "limit"])


def _b64_json(obj: Any) -> str:
    import base64

    return base64.urlsafe_b64encode(json.dumps(obj).encode()).decode().rstrip("=")


@pytest.mark.parametrize(("query", "code", "loc"), [
    pytest.param("sla=late", "validation_error", ["query", "sla"], id="unknown stage"),
    pytest.param("sla=", "validation_error", ["query", "sla"], id="empty stage"),
    pytest.param("sla=BREACHED", "validation_error", ["query", "sla"], id="upper case"),
    pytest.param("sla=breached&queue=store-sh-001", "unsupported_filter", ["query"], id="with a queue"),
    pytest.param("sla=breached&store_id=sh-001", "unsupported_filter", ["query"], id="with a store"),
    pytest.param("sla=at_risk&assignee=me", "unsupported_filter", ["query"], id="with my own"),
    pytest.param("sla=breached&status=new", "unsupported_filter", ["query"], id="with a status"),
    pytest.param("sla=breached&limit=0", "validation_error", ["query", "limit"], id="limit 0"),
    pytest.param("sla=breached&limit=101", "validation_error", ["query", "limit"], id="limit 101"),
    pytest.param("sla=breached&cursor=abc!!", "invalid_cursor", ["query", "cursor"], id="cursor not base64"),
    pytest.param("sla=breached&cursor=" + _b64_json({"stage": "at_risk", "shard": "1"}), "invalid_cursor",
                 ["query", "cursor"], id="cursor of the other stage"),
    pytest.param("sla=breached&cursor=" + _b64_json({"stage": "breached", "shard": "0", "gsi2pk": "SLA#breached#0"}),
                 "invalid_cursor", ["query", "cursor"], id="cursor of a partial key"),
    pytest.param("sla=breached&cursor=" + _b64_json({"stage": "breached", "shard": "0", "gsi2pk": "SLA#breached#0",
                                                     "gsi2sk": "x"}),
                 "invalid_cursor", ["query", "cursor"], id="cursor without the table's key"),
])
def test_sla_ticket_list_rejects_invalid_query(api, ctx, query, code, loc):  # noqa: ANN001
    status, body = api.get(f"/tickets?{query}", ctx.hq)
    assert_error(status, body, 422, code, loc)


@pytest.mark.parametrize("listing", ["queue", "store_id"])
def test_ticket_list_cursor_of_a_partial_key_is_422(api, ctx, listing):  # noqa: ANN001
    # Regression: a crafted cursor naming the listing's partition but not a whole key was a 500 (DynamoDB's
    # ValidationException for an invalid ExclusiveStartKey).
    from chalicelib.store import keys

    partition = ({"gsi1pk": keys.ticket_queue_list("store-sh-001", "new")} if listing == "queue"
                 else {"gsi4pk": keys.ticket_store_list("sh-001", "new")})
    value = "store-sh-001" if listing == "queue" else "sh-001"
    status, body = api.get(f"/tickets?{listing}={value}&cursor={_b64_json(partition)}", ctx.hq)
    assert_error(status, body, 422, "invalid_cursor", ["query", "cursor"])


def test_sla_ticket_list_is_accepted_alone(api, ctx, tokens):  # noqa: ANN001
    for stage in ("at_risk", "breached"):
        for token in (ctx.hq, ctx.staff, tokens.staff("region_manager", region="south")):
            status, page = api.get(f"/tickets?sla={stage}&limit=100", token)
            assert status == 200 and isinstance(page["items"], list), page


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


# ---- calendars: PUT/GET /calendars/brand, /calendars/{calendar_id}, /stores/{store_id}/closures, store hours ----
BRAND_CALENDAR = {"holidays": [{"start": "2026-10-01", "end": "2026-10-07", "name": "国庆节"}],
                  "workdays": [{"date": "2026-10-10", "hours_of": "mon"}]}
OFFICE_CALENDAR = {"name": "总部客服", "hours": {"mon": {"open": "09:00", "close": "18:00"},
                                               "tue": [{"open": "09:00", "close": "12:00"},
                                                       {"open": "13:00", "close": "18:00"}]}}
STORE_CLOSURES = {"closures": [{"start": "2026-12-20", "end": "2026-12-24", "name": "装修"}]}


@pytest.mark.parametrize(("change", "loc"), [
    pytest.param({"closed": []}, ["body", "closed"], id="unknown field"),
    pytest.param({"holidays": "2026-10-01"}, ["body", "holidays"], id="holidays as text"),
    pytest.param({"holidays": [{"start": "2026-10-07", "end": "2026-10-01"}]}, ["body", "holidays", 0],
                 id="end before start"),
    pytest.param({"holidays": [{"start": "2026-01-01", "end": "2027-01-02"}]}, ["body", "holidays", 0],
                 id="span of 367 days"),
    pytest.param({"holidays": [{"start": "2026-02-30"}]}, ["body", "holidays", 0, "start"], id="impossible date"),
    pytest.param({"holidays": [{"start": 20261001}]}, ["body", "holidays", 0, "start"], id="date as number"),
    pytest.param({"holidays": [{"start": "2026-10-01", "name": "节" * 41}]}, ["body", "holidays", 0, "name"],
                 id="41 char name"),
    pytest.param({"holidays": [{"start": f"2026-01-{d:02d}"} for d in range(1, 29)] * 4}, ["body", "holidays"],
                 id="112 holidays"),
    pytest.param({"workdays": [{"date": "2026-10-10", "hours_of": "monday"}]}, ["body", "workdays", 0, "hours_of"],
                 id="unknown weekday"),
    pytest.param({"workdays": [{"date": "2026-10-10"}]}, ["body", "workdays", 0, "hours_of"], id="no hours_of"),
    pytest.param({"workdays": [{"date": "2026-10-10", "hours_of": None}]}, ["body", "workdays", 0, "hours_of"],
                 id="hours_of null"),
    pytest.param({"workdays": [{"date": "2026-10-10", "hours_of": "mon"}, {"date": "2026-10-10", "hours_of": "tue"}]},
                 ["body"], id="a day worked twice"),
    pytest.param({"workdays": [{"date": "2026-10-03", "hours_of": "mon"}]}, ["body"], id="holiday and workday"),
    pytest.param({"holidays": None}, ["body", "holidays"], id="holidays null"),
])
def test_put_brand_calendar_rejects_invalid_body_and_keeps_the_calendar(api, ctx, nothing_written, change, loc):  # noqa: ANN001
    before = api.put("/calendars/brand", BRAND_CALENDAR, ctx.hq)[1]
    with nothing_written():
        status, body = api.put("/calendars/brand", {**BRAND_CALENDAR, **change}, ctx.hq)
    assert_error(status, body, 422, "validation_error", loc)
    assert api.get("/calendars/brand", ctx.hq) == (200, before)


@pytest.mark.parametrize(("change", "loc"), [
    pytest.param({"calendar_id": "x"}, ["body", "calendar_id"], id="calendar_id in body"),
    pytest.param({"hours": {"mon": [{"open": "09:00", "close": "13:00"}, {"open": "12:00", "close": "18:00"}]}},
                 ["body", "hours"], id="overlapping windows"),
    pytest.param({"hours": {"sun": {"open": "20:00", "close": "03:00"}, "mon": {"open": "02:00", "close": "04:00"}}},
                 ["body", "hours"], id="sunday night into monday"),
    pytest.param({"hours": {"mon": {"open": "09:00", "close": "09:00"}}}, ["body", "hours", "mon"],
                 id="open equals close"),
    pytest.param({"hours": {"mon": {"open": "09:00", "close": 0}}}, ["body", "hours", "mon"], id="time as number"),
    pytest.param({"hours": {"mon": {"open": "09:00+08:00", "close": "18:00"}}}, ["body", "hours", "mon"],
                 id="time with offset"),
    pytest.param({"hours": {"mon": [{"open": f"{h:02d}:00", "close": f"{h:02d}:30"} for h in range(7)]}},
                 ["body", "hours", "mon"], id="7 windows"),
    pytest.param({"hours": {"holiday": {"open": "09:00", "close": "18:00"}}}, ["body", "hours", "holiday"],
                 id="unknown weekday"),
    pytest.param({"hours": [{"open": "09:00", "close": "18:00"}]}, ["body", "hours"], id="hours as list"),
    pytest.param({"honours_brand_calendar": "yes"}, ["body", "honours_brand_calendar"], id="flag as text"),
    pytest.param({"honours_brand_calendar": 1}, ["body", "honours_brand_calendar"], id="flag as number"),
])
def test_put_office_calendar_rejects_invalid_body_and_keeps_the_calendar(api, ctx, nothing_written, change, loc):  # noqa: ANN001
    calendar_id = ctx.office_calendar()
    before = api.get(f"/calendars/{calendar_id}", ctx.hq)
    with nothing_written():
        status, body = api.put(f"/calendars/{calendar_id}", {**OFFICE_CALENDAR, **change}, ctx.hq)
    assert_error(status, body, 422, "validation_error", loc)
    assert api.get(f"/calendars/{calendar_id}", ctx.hq) == before


@pytest.mark.parametrize(("change", "loc"), [
    pytest.param({"store_id": "x"}, ["body", "store_id"], id="store_id in body"),
    pytest.param({"closures": None}, ["body", "closures"], id="closures null"),
    pytest.param({"closures": [{"start": "2026-12-24", "end": "2026-12-20"}]}, ["body", "closures", 0],
                 id="end before start"),
    pytest.param({"closures": [{"start": "2026-12-24", "until": "2026-12-25"}]}, ["body", "closures", 0, "until"],
                 id="unknown field in a closure"),
    pytest.param({"closures": [{"start": "12/24/2026"}]}, ["body", "closures", 0, "start"], id="date not ISO"),
    pytest.param({"closures": [{"start": "2026-12-24"}] * 101}, ["body", "closures"], id="101 closures"),
])
def test_put_closures_rejects_invalid_body_and_keeps_the_closures(api, ctx, nothing_written, change, loc):  # noqa: ANN001
    store_id = ctx.store()["store_id"]
    before = api.put(f"/stores/{store_id}/closures", STORE_CLOSURES, ctx.hq)
    with nothing_written():
        status, body = api.put(f"/stores/{store_id}/closures", {**STORE_CLOSURES, **change}, ctx.hq)
    assert_error(status, body, 422, "validation_error", loc)
    assert api.get(f"/stores/{store_id}/closures", ctx.hq) == before


@pytest.mark.parametrize(("hours", "loc"), [
    pytest.param({"mon": [{"open": "10:00", "close": "14:00"}, {"open": "13:00", "close": "22:00"}]},
                 ["body", "business_hours"], id="overlapping windows"),
    pytest.param({"fri": {"open": "18:00", "close": "11:00"}, "sat": {"open": "10:00", "close": "22:00"}},
                 ["body", "business_hours"], id="past midnight into the next day's window"),
    pytest.param({"mon": {"open": "10:00", "close": "10:00"}}, ["body", "business_hours", "mon"],
                 id="open equals close"),
    pytest.param({"mon": [{"open": "10:00", "close": "14:00"}, "16:00-22:00"]}, ["body", "business_hours", "mon"],
                 id="window as text"),
])
def test_put_store_rejects_bad_hours_and_keeps_the_store(api, ctx, nothing_written, hours, loc):  # noqa: ANN001
    store = ctx.store()
    with nothing_written():
        status, body = api.put(f"/stores/{store['store_id']}", {**STORE_BODY, "business_hours": hours}, ctx.hq)
    assert_error(status, body, 422, "validation_error", loc)
    assert api.get(f"/stores/{store['store_id']}", ctx.hq) == (200, store)


@pytest.mark.parametrize("method", ["GET", "PUT"])
@pytest.mark.parametrize("calendar_id", [pytest.param("a" * 49, id="49 chars"), pytest.param("Office", id="capital"),
                                         pytest.param("-office", id="leading hyphen"),
                                         pytest.param("of.fice", id="dot"), pytest.param("%E5%8A%9E", id="CJK")])
def test_malformed_calendar_id_is_404_and_writes_nothing(api, ctx, nothing_written, method, calendar_id):  # noqa: ANN001
    with nothing_written():
        status, body = api.call(method, f"/calendars/{calendar_id}", OFFICE_CALENDAR if method == "PUT" else None,
                                ctx.hq)
    assert_error(status, body, 404, "calendar_not_found")


def test_unknown_calendar_is_404(api, ctx):  # noqa: ANN001
    status, body = api.get(f"/calendars/bi-{uuid.uuid4().hex[:10]}", ctx.hq)
    assert_error(status, body, 404, "calendar_not_found")


@pytest.mark.parametrize("method", ["GET", "PUT"])
@pytest.mark.parametrize("store_id", [pytest.param("x" * 41, id="41 chars"), pytest.param("sh.001", id="dot"),
                                      pytest.param(None, id="unknown")])
def test_closures_of_a_malformed_or_unknown_store_are_404(api, ctx, nothing_written, method, store_id):  # noqa: ANN001
    store_id = store_id or f"bi-{uuid.uuid4().hex[:10]}"
    with nothing_written():
        status, body = api.call(method, f"/stores/{store_id}/closures", STORE_CLOSURES if method == "PUT" else None,
                                ctx.hq)
    assert_error(status, body, 404, "store_not_found")


# ---- GET /tickets/stats ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(("query", "loc"), [
    pytest.param("to=2026-06-02&group_by=store", ["query", "from"], id="missing from"),
    pytest.param("from=2026-06-01&group_by=store", ["query", "to"], id="missing to"),
    pytest.param("from=2026-06-01&to=2026-06-02", ["query", "group_by"], id="missing group_by"),
    pytest.param("from=2026-06-01&to=2026-06-02&group_by=queue", ["query", "group_by"], id="unknown group_by"),
    pytest.param("from=2026-06-01&to=2026-06-02&group_by=Store", ["query", "group_by"], id="group_by in capitals"),
    pytest.param("from=2026-02-30&to=2026-03-02&group_by=store", ["query", "from"], id="impossible from"),
    pytest.param("from=2026-06-01&to=tomorrow&group_by=store", ["query", "to"], id="to a word"),
    pytest.param("from=2026-06-02&to=2026-06-01&group_by=store", ["query", "to"], id="to before from"),
    pytest.param("from=2026-06-01&to=2026-09-01&group_by=store", ["query", "to"], id="93 days"),
])
def test_ticket_stats_rejects_invalid_query(api, ctx, query, loc):  # noqa: ANN001
    status, body = api.get(f"/tickets/stats?{query}", ctx.hq)
    assert_error(status, body, 422, "validation_error", loc)


def test_ticket_stats_of_92_days_are_accepted(api, ctx):  # noqa: ANN001
    # The control for "93 days" (both ends count)
    status, body = api.get("/tickets/stats?from=2026-06-01&to=2026-08-31&group_by=channel", ctx.hq)
    assert status == 200 and body["group_by"] == "channel", body


# ---- GET /analytics/rfm and PUT /rfm-settings ------------------------------------------------------------------
@pytest.mark.parametrize(("query", "loc"), [
    pytest.param("store_id=sh 001", ["query", "store_id"], id="store id with a space"),
    pytest.param("region_id=" + "e" * 41, ["query", "region_id"], id="region id too long"),
    pytest.param("as_of=2026-02-30", ["query", "as_of"], id="impossible night"),
    pytest.param("as_of=yesterday", ["query", "as_of"], id="night a word"),
    pytest.param("store_id=sh-001&region_id=east", ["query"], id="store and region"),
])
def test_rfm_distribution_rejects_invalid_query(api, ctx, query, loc):  # noqa: ANN001
    status, body = api.get(f"/analytics/rfm?{query}", ctx.hq)
    assert_error(status, body, 422, "validation_error", loc)


@pytest.mark.parametrize(("change", "loc"), [
    pytest.param({"mode": "median"}, ["body", "mode"], id="unknown mode"),
    pytest.param({"mode": "fixed"}, ["body"], id="fixed without thresholds"),
    pytest.param({"mode": "fixed", "fixed": {"recency_days": 30, "frequency": "3", "monetary": 1}},
                 ["body", "fixed", "frequency"], id="a threshold as text"),
    pytest.param({"mode": "fixed", "fixed": {"recency_days": 30, "frequency": 0, "monetary": 1}},
                 ["body", "fixed", "frequency"], id="frequency 0"),
    pytest.param({"churn_factor_permille": 999}, ["body", "churn_factor_permille"], id="factor below x1"),
    pytest.param({"churn_factor_permille": 2.5}, ["body", "churn_factor_permille"], id="factor a float"),
    pytest.param({"churn_list_size": 0}, ["body", "churn_list_size"], id="empty churn list"),
    pytest.param({"version": -1}, ["body", "version"], id="negative version"),
    pytest.param({"segments": 4}, ["body", "segments"], id="unknown field"),
])
def test_rfm_settings_reject_invalid_bodies_and_change_nothing(api, ctx, change, loc):  # noqa: ANN001
    before = ctx.config("/rfm-settings")
    status, body = api.put("/rfm-settings", {**before, **change}, ctx.hq)
    assert_error(status, body, 422, "validation_error", loc)
    assert ctx.config("/rfm-settings") == before


# ---- member tags: PUT /tag-rules, POST /members/{id}/tags, DELETE /members/{id}/tags/{tag} ----------------------
def _tag_rule(*conditions: dict[str, Any], **change: Any) -> dict[str, Any]:
    return {**TAG_RULE, **({"all": list(conditions)} if conditions else {}), **change}


@pytest.mark.parametrize(("body", "loc"), [
    pytest.param({"rules": "all"}, ["body", "rules"], id="rules not a list"),
    pytest.param({"rules": None}, ["body", "rules"], id="rules null"),
    pytest.param({}, ["body", "rules"], id="no rules"),
    pytest.param({"rules": [], "probe": 1}, ["body", "probe"], id="unknown field"),
    pytest.param({"rules": [TAG_RULE, TAG_RULE]}, ["body", "rules"], id="one tag twice"),
    pytest.param({"rules": [_tag_rule(tag=f"t{n}") for n in range(101)]}, ["body", "rules"], id="101 rules"),
    pytest.param({"rules": [_tag_rule(tag="")]}, ["body", "rules", 0, "tag"], id="empty tag"),
    pytest.param({"rules": [_tag_rule(tag="健\n康")]}, ["body", "rules", 0, "tag"], id="tag with a newline"),
    pytest.param({"rules": [_tag_rule(tag="一" * 21)]}, ["body", "rules", 0, "tag"], id="21-character tag"),
    pytest.param({"rules": [_tag_rule(tag="50%")]}, ["body", "rules", 0, "tag"], id="tag with percent"),
    pytest.param({"rules": [_tag_rule(all=[])]}, ["body", "rules", 0, "all"], id="no conditions"),
    pytest.param({"rules": [_tag_rule(*[TAG_RULE["all"][0]] * 11)]}, ["body", "rules", 0, "all"],
                 id="11 conditions"),
    pytest.param({"rules": [_tag_rule(any=[])]}, ["body", "rules", 0, "any"], id="unknown rule field"),
    pytest.param({"rules": [_tag_rule({"field": "visits", "op": "gte", "value": 1})]},
                 ["body", "rules", 0, "all", 0, "field"], id="unknown field name"),
    pytest.param({"rules": [_tag_rule({"field": "monetary", "op": "gt", "value": 1})]},
                 ["body", "rules", 0, "all", 0, "op"], id="unknown op"),
    pytest.param({"rules": [_tag_rule({"field": "monetary", "op": "gte", "value": "1"})]},
                 ["body", "rules", 0, "all", 0, "value"], id="number as text"),
    pytest.param({"rules": [_tag_rule({"field": "monetary", "op": "gte", "value": 1.5})]},
                 ["body", "rules", 0, "all", 0, "value"], id="fractional number"),
    pytest.param({"rules": [_tag_rule({"field": "monetary", "op": "gte", "value": True})]},
                 ["body", "rules", 0, "all", 0, "value"], id="number true"),
    pytest.param({"rules": [_tag_rule({"field": "monetary", "op": "in", "value": 1})]},
                 ["body", "rules", 0, "all", 0, "value"], id="in without a list"),
    pytest.param({"rules": [_tag_rule({"field": "monetary", "op": "eq", "value": [1]})]},
                 ["body", "rules", 0, "all", 0, "value"], id="eq with a list"),
    pytest.param({"rules": [_tag_rule({"field": "coupon_order_share", "op": "gte", "value": 1001})]},
                 ["body", "rules", 0, "all", 0, "value"], id="share over 1000 permille"),
    pytest.param({"rules": [_tag_rule({"field": "category_share", "op": "gte", "value": 600})]},
                 ["body", "rules", 0, "all", 0, "category"], id="share without its category"),
    pytest.param({"rules": [_tag_rule({"field": "tier", "op": "gte", "value": "gold"})]},
                 ["body", "rules", 0, "all", 0, "op"], id="tier gte"),
    pytest.param({"rules": [_tag_rule({"field": "segment", "op": "eq", "value": "VIP"})]},
                 ["body", "rules", 0, "all", 0, "value"], id="unknown segment"),
    pytest.param({"rules": [], "version": -1}, ["body", "version"], id="negative version"),
    pytest.param({"rules": [], "version": "1"}, ["body", "version"], id="version as text"),
])
def test_put_tag_rules_rejects_invalid_rules_and_keeps_them(api, ctx, nothing_written, body, loc):  # noqa: ANN001
    before = ctx.config("/tag-rules")
    with nothing_written():
        status, answer = api.put("/tag-rules", body, ctx.hq)
    assert_error(status, answer, 422, "validation_error", loc)
    assert ctx.config("/tag-rules") == before


def test_put_tag_rules_of_a_stale_version_is_409_and_keeps_them(api, ctx, nothing_written):  # noqa: ANN001
    before = ctx.config("/tag-rules")
    for version in (before["version"] + 1, before["version"] + 100):
        with nothing_written():
            status, answer = api.put("/tag-rules", {"rules": [TAG_RULE], "version": version}, ctx.hq)
        assert_error(status, answer, 409, "version_conflict")
    assert ctx.config("/tag-rules") == before


def test_put_tag_rules_at_the_bounds_is_accepted(api, ctx):  # noqa: ANN001
    # The control for the refusals above: 100 rules of 20-character tags, one of them with 10 conditions naming
    # every field (100 such rules would not fit the 64 KB body).
    conditions = [{"field": "category_share", "category": "轻" * 50, "op": "in", "value": list(range(951, 1001))},
                  {"field": "coupon_order_share", "op": "lte", "value": 1000},
                  {"field": "monetary", "op": "gte", "value": 0}, {"field": "frequency", "op": "eq", "value": 3},
                  {"field": "recency_days", "op": "lte", "value": 30},
                  {"field": "order_count", "op": "gte", "value": 3},
                  {"field": "lifetime_spend", "op": "gte", "value": 10**13},
                  {"field": "tier", "op": "in", "value": ["gold", "x" * 30]},
                  {"field": "segment", "op": "eq", "value": "no_purchase"},
                  {"field": "segment", "op": "in", "value": ["重要价值", "一般挽留"]}]
    rules = [{"tag": f"{n:03d}" + "签" * 17, "all": conditions if n == 0 else conditions[2:3],
              "description": "d" * 200} for n in range(100)]
    before = ctx.config("/tag-rules")
    status, saved = api.put("/tag-rules", {"rules": rules, "version": before["version"]}, ctx.hq)
    assert status == 200 and saved["version"] == before["version"] + 1 and len(saved["rules"]) == 100, saved
    assert ctx.config("/tag-rules") == saved


TAG_INVALID = [
    pytest.param({}, ["body", "tag"], id="no tag"),
    pytest.param({"tag": None}, ["body", "tag"], id="tag null"),
    pytest.param({"tag": 7}, ["body", "tag"], id="tag a number"),
    pytest.param({"tag": ["常客"]}, ["body", "tag"], id="tag a list"),
    pytest.param({"tag": "常客", "by": "hq"}, ["body", "by"], id="unknown field"),
    *[pytest.param({"tag": p.values[0]}, ["body", "tag"], id=f"tag {p.id}") for p in BLANK_NAMES + CONTROL_NAMES],
    pytest.param({"tag": "一" * 21}, ["body", "tag"], id="21 CJK chars"),
    pytest.param({"tag": "😀" * 21}, ["body", "tag"], id="21 emoji"),
    pytest.param({"tag": "50%折扣"}, ["body", "tag"], id="percent"),
    pytest.param({"tag": "母婴/亲子"}, ["body", "tag"], id="slash"),
]


@pytest.mark.parametrize(("body", "loc"), TAG_INVALID)
def test_add_tag_rejects_an_invalid_tag_and_writes_nothing(api, ctx, nothing_written, body, loc):  # noqa: ANN001
    member_id = ctx.member()["member_id"]
    with nothing_written():
        status, answer = api.post(f"/members/{member_id}/tags", body, ctx.staff)
    assert_error(status, answer, 422, "validation_error", loc)


@pytest.mark.parametrize("tag", [
    pytest.param("%0A", id="encoded newline"),
    pytest.param("%E5%81%A5%00%E5%BA%B7", id="encoded NUL"),
    pytest.param("%20%20", id="encoded spaces only"),
    pytest.param("%E2%80%AEabc", id="encoded bidi override"),
    pytest.param("%E4%B8%80" * 21, id="21 CJK chars"),
    pytest.param("50%25", id="encoded percent"),
    pytest.param("a%2Fb", id="encoded slash"),
    pytest.param("%FF%FE", id="not UTF-8"),
])
def test_delete_tag_rejects_a_malformed_tag_in_the_path_and_writes_nothing(api, ctx, nothing_written,  # noqa: ANN001
                                                                           tag):
    member_id = ctx.member()["member_id"]
    assert api.post(f"/members/{member_id}/tags", {"tag": "常客"}, ctx.staff)[0] == 200
    with nothing_written():
        status, answer = api.delete(f"/members/{member_id}/tags/{tag}", ctx.staff)
    assert_error(status, answer, 422, "validation_error", ["path", "tag"])
    assert _member_tags_item(member_id)["tags"] == {"常客"}


def test_delete_tag_takes_the_decoded_tag_api_gateway_hands_over(ctx):  # noqa: ANN001
    # API Gateway passes path parameters URL-decoded (the chalice test client passes them encoded): the tag
    # arrives as text and is removed; a decoded newline is refused as the encoded one is.
    member_id = ctx.member()["member_id"]
    assert ctx.api.post(f"/members/{member_id}/tags", {"tag": "爱喝 拿铁"}, ctx.staff)[0] == 200
    route = "/members/{member_id}/tags/{tag}"
    status, body = _api_gateway("DELETE", route, {"member_id": member_id, "tag": "爱喝\n拿铁"}, ctx.hq)
    assert_error(status, body, 422, "validation_error", ["path", "tag"])
    assert _api_gateway("DELETE", route, {"member_id": member_id, "tag": "爱喝 拿铁"}, ctx.hq) == \
        (200, {"member_id": member_id, "tags": []})


# ---- reports: GET /stores/{id}/report, GET /analytics/kpis, POST their report-links, GET their pages -----------
REPORTS = [pytest.param("/stores/sh-001/report", id="store report"), pytest.param("/analytics/kpis", id="kpis")]
RANGE_INVALID = [
    # (query, status, code, loc)
    pytest.param("from=2026-02-02&to=2026-02-01", "validation_error", ["query", "from"], id="from after to"),
    pytest.param("from=2099-01-01", "validation_error", ["query", "from"], id="from alone after yesterday"),
    pytest.param("from=2025-01-01&to=2026-01-02", "range_too_long", None, id="367 days"),
    pytest.param("from=2000-01-01&to=2026-01-01", "range_too_long", None, id="26 years"),
    pytest.param("from=yesterday&to=2026-01-02", "validation_error", ["query", "from"], id="from a word"),
    pytest.param("from=2026-01-01&to=2026-13-01", "validation_error", ["query", "to"], id="to in month 13"),
    pytest.param("from=2026-02-30&to=2026-03-02", "validation_error", ["query", "from"], id="impossible from"),
    pytest.param("from=&to=2026-01-02", "validation_error", ["query", "from"], id="empty from"),
    pytest.param("to=20260102", "validation_error", ["query", "to"], id="to without dashes"),
    pytest.param("to=2026-01-02T10:00:00", "validation_error", ["query", "to"], id="to a time of day"),
    pytest.param("to=0", "validation_error", ["query", "to"], id="to a number"),  # not Unix time (fixed)
    pytest.param("from=1767225600&to=1767312000", "validation_error", ["query", "from"], id="Unix times"),
]


@pytest.mark.parametrize("path", REPORTS)
@pytest.mark.parametrize(("query", "code", "loc"), RANGE_INVALID)
def test_report_rejects_an_invalid_range(api, ctx, path, query, code, loc):  # noqa: ANN001
    status, body = api.get(f"{path}?{query}", ctx.hq)
    assert_error(status, body, 422, code, loc)
    if code == "range_too_long":
        assert body["details"]["max_days"] == 366, body


@pytest.mark.parametrize("group_by", [pytest.param("week", id="week"), pytest.param("Store", id="capitals"),
                                      pytest.param("", id="empty"), pytest.param("store,day", id="two")])
def test_kpis_reject_an_unknown_grouping(api, ctx, group_by):  # noqa: ANN001
    status, body = api.get(f"/analytics/kpis?from=2026-01-01&to=2026-01-31&group_by={group_by}", ctx.hq)
    assert_error(status, body, 422, "validation_error", ["query", "group_by"])


@pytest.mark.parametrize("path", REPORTS)
def test_report_of_366_days_is_accepted(api, ctx, path):  # noqa: ANN001
    # The control for "367 days" (both ends count; 2024 had a leap day)
    status, body = api.get(f"{path}?from=2024-01-01&to=2024-12-31", ctx.hq)
    assert status == 200 and (body["from"], body["to"]) == ("2024-01-01", "2024-12-31"), body
    for group_by in ("region", "city", "store", "store_type", "day"):
        status, body = api.get(f"/analytics/kpis?from=2024-01-01&to=2024-01-07&group_by={group_by}", ctx.hq)
        assert status == 200 and body["group_by"] == group_by, body


STORE_REPORT_ROUTES = [pytest.param("GET", "report", None, id="GET report"),
                       pytest.param("POST", "report-links", REPORT_RANGE, id="POST report-links"),
                       pytest.param("GET", "report.html", None, id="GET report.html")]


@pytest.mark.parametrize(("method", "tail", "body_in"), STORE_REPORT_ROUTES)
@pytest.mark.parametrize("store_id", [pytest.param("x" * 41, id="41 chars"), pytest.param("sh.001", id="dot"),
                                      pytest.param("sh%20001", id="encoded space"),
                                      pytest.param("%E5%BA%97", id="encoded CJK"),
                                      pytest.param("nowhere", id="well-formed unknown")])
def test_report_of_a_malformed_or_unknown_store_is_404(api, ctx, nothing_written, method, tail, body_in,  # noqa: ANN001
                                                       store_id):
    if tail == "report.html":  # a page: a valid link for sh-001 (the path is judged first, then the link's store)
        status, link = api.post("/stores/sh-001/report-links", REPORT_RANGE, ctx.hq)
        assert status == 201, link
        with nothing_written():
            status, body = _open(api, f"/stores/{store_id}/report.html?{link['path'].split('?', 1)[1]}")
    else:
        with nothing_written():
            status, body = api.call(method, f"/stores/{store_id}/{tail}", body_in, ctx.hq)
    assert_error(status, body, 404, "store_not_found")


LINK_INVALID = [
    # (route, body, code, loc)
    pytest.param("store", {**REPORT_RANGE, "group_by": "store"}, "validation_error", ["body", "group_by"],
                 id="store link: a grouping"),
    pytest.param("store", {**REPORT_RANGE, "store_id": "sh-002"}, "validation_error", ["body", "store_id"],
                 id="store link: a store in the body"),
    pytest.param("kpis", {**REPORT_RANGE, "scope": "brand"}, "validation_error", ["body", "scope"],
                 id="kpi link: a scope"),
    pytest.param("kpis", {**REPORT_RANGE, "region_id": "south"}, "validation_error", ["body", "region_id"],
                 id="kpi link: a region"),
    pytest.param("kpis", {**REPORT_RANGE, "group_by": "week"}, "validation_error", ["body", "group_by"],
                 id="kpi link: group_by week"),
    pytest.param("kpis", {**REPORT_RANGE, "group_by": None}, "validation_error", ["body", "group_by"],
                 id="kpi link: group_by null"),
    pytest.param("kpis", {**REPORT_RANGE, "group_by": ["store"]}, "validation_error", ["body", "group_by"],
                 id="kpi link: group_by a list"),
    *[pytest.param(route, body, code, loc, id=f"{route} link: {name}") for route in ("store", "kpis")
      for name, body, code, loc in [
          ("extra field", {**REPORT_RANGE, "expires_in": 86_400}, "validation_error", ["body", "expires_in"]),
          ("from a number", {"from": 20260201, "to": "2026-02-28"}, "validation_error", ["body", "from"]),
          ("from epoch 0", {"from": 0}, "validation_error", ["body", "from"]),
          ("to a number", {"to": 1_767_225_600}, "validation_error", ["body", "to"]),
          ("from 2026-02-30", {"from": "2026-02-30", "to": "2026-03-02"}, "validation_error", ["body", "from"]),
          ("to a word", {"to": "yesterday"}, "validation_error", ["body", "to"]),
          ("from a list", {"from": ["2026-02-01"]}, "validation_error", ["body", "from"]),
          ("from a time", {"from": "2026-02-01T00:00:00+08:00"}, "validation_error", ["body", "from"]),
          ("from after to", {"from": "2026-02-02", "to": "2026-02-01"}, "validation_error", None),
          ("367 days", {"from": "2025-01-01", "to": "2026-01-02"}, "range_too_long", None),
      ]],
]
LINK_PATHS = {"store": "/stores/sh-001/report-links", "kpis": "/analytics/report-links"}


@pytest.mark.parametrize(("route", "body", "code", "loc"), LINK_INVALID)
def test_report_link_rejects_an_invalid_body_and_signs_nothing(api, ctx, nothing_written, route, body, code,  # noqa: ANN001
                                                               loc):
    with nothing_written():
        status, answer = api.post(LINK_PATHS[route], body, ctx.hq)
    assert_error(status, answer, 422, code, loc)


@pytest.mark.parametrize("route", ["store", "kpis"])
def test_report_link_of_a_range_out_of_order_names_the_body(api, ctx, route):  # noqa: ANN001
    # An error's details name where the bad input is: a body's `from`, not a query parameter nobody sent
    status, answer = api.post(LINK_PATHS[route], {"from": "2026-02-02", "to": "2026-02-01"}, ctx.hq)
    assert_error(status, answer, 422, "validation_error", ["body", "from"])


@pytest.mark.parametrize("route", ["store", "kpis"])
def test_report_link_with_an_empty_object_takes_the_default_range(api, ctx, route):  # noqa: ANN001
    # The control: every field is optional (the thirty days to yesterday, by store)
    status, link = api.post(LINK_PATHS[route], {}, ctx.hq)
    assert status == 201 and "?link=" in link["path"], link


# ---- the pages: a link or nothing
def _open(api: Any, path: str) -> tuple[int, Any]:
    """GET a page as a browser does (no bearer header): (status, JSON error) or (status, the page's text)."""
    resp = api.client.http.get(path)
    content_type = {k.lower(): v for k, v in resp.headers.items()}.get("content-type", "")
    if content_type.startswith("application/json"):
        return resp.status_code, json.loads(resp.body)
    assert content_type.startswith("text/html"), (resp.status_code, content_type)
    return resp.status_code, resp.body.decode()


def _link(api: Any, ctx: Ctx, page: str, token: str | None = None) -> str:
    """A fresh link's token, made by HQ (or `token`): `page` is "store" (sh-001's page) or "kpis"."""
    body = REPORT_RANGE if page == "store" else {**REPORT_RANGE, "group_by": "store"}
    status, made = api.post(LINK_PATHS[page], body, token or ctx.hq)
    assert status == 201, made
    return made["path"].split("?link=", 1)[1]


PAGES = {"store": "/stores/sh-001/report.html", "kpis": "/analytics/report.html"}
PAGE_IDS = [pytest.param("store", id="store page"), pytest.param("kpis", id="kpi page")]


@pytest.mark.parametrize("page", PAGE_IDS)
def test_a_page_opens_through_its_link(api, ctx, page):  # noqa: ANN001
    # The control for every refusal below: the same link, untouched, opens the page
    status, text = _open(api, f"{PAGES[page]}?link={_link(api, ctx, page)}")
    assert status == 200 and 'data-figure="' in text and 'data-value="2025-11-01"' in text, text[:300]


@pytest.mark.parametrize("page", PAGE_IDS)
@pytest.mark.parametrize("query", [pytest.param("", id="no query"), pytest.param("?link=", id="empty link"),
                                   pytest.param("?token=abc", id="another parameter")])
def test_a_page_without_a_link_is_401(api, ctx, nothing_written, page, query):  # noqa: ANN001
    with nothing_written():
        status, body = _open(api, PAGES[page] + query)
    assert_error(status, body, 401, "link_required")


@pytest.mark.parametrize("page", PAGE_IDS)
def test_a_page_refuses_a_bearer_token_in_place_of_a_link(api, ctx, page):  # noqa: ANN001
    status, body = api.get(PAGES[page], ctx.hq)  # a bearer header opens no page
    assert_error(status, body, 401, "link_required")
    status, body = _open(api, f"{PAGES[page]}?link={ctx.hq}")  # nor does a bearer token as the link
    assert_error(status, body, 401, "invalid_link")


def _tampered(token: str) -> list[Any]:
    """A real link, edited the ways someone holding one might: each must fail its signature."""
    import base64

    claims_b64, mac = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(claims_b64 + "=" * (-len(claims_b64) % 4)))

    def resigned(**change: Any) -> str:  # new claims, the old signature
        text = json.dumps({**claims, **change}, separators=(",", ":"), sort_keys=True).encode()
        return f"{base64.urlsafe_b64encode(text).rstrip(b'=').decode()}.{mac}"

    flipped = mac[:-2] + ("AA" if not mac.endswith("AA") else "BB")
    return [("signature changed", f"{claims_b64}.{flipped}"),
            ("claims changed: role hq", resigned(role="hq", store_ids=[], region_id=None)),
            ("claims changed: a longer life", resigned(exp=claims["exp"] + 86_400)),
            ("claims changed: another range", resigned(**{"from": "2020-01-01"})),
            ("signature dropped", f"{claims_b64}."), ("signature alone", f".{mac}"),
            ("claims of another link", f"{resigned(store_id='sh-002').split('.')[0]}.{mac}"),
            ("a third part", f"{token}.{mac}"), ("truncated", token[:-5])]


@pytest.mark.parametrize("page", PAGE_IDS)
def test_a_tampered_link_is_401_invalid_link(api, ctx, nothing_written, page):  # noqa: ANN001
    from urllib.parse import quote

    # made by the store's staff (store page) or east's manager (KPI page): HQ's scope is worth forging
    maker = ctx.staff if page == "store" else ctx.tokens.staff("region_manager", region="east")
    for name, token in _tampered(_link(api, ctx, page, maker)):
        with nothing_written():
            status, body = _open(api, f"{PAGES[page]}?link={quote(token, safe='')}")
        assert (status, body["code"] if isinstance(body, dict) else body[:200]) == (401, "invalid_link"), name
        assert_error(status, body, 401, "invalid_link")


JUNK_LINKS = [
    pytest.param("abc", id="no dot"), pytest.param(".", id="a dot"), pytest.param("a.b.c", id="three parts"),
    pytest.param("!!!.???", id="not base64"), pytest.param("%00.%00", id="NUL"),
    pytest.param("%E9%93%BE.%E6%8E%A5", id="CJK"), pytest.param("a.%E6%8E%A5", id="CJK signature"),
    pytest.param("%FF%FE.abc", id="not UTF-8"), pytest.param("abc.A", id="signature of 1 char"),
    pytest.param("abc.A%3D%3D%3D", id="padding"), pytest.param("%0Aabc.def%0A", id="newlines"),
    pytest.param("e30.e30", id="empty JSON object, not a signature"),
    pytest.param("a%20b.c%2Bd", id="space and plus"), pytest.param("x" * 2000, id="2000 chars"),
    pytest.param("%F0%9F%98%80.%F0%9F%98%80", id="emoji"), pytest.param("a%26link%3Db.c", id="encoded ampersand"),
]


@pytest.mark.parametrize("page", PAGE_IDS)
@pytest.mark.parametrize("token", JUNK_LINKS)
def test_a_junk_link_is_401_invalid_link_never_500(api, ctx, nothing_written, page, token):  # noqa: ANN001
    with nothing_written():
        status, body = _open(api, f"{PAGES[page]}?link={token}")
    assert_error(status, body, 401, "invalid_link")


@pytest.mark.parametrize("page", PAGE_IDS)
def test_a_link_over_2000_characters_is_422(api, ctx, page):  # noqa: ANN001
    status, body = _open(api, f"{PAGES[page]}?link={'x' * 2001}")
    assert_error(status, body, 422, "validation_error", ["query", "link"])


def test_a_store_link_opens_no_other_stores_page(api, ctx, nothing_written):  # noqa: ANN001
    token = _link(api, ctx, "store")
    for store_id in ("sh-002", "gz-001"):
        with nothing_written():
            status, body = _open(api, f"/stores/{store_id}/report.html?link={token}")
        assert_error(status, body, 404, "store_not_found")


@pytest.mark.parametrize(("made_for", "opened_at"), [
    pytest.param("kpis", "/stores/sh-001/report.html", id="kpi link on the store page"),
    pytest.param("store", "/analytics/report.html", id="store link on the kpi page"),
])
def test_a_link_opens_only_its_own_kind_of_page(api, ctx, nothing_written, made_for, opened_at):  # noqa: ANN001
    token = _link(api, ctx, made_for)
    with nothing_written():
        status, body = _open(api, f"{opened_at}?link={token}")
    assert_error(status, body, 401, "invalid_link")


@pytest.mark.parametrize("page", PAGE_IDS)
def test_an_expired_link_is_401_link_expired(api, ctx, nothing_written, monkeypatch, page):  # noqa: ANN001
    import time

    from chalicelib.adapters import links

    token = _link(api, ctx, page)
    made = time.time()
    monkeypatch.setattr(links.time, "time", lambda: made + links.TTL_SECONDS - 5)  # still valid
    assert _open(api, f"{PAGES[page]}?link={token}")[0] == 200
    monkeypatch.setattr(links.time, "time", lambda: made + links.TTL_SECONDS + 1)
    with nothing_written():
        status, body = _open(api, f"{PAGES[page]}?link={token}")
    assert_error(status, body, 401, "link_expired")
