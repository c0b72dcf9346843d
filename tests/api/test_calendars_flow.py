"""Calendars end to end through the API (chalice test client, DynamoDB Local): the brand calendar, office
calendars, a store's closures, store hours with several windows and past midnight, and the calendar the SLA
code gets for a queue, built from what was written here. Due times are worked out by hand in each test.

Tests that write the brand calendar or the `office` calendar use a fresh table: both are single facts of the
whole brand, and other suites in the session count SLA time in them."""
from __future__ import annotations

import uuid
from datetime import datetime

import pytest

from chalicelib import bootstrap
from chalicelib.domain.calendars import ALWAYS
from chalicelib.domain.clock import BUSINESS_TZ
from chalicelib.domain.tickets import QueueRecord
from chalicelib.services.calendars import calendar_for_queue

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
STORE = {"name": "日历店", "region_id": "east", "city": "上海", "store_type": "standard"}
NATIONAL_DAY = {"holidays": [{"start": "2026-10-01", "end": "2026-10-07", "name": "国庆节"}],
                "workdays": [{"date": "2026-10-10", "hours_of": "mon", "name": "国庆调休"}]}


def at(y: int, mo: int, d: int, h: int = 0, mi: int = 0) -> datetime:
    return datetime(y, mo, d, h, mi, tzinfo=BUSINESS_TZ)


def sid() -> str:
    return f"cal-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def hq(tokens):
    return tokens.hq()


def put_store(api, hq, store_id: str, hours: dict) -> dict:  # noqa: ANN001
    status, body = api.put(f"/stores/{store_id}", {**STORE, "business_hours": hours}, hq)
    assert status in (200, 201), body
    return body


def store_queue(store_id: str) -> QueueRecord:
    return QueueRecord(queue_id=f"store-{store_id}", kind="store", name="门店", store_id=store_id, region_id="east",
                       defined=False)


# ---- store hours ------------------------------------------------------------------------------------------
def test_store_hours_take_split_windows_and_past_midnight_and_answer_lists(api, hq):
    store_id = sid()
    body = put_store(api, hq, store_id, {
        "mon": [{"open": "16:00", "close": "22:00"}, {"open": "10:00", "close": "14:00"}],
        "fri": {"open": "18:00", "close": "02:00"}})
    assert body["business_hours"] == {
        "mon": [{"open": "10:00:00", "close": "14:00:00"}, {"open": "16:00:00", "close": "22:00:00"}],
        "fri": [{"open": "18:00:00", "close": "02:00:00"}]}
    assert api.get(f"/stores/{store_id}", hq) == (200, body)


@pytest.mark.parametrize("hours", [
    {"mon": [{"open": "10:00", "close": "14:00"}, {"open": "12:00", "close": "18:00"}]},
    {"sun": {"open": "20:00", "close": "03:00"}, "mon": {"open": "02:00", "close": "09:00"}},
    {"tue": {"open": "09:00", "close": "09:00"}},
])
def test_overlapping_or_empty_windows_are_refused(api, hq, hours):
    store_id = sid()
    status, body = api.put(f"/stores/{store_id}", {**STORE, "business_hours": hours}, hq)
    assert (status, body["code"]) == (422, "validation_error"), body
    assert body["details"][0]["loc"][:2] == ["body", "business_hours"], body
    assert api.get(f"/stores/{store_id}", hq)[0] == 404


def test_a_store_written_in_the_old_shape_before_today_still_loads(api, hq, stack):
    """An item as the old code wrote it (one object a day, open == close meaning 24 hours) reads back."""
    from chalicelib.store import keys

    store_id = sid()
    bootstrap.db().put({**keys.store_key(store_id), "type": "store", "store_id": store_id, "name": "老店",
                        "region_id": "east", "city": "上海", "store_type": "standard",
                        "business_hours": {"mon": {"open": "08:00", "close": "08:00"}},
                        "updated_at": "2025-01-01T00:00:00.000+08:00"})
    status, body = api.get(f"/stores/{store_id}", hq)
    assert status == 200, body
    assert body["business_hours"] == {"mon": [{"open": "08:00:00", "close": "08:00:00"}]}
    # Mon 2026-11-30 08:00 for 24 hours: a 30-minute target from Tue 07:50 is 10 min, then next Monday 08:20
    cal = calendar_for_queue(store_queue(store_id), bootstrap.stores(), bootstrap.calendars())
    assert cal.add_business(at(2026, 12, 1, 7, 50), 30) == at(2026, 12, 7, 8, 20)


# ---- the brand calendar -----------------------------------------------------------------------------------
def test_the_brand_calendar_is_written_by_hq_and_read_by_staff(api, hq, tokens, fresh_table):
    staff = tokens.staff(stores=["sh-001"])
    assert api.get("/calendars/brand", staff) == (200, {"holidays": [], "workdays": [], "updated_at": None})
    status, body = api.put("/calendars/brand", NATIONAL_DAY, hq)
    assert status == 200, body
    assert body["holidays"] == [{"start": "2026-10-01", "end": "2026-10-07", "name": "国庆节"}]
    assert body["workdays"] == [{"date": "2026-10-10", "hours_of": "mon", "name": "国庆调休"}]
    assert body["updated_at"]
    assert api.get("/calendars/brand", staff) == (200, body)
    assert api.put("/calendars/brand", NATIONAL_DAY, staff)[1]["code"] == "role_not_allowed"


def test_a_brand_calendar_that_contradicts_itself_is_refused_and_nothing_changes(api, hq, fresh_table):
    before = api.put("/calendars/brand", NATIONAL_DAY, hq)[1]
    status, body = api.put("/calendars/brand", {
        "holidays": [{"start": "2026-10-01", "end": "2026-10-07"}],
        "workdays": [{"date": "2026-10-03", "hours_of": "mon"}]}, hq)
    assert (status, body["code"]) == (422, "validation_error"), body
    assert api.get("/calendars/brand", hq) == (200, before)


def test_a_store_queue_counts_in_the_stores_hours_the_brand_calendar_and_its_closures(api, hq, tokens, fresh_table):
    """Open Mon-Fri 10:00-22:00. Holidays Oct 1-7, Sat Oct 10 worked as a Monday; the store closes Thu Oct 8."""
    store_id = sid()
    put_store(api, hq, store_id, {d: {"open": "10:00", "close": "22:00"} for d in DAYS[:5]})
    queue = store_queue(store_id)
    cal = calendar_for_queue(queue, bootstrap.stores(), bootstrap.calendars())
    # no brand calendar yet: Wed 09-30 21:55 + 30 -> Thu 10-01 10:25
    assert cal.add_business(at(2026, 9, 30, 21, 55), 30) == at(2026, 10, 1, 10, 25)

    assert api.put("/calendars/brand", NATIONAL_DAY, hq)[0] == 200
    manager = tokens.staff("store_manager", stores=[store_id])
    status, body = api.put(f"/stores/{store_id}/closures", {"closures": [{"start": "2026-10-08"}]}, manager)
    assert status == 200, body
    cal = calendar_for_queue(queue, bootstrap.stores(), bootstrap.calendars())
    # 5 min on 09-30; Oct 1-7 holidays; Oct 8 closed by the store; Fri Oct 9 10:25
    assert cal.add_business(at(2026, 9, 30, 21, 55), 30) == at(2026, 10, 9, 10, 25)
    # Fri 10-09 21:55 + 30: Saturday is worked with Monday's 10:00-22:00 -> Sat 10-10 10:25
    assert cal.add_business(at(2026, 10, 9, 21, 55), 30) == at(2026, 10, 10, 10, 25)
    # a hold over the holidays uses nothing
    assert cal.business_between(at(2026, 9, 30, 22, 0), at(2026, 10, 9, 10, 0)) == 0


def test_a_store_with_no_hours_counts_around_the_clock(api, hq):
    """No hours at all (an online store, hours never entered): 24/7, so its tickets still get deadlines. A
    calendar that has hours but never opens long enough is refused by the guard (tests/unit/test_calendars)."""
    store_id = sid()
    put_store(api, hq, store_id, {})
    cal = calendar_for_queue(store_queue(store_id), bootstrap.stores(), bootstrap.calendars())
    assert cal is ALWAYS
    assert cal.add_business(at(2026, 12, 3, 23, 50), 30) == at(2026, 12, 4, 0, 20)


# ---- office calendars -------------------------------------------------------------------------------------
def test_office_calendars_and_the_queues_that_count_in_them(api, hq, tokens, fresh_table):
    region = QueueRecord(queue_id="east-service", kind="region", name="华东客服", region_id="east")
    # nothing defined: 24/7
    assert calendar_for_queue(region, bootstrap.stores(), bootstrap.calendars()) is ALWAYS
    assert api.get("/calendars/office", hq)[1]["code"] == "calendar_not_found"

    hours = {d: {"open": "09:00", "close": "18:00"} for d in DAYS[:5]}
    status, body = api.put("/calendars/office", {"name": "总部客服", "hours": hours}, hq)
    assert status == 201, body
    assert body == {"calendar_id": "office", "name": "总部客服", "honours_brand_calendar": True,
                    "hours": {d: [{"open": "09:00:00", "close": "18:00:00"}] for d in DAYS[:5]},
                    "updated_at": body["updated_at"]}
    assert api.get("/calendars/office", tokens.staff("region_manager", region="east")) == (200, body)
    assert api.put("/calendars/brand", NATIONAL_DAY, hq)[0] == 200

    cal = calendar_for_queue(region, bootstrap.stores(), bootstrap.calendars())
    # Wed 09-30 17:45 + 30: 15 min, Oct 1-7 holidays, Thu 10-08 09:15
    assert cal.add_business(at(2026, 9, 30, 17, 45), 30) == at(2026, 10, 8, 9, 15)

    status, body = api.put("/calendars/office", {"hours": hours, "honours_brand_calendar": False}, hq)
    assert (status, body["honours_brand_calendar"], body["name"]) == (200, False, None)
    cal = calendar_for_queue(region, bootstrap.stores(), bootstrap.calendars())
    assert cal.add_business(at(2026, 9, 30, 17, 45), 30) == at(2026, 10, 1, 9, 15)

    # a 24/7 office calendar ignores the brand calendar unless told otherwise
    status, body = api.put("/calendars/hotline", {"name": "热线"}, hq)
    assert (status, body["hours"], body["honours_brand_calendar"]) == (201, None, False)


@pytest.mark.parametrize("path", ["/calendars/Office", "/calendars/-x", "/calendars/" + "a" * 49])
def test_a_calendar_id_outside_its_pattern_is_not_found(api, hq, path):
    status, body = api.get(path, hq)
    assert (status, body["code"]) == (404, "calendar_not_found"), body


def test_only_hq_writes_office_calendars(api, tokens):
    for token in (tokens.staff("region_manager", region="east"), tokens.staff("store_manager", stores=["sh-001"])):
        status, body = api.put(f"/calendars/{sid()}", {}, token)
        assert (status, body["code"]) == (403, "role_not_allowed")


# ---- closures ---------------------------------------------------------------------------------------------
def test_closures_are_written_by_the_stores_managers_and_read_by_its_staff(api, hq, tokens):
    store_id = sid()
    put_store(api, hq, store_id, {"mon": {"open": "10:00", "close": "22:00"}})
    staff = tokens.staff(stores=[store_id])
    assert api.get(f"/stores/{store_id}/closures", staff) == (200, {"store_id": store_id, "closures": [],
                                                                    "updated_at": None})
    closures = {"closures": [{"start": "2026-12-20", "end": "2026-12-24", "name": "装修"}, {"start": "2027-01-01"}]}
    region = tokens.staff("region_manager", region="east")
    status, body = api.put(f"/stores/{store_id}/closures", closures, region)
    assert status == 200, body
    assert body["closures"] == [{"start": "2026-12-20", "end": "2026-12-24", "name": "装修"},
                                {"start": "2027-01-01", "end": None, "name": None}]
    assert api.get(f"/stores/{store_id}/closures", staff) == (200, body)
    # staff may not, another store's manager may not, another region's manager may not
    assert api.put(f"/stores/{store_id}/closures", closures, staff)[1]["code"] == "role_not_allowed"
    other = tokens.staff("store_manager", stores=["gz-001"])
    assert api.put(f"/stores/{store_id}/closures", closures, other)[1]["code"] == "store_out_of_scope"
    south = tokens.staff("region_manager", region="south")
    assert api.put(f"/stores/{store_id}/closures", closures, south)[1]["code"] == "store_out_of_scope"
    # replacing the store keeps its closures (they are not on the store item)
    put_store(api, hq, store_id, {"tue": {"open": "10:00", "close": "22:00"}})
    assert api.get(f"/stores/{store_id}/closures", staff) == (200, body)


def test_closures_of_an_unknown_store_are_not_found(api, hq):
    store_id = sid()
    status, body = api.put(f"/stores/{store_id}/closures", {"closures": []}, hq)
    assert (status, body["code"]) == (404, "store_not_found")
    assert api.get(f"/stores/{store_id}/closures", hq)[1]["code"] == "store_not_found"


@pytest.mark.parametrize("closures", [
    [{"start": "2026-12-24", "end": "2026-12-20"}],
    [{"start": "2026-01-01", "end": "2027-01-02"}],  # 367 days: a span covers at most 366
    [{"start": "2026-12-24", "until": "2026-12-25"}],
    [{"start": 20261224}],
])
def test_bad_closures_are_refused(api, hq, closures):
    store_id = sid()
    put_store(api, hq, store_id, {})
    status, body = api.put(f"/stores/{store_id}/closures", {"closures": closures}, hq)
    assert (status, body["code"]) == (422, "validation_error"), body
    assert api.get(f"/stores/{store_id}/closures", hq)[1]["updated_at"] is None
