"""Ticket numbers for HQ end to end (chalice test client, DynamoDB Local, a fresh table so every number is
ours): tickets driven with a frozen clock over three past days, then GET /tickets/stats checked against numbers
worked out by hand here, grouped by each dimension; a replayed action counts once; the range rules; who may ask.

The stores are open 10:00-22:00 every day; the SLA policy is the default (first response 30 business minutes,
resolution 24 wall hours); the brand calendar is empty (no holidays). The tickets (days are June 2026):

  T1 store ta (region r1), hotline, complaint: opened 8th 10:00, reply 10:10 (600 s, met), resolved 15:00
     (met), rated 5 at 16:00
  T2 store ta, store, complaint: opened 8th 11:00, reply 12:00 (3,600 s, 60 business minutes: breached),
     resolved 9th 13:00 (26 h: breached), rated 2 on the 9th 14:00
  T3 store tb (region r1), hotline, inquiry: opened 8th 21:50, reply 9th 10:15 (44,700 wall seconds, but 10 +
     15 = 25 business minutes: met), resolved 9th 11:00 (13 h 10 min: met)
  T4 store tc (region r2), miniprogram, refund: opened 9th 10:00, no reply, closed 10th 12:00 (first response
     never given: 12 business hours on the 9th alone, breached; resolution 26 h: breached)
  T5 no store (HQ's queue, 24/7), email, complaint: opened 10th 09:00 by HQ, reply 09:20 (1,200 s, met)

Quantiles are the midpoints of the log buckets (ratio 1.2) holding the nearest-rank sample, rounded:
  600 s    in [1.2^35, 1.2^36) = [590.67, 708.80)       -> 650
  1,200 s  in [1.2^38, 1.2^39) = [1020.67, 1224.81)     -> 1123
  3,600 s  in [1.2^44, 1.2^45) = [3047.72, 3657.26)     -> 3352
  44,700 s in [1.2^58, 1.2^59) = [39130.22, 46956.26)   -> 43043
each within 10 % of the exact value (the stated bound)."""
from __future__ import annotations

import uuid
from datetime import datetime

import pytest

from chalicelib.domain import clock
from testkit.support import create_stores, registration

TZ = clock.BUSINESS_TZ
HOURS = {d: {"open": "10:00", "close": "22:00"} for d in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")}
EST = {600: 650, 1200: 1123, 3600: 3352, 44700: 43043}


def at(day: int, hh: int, mm: int = 0) -> datetime:
    return datetime(2026, 6, day, hh, mm, tzinfo=TZ)


def uid(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def world(api, tokens, fresh_table, monkeypatch):
    """The five tickets above, in a table of their own."""
    create_stores()
    hq = tokens.hq()
    for store_id, region in (("ta", "r1"), ("tb", "r1"), ("tc", "r2")):
        status, _ = api.put(f"/stores/{store_id}", {"name": store_id, "region_id": region, "city": "上海",
                                                   "store_type": "standard", "business_hours": HOURS}, hq)
        assert status in (200, 201)
    staff = {s: tokens.staff(stores=[s], sub=f"agent-{s}") for s in ("ta", "tb", "tc")}
    status, member = api.post("/members", registration(store_id="ta"), staff["ta"])
    assert status == 201, member
    me = tokens.member(member["member_id"])

    def when(t: datetime) -> None:
        monkeypatch.setattr(clock, "now", lambda: t)

    def open_(t: datetime, token: str, **body) -> str:
        when(t)
        status, made = api.post("/tickets", {"ticket_id": uid("tk"), "subject": "s", "description": "d", **body},
                                token)
        assert status == 201, made
        return made["ticket_id"]

    def act(t: datetime, token: str, ticket_id: str, kind: str, action_id: str | None = None, **fields) -> int:
        when(t)
        status, done = api.post(f"/tickets/{ticket_id}/actions",
                                {"action_id": action_id or uid("a"), "type": kind, **fields}, token)
        assert status in (200, 201), done
        return status

    t1 = open_(at(8, 10), staff["ta"], channel="hotline", type="complaint", store_id="ta",
               member_id=member["member_id"])
    t2 = open_(at(8, 11), staff["ta"], channel="store", type="complaint", store_id="ta",
               member_id=member["member_id"])
    t3 = open_(at(8, 21, 50), staff["tb"], channel="hotline", type="inquiry", store_id="tb")
    t4 = open_(at(9, 10), staff["tc"], channel="miniprogram", type="refund", store_id="tc")
    t5 = open_(at(10, 9), hq, channel="email", type="complaint")

    assert act(at(8, 10, 10), staff["ta"], t1, "reply", action_id="t1-reply", body="您好") == 201
    assert act(at(8, 10, 11), staff["ta"], t1, "reply", action_id="t1-reply", body="您好") == 200  # a replay
    act(at(8, 15), staff["ta"], t1, "resolve")
    act(at(8, 16), me, t1, "rate", score=5)
    act(at(8, 12), staff["ta"], t2, "reply", body="抱歉")
    act(at(9, 13), staff["ta"], t2, "resolve")
    act(at(9, 14), me, t2, "rate", score=2)
    act(at(9, 10, 15), staff["tb"], t3, "comment", body="内部")  # adds nothing
    act(at(9, 10, 15), staff["tb"], t3, "reply", body="您好")
    act(at(9, 11), staff["tb"], t3, "resolve")
    act(at(10, 12), staff["tc"], t4, "close")
    act(at(10, 9, 20), hq, t5, "reply", body="收到")
    monkeypatch.undo()
    return hq


def stats(api, token, first: str, last: str, group_by: str):
    return api.get(f"/tickets/stats?from={first}&to={last}&group_by={group_by}", token)


def by_value(answer) -> dict:
    return {g["value"]: g for g in answer["groups"]}


def group(opened, samples, fr, res, rated, avg, median=None, p90=None):
    """A group's expected numbers: samples = first-response count; fr/res = (met, breached)."""
    def bp(met, breached):
        return met * 10_000 // (met + breached) if met + breached else None
    return {"opened": opened, "first_response": {"count": samples, "median_seconds": median, "p90_seconds": p90},
            "first_response_met": fr[0], "first_response_breached": fr[1], "first_response_met_rate_bp": bp(*fr),
            "resolution_met": res[0], "resolution_breached": res[1], "resolution_met_rate_bp": bp(*res),
            "satisfaction": {"count": rated, "average_x100": avg}}


def without_value(g: dict) -> dict:
    return {k: v for k, v in g.items() if k != "value"}


def test_numbers_by_store_region_type_and_channel_match_the_hand_count(api, world):
    hq = world
    status, answer = stats(api, hq, "2026-06-08", "2026-06-10", "store")
    assert status == 200, answer
    assert (answer["first_day"], answer["last_day"], answer["group_by"]) == ("2026-06-08", "2026-06-10", "store")
    got = by_value(answer)
    assert list(got) == ["ta", "tb", "tc", None]  # by value, no store last
    # ta: T1 and T2. Samples 600, 3600: median = 1st of 2 (600), p90 = 2nd (3600). 1 of 2 met each; 5 and 2.
    assert without_value(got["ta"]) == group(2, 2, (1, 1), (1, 1), 2, 350, EST[600], EST[3600])
    assert without_value(got["tb"]) == group(1, 1, (1, 0), (1, 0), 0, None, EST[44700], EST[44700])
    assert without_value(got["tc"]) == group(1, 0, (0, 1), (0, 1), 0, None)
    assert without_value(got[None]) == group(1, 1, (1, 0), (0, 0), 0, None, EST[1200], EST[1200])
    for exact in EST:  # the stated bound
        assert abs(EST[exact] - exact) <= 0.1 * exact + 0.5

    got = by_value(stats(api, hq, "2026-06-08", "2026-06-10", "region")[1])
    assert list(got) == ["r1", "r2", None]
    # r1: T1-T3. Samples 600, 3600, 44700: median = 2nd of 3, p90 = 3rd (ceil(2.7)).
    assert without_value(got["r1"]) == group(3, 3, (2, 1), (2, 1), 2, 350, EST[3600], EST[44700])
    assert without_value(got["r2"]) == without_value(by_value(stats(api, hq, "2026-06-08", "2026-06-10",
                                                                      "store")[1])["tc"])

    got = by_value(stats(api, hq, "2026-06-08", "2026-06-10", "type")[1])
    assert list(got) == ["complaint", "inquiry", "refund"]
    # complaint: T1, T2, T5. Samples 600, 1200, 3600. T5 has no resolution yet.
    assert without_value(got["complaint"]) == group(3, 3, (2, 1), (1, 1), 2, 350, EST[1200], EST[3600])
    assert got["inquiry"]["opened"] == 1 and got["refund"]["first_response_breached"] == 1

    got = by_value(stats(api, hq, "2026-06-08", "2026-06-10", "channel")[1])
    assert list(got) == ["email", "hotline", "miniprogram", "store"]
    # hotline: T1, T3. Samples 600, 44700: median the 1st, p90 the 2nd; only T1 was rated (5).
    assert without_value(got["hotline"]) == group(2, 2, (2, 0), (2, 0), 1, 500, EST[600], EST[44700])
    assert without_value(got["store"]) == group(1, 1, (0, 1), (0, 1), 1, 200, EST[3600], EST[3600])
    assert without_value(got["email"]) == without_value(by_value(stats(api, hq, "2026-06-08", "2026-06-10",
                                                                         "store")[1])[None])


def test_each_change_counts_on_the_day_it_happened(api, world):
    hq = world
    got = by_value(stats(api, hq, "2026-06-09", "2026-06-09", "store")[1])
    # the 9th: T2's resolve (breached) and rating (2); T3's reply and resolve; T4 opened (closed the 10th)
    assert without_value(got["ta"]) == group(0, 0, (0, 0), (0, 1), 1, 200)
    assert without_value(got["tb"]) == group(0, 1, (1, 0), (1, 0), 0, None, EST[44700], EST[44700])
    assert without_value(got["tc"]) == group(1, 0, (0, 0), (0, 0), 0, None)
    assert None not in got  # T5 is of the 10th
    assert stats(api, hq, "2026-06-11", "2026-09-10", "type")[1]["groups"] == []  # 92 days, nothing in them


def test_range_rules(api, world):
    hq = world
    status, err = stats(api, hq, "2026-06-10", "2026-06-08", "store")
    assert status == 422 and err["code"] == "validation_error"
    status, err = stats(api, hq, "2026-06-01", "2026-09-01", "store")  # 93 days
    assert status == 422 and err["code"] == "validation_error"
    assert stats(api, hq, "2026-06-01", "2026-08-31", "store")[0] == 200  # 92 days
    assert stats(api, hq, "2026-06-01", "2026-06-02", "queue")[0] == 422
    assert api.get("/tickets/stats?from=2026-06-01&to=2026-06-02", hq)[0] == 422  # group_by is required
    assert api.get("/tickets/stats?from=2026-6-1&to=2026-06-02&group_by=store", hq)[0] == 422


def test_who_may_ask(api, tokens, world):
    r1 = tokens.staff("region_manager", region="r1", sub="rm-1")
    status, answer = stats(api, r1, "2026-06-08", "2026-06-10", "store")
    assert status == 200, answer
    assert [g["value"] for g in answer["groups"]] == ["ta", "tb"]  # their region's stores only
    hq_view = by_value(stats(api, world, "2026-06-08", "2026-06-10", "store")[1])
    assert by_value(answer)["ta"] == hq_view["ta"]
    status, answer = stats(api, r1, "2026-06-08", "2026-06-10", "region")
    assert status == 200 and [g["value"] for g in answer["groups"]] == ["r1"]
    for dim in ("type", "channel"):  # brand-wide: HQ's
        status, err = stats(api, r1, "2026-06-08", "2026-06-10", dim)
        assert status == 403 and err["code"] == "group_by_not_allowed"
    status, err = stats(api, tokens.staff("region_manager", sub="rm-none"), "2026-06-08", "2026-06-10", "store")
    assert status == 403  # a region manager with no region
    for token in (tokens.staff("store_manager", stores=["ta"]), tokens.staff(stores=["ta"]),
                  tokens.staff("integration", stores=["ta"]), tokens.member("01J0000000000000000000000")):
        status, err = stats(api, token, "2026-06-08", "2026-06-10", "store")
        assert status == 403 and err["code"] == "role_not_allowed", err
