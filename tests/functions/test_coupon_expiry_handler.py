"""The daily coupon expiry job against DynamoDB Local: available coupons past their last valid day are marked
expired through the index (missed nights caught up), used ones and those still valid today are left alone,
and one 'coupon_expiring' fact is written per coupon 3 days before its last valid day, once."""
from __future__ import annotations

import uuid
from datetime import date, timedelta
from typing import Any

import pytest

from chalicelib import bootstrap
from chalicelib.cli import _LocalContext
from chalicelib.domain import clock
from chalicelib.domain.coupons import Coupon
from chalicelib.store import keys
from functions.coupon_expiry import handler
from testkit.support import create_stores, registration


@pytest.fixture
def hq(tokens):
    return tokens.hq()


@pytest.fixture
def staff(tokens):
    return tokens.staff(stores=["sh-001"])


@pytest.fixture
def table(fresh_table):
    create_stores()  # the counter needs sh-001 in this table too
    return fresh_table


def _template(api, hq, valid_days: int) -> str:
    template_id = f"t-{uuid.uuid4().hex[:10]}"
    body = {"name": f"{valid_days}天券", "kind": "cash", "value": 500, "valid_days": valid_days}
    assert api.put(f"/coupon-templates/{template_id}", body, hq)[0] == 201
    return template_id


def _issue(api, hq, valid_days: int, *member_ids: str) -> list[str]:
    """One coupon per member of a new template valid until the end of the issue day + `valid_days`."""
    status, answer = api.post("/coupon-issues", {"issue_id": f"i-{uuid.uuid4().hex[:10]}",
                                                 "template_id": _template(api, hq, valid_days),
                                                 "member_ids": list(member_ids)}, hq)
    assert status == 201 and answer["issued_count"] == len(member_ids), answer
    return [row["code"] for row in answer["issued"]]


def _coupon(code: str) -> Coupon:
    found = bootstrap.coupons().get_coupon(code)
    assert found is not None
    return found


def _last_day(code: str) -> date:
    return clock.business_day(_coupon(code).valid_to)


def _bucket(day: date) -> list[str]:
    return sorted(c.code for c in bootstrap.coupons().due_coupons(day))


def _run(day: date) -> dict[str, int]:
    return handler({"date": day.isoformat()}, _LocalContext("coupon-expiry"))


def _facts(member_id: str) -> list[dict[str, Any]]:
    return list(bootstrap.db().query_all(KeyConditionExpression="pk = :pk AND begins_with(sk, :f)",
                                         values={":pk": keys.member_pk(member_id), ":f": "FACT#coupon_expiring#"}))


def test_expired_coupons_are_marked_and_leave_the_index_used_and_still_valid_ones_stay(table, api, hq, staff,
                                                                                        tokens):
    member = api.post("/members", registration(), staff)[1]["member_id"]
    (lapsing,), (used,) = _issue(api, hq, 1, member), _issue(api, hq, 1, member)
    (last_today,) = _issue(api, hq, 2, member)
    redeem = {"member_id": member, "store_id": "sh-001", "order_id": f"o-{uuid.uuid4().hex[:8]}",
              "order_amount": 10_000}
    assert api.post(f"/coupons/{used}/redeem", redeem, staff)[0] == 201
    today = _last_day(last_today)  # run as of the last day `last_today` may be used
    yesterday = today - timedelta(days=1)
    assert _last_day(lapsing) == _last_day(used) == yesterday and _bucket(yesterday) == [lapsing]
    used_before = _coupon(used)

    assert _run(today)["coupons_expired"] == 1
    assert (_coupon(lapsing).state, _coupon(lapsing).version) == ("expired", 2)
    assert _bucket(yesterday) == []  # it left the sparse index
    assert _coupon(used) == used_before  # a used coupon is not touched
    assert _coupon(last_today).state == "available" and _bucket(today) == [last_today]  # valid until today
    status, page = api.get(f"/members/{member}/coupons?state=expired", tokens.member(member))
    assert status == 200 and [c["code"] for c in page["items"]] == [lapsing]

    snapshot = {code: _coupon(code) for code in (lapsing, used, last_today)}
    assert _run(today) == {"coupons_expired": 0, "expiring_facts": 0}  # again for the same day: nothing
    assert {code: _coupon(code) for code in snapshot} == snapshot
    assert _run(today + timedelta(days=1))["coupons_expired"] == 1  # the next night takes `last_today`
    assert _coupon(last_today).state == "expired" and _bucket(today) == []


def test_missed_nights_are_caught_up_in_one_run(table, api, hq, staff):
    member = api.post("/members", registration(), staff)[1]["member_id"]
    codes = [code for days in (0, 1, 3) for code in _issue(api, hq, days, member)]
    (kept,) = _issue(api, hq, 6, member)
    today = _last_day(kept)  # the job did not run for six nights; the three coupons lapsed on three of them
    assert [_last_day(code) for code in codes] == [today - timedelta(days=d) for d in (6, 5, 3)]

    assert _run(today)["coupons_expired"] == 3
    assert [_coupon(code).state for code in codes] == ["expired"] * 3
    assert all(_bucket(today - timedelta(days=d)) == [] for d in range(1, 8))
    assert _coupon(kept).state == "available"
    assert _run(today)["coupons_expired"] == 0


def test_an_expiring_fact_is_written_three_days_before_the_last_day_once(table, api, hq, staff):
    member, other = (api.post("/members", registration(), staff)[1]["member_id"] for _ in range(2))
    mine, others = _issue(api, hq, 5, member, other)
    (later,) = _issue(api, hq, 6, member)
    last_day = _last_day(mine)
    today = last_day - timedelta(days=3)

    assert _run(today - timedelta(days=1))["expiring_facts"] == 0  # four days before: not yet
    assert _run(today) == {"coupons_expired": 0, "expiring_facts": 2}
    (fact,) = _facts(member)
    assert fact["sk"] == f"FACT#coupon_expiring#{mine}"
    coupon = _coupon(mine)
    body = bootstrap.ledger().get_document("fact", member, f"coupon_expiring#{mine}")
    assert body == {"type": "coupon_expiring", "member_id": member, "code": mine,
                    "template_id": coupon.template_id, "name": "5天券", "valid_to": clock.iso(coupon.valid_to),
                    "last_day": last_day.isoformat()}
    assert [f["sk"] for f in _facts(other)] == [f"FACT#coupon_expiring#{others}"]

    assert _run(today)["expiring_facts"] == 0  # the job ran twice: no second fact
    assert _facts(member) == [fact]
    assert _run(today + timedelta(days=1))["expiring_facts"] == 1  # `later` the next night, only it
    assert sorted(f["sk"] for f in _facts(member)) == sorted(
        [f"FACT#coupon_expiring#{mine}", f"FACT#coupon_expiring#{later}"])


def test_the_fact_names_the_survivor_of_a_merge_and_an_erased_holder_is_not_told(table, api, hq, staff):
    survivor, merged, erased = (api.post("/members", registration(), staff)[1]["member_id"] for _ in range(3))
    from_merged, from_erased = _issue(api, hq, 4, merged, erased)
    assert api.post(f"/members/{survivor}/merge", {"source_member_id": merged}, hq)[0] in (200, 201, 202)
    assert api.delete(f"/members/{erased}", hq)[0] == 200

    assert _run(_last_day(from_merged) - timedelta(days=3))["expiring_facts"] == 1
    body = bootstrap.ledger().get_document("fact", merged, f"coupon_expiring#{from_merged}")
    assert (body["member_id"], body["issued_to"]) == (survivor, merged)
    assert _facts(erased) == [] and _coupon(from_erased).state == "available"
