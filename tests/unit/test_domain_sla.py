"""SLA clocks (chalicelib/domain/sla.py) against cases worked out by hand, with a store calendar written here
(open 10:00-22:00 every day, closed on a given holiday), and generated clocks for the invariants."""
from __future__ import annotations

from collections.abc import Iterator
from datetime import date, datetime, time, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from chalicelib.domain import clock
from chalicelib.domain.sla import (
    ALWAYS,
    WALL,
    SlaPolicy,
    SlaRule,
    Target,
    add_seconds,
    business_seconds,
    on_event,
    open_sla,
    pause,
    resume,
    start,
    stop,
)
from chalicelib.domain.tickets import ActionType, Channel, Event, Priority, Ticket, TicketType, apply

TZ = clock.BUSINESS_TZ
HOLIDAY = date(2026, 12, 5)


class Shop:
    """Open 10:00-22:00, closed on HOLIDAY."""

    def open_windows(self, start: datetime, until: datetime) -> Iterator[tuple[datetime, datetime]]:
        day = start.astimezone(TZ).date() - timedelta(days=1)
        while datetime.combine(day, time(0), TZ) < until:
            if day != HOLIDAY:
                a, b = datetime.combine(day, time(10), TZ), datetime.combine(day, time(22), TZ)
                if b > start:
                    yield a, b
            day += timedelta(days=1)


SHOP = Shop()


def cals(key: str):
    return ALWAYS if key in (WALL, "hq-service") else SHOP


def at(day: int, hh: int, mm: int = 0, ss: int = 0) -> datetime:
    return datetime(2026, 12, day, hh, mm, ss, tzinfo=TZ)


def test_opened_just_before_closing_is_due_the_next_opening_morning():
    c = start(Target(minutes=30), "store-a", at(1, 21, 55), cals, 75)
    assert c.due_at == at(2, 10, 25)  # 5 minutes tonight, 25 tomorrow
    assert c.at_risk_at == at(2, 10, 17, 30)  # 75 % of 30 minutes = 22.5: 5 tonight, 17.5 tomorrow
    assert c.state(at(1, 23, 59)) == "within" and c.state(at(2, 10, 20)) == "at_risk"
    assert c.state(at(2, 10, 25)) == "breached"


def test_a_holiday_is_skipped():
    c = start(Target(minutes=60), "store-a", at(4, 21, 30), cals, 75)
    assert c.due_at == at(6, 10, 30)  # 30 minutes on the 4th, the 5th closed, 30 on the 6th


def test_a_hold_across_closing_time_consumes_nothing_while_paused():
    c = start(Target(minutes=120), "store-a", at(1, 21, 0), cals, 75)
    held = pause(c, at(1, 21, 30), cals)
    assert (held.used, held.due_at, held.running) == (30 * 60, None, False)
    back = resume(held, at(2, 11, 0), cals, 75)
    assert back.due_at == at(2, 12, 30)  # 90 minutes left from 11:00
    assert stop(back, at(2, 12, 0), cals).outcome == "met"
    assert stop(back, at(2, 12, 31), cals).outcome == "breached"


def test_wall_time_counts_the_closed_night():
    c = start(Target(minutes=24 * 60, clock="wall"), "store-a", at(1, 21, 55), cals, 75)
    assert (c.calendar, c.due_at, c.at_risk_at) == (WALL, at(2, 21, 55), at(2, 15, 55))


def ticket(**kw) -> Ticket:
    base = dict(ticket_id="t1", channel=Channel.STORE, type=TicketType.COMPLAINT, subject="s", description="",
                store_id="a", member_id=None, order_id=None, queue_id="store-a", priority=Priority.NORMAL,
                created_at=at(1, 21, 55), created_by="clerk")
    base.update(kw)
    return Ticket(**base)


def event(kind: str, when: datetime, role: str = "staff", **data) -> Event:
    return Event(action_id=f"{kind}-{when.isoformat()}", type=ActionType(kind), by="agent", by_role=role, at=when,
                 data=data)


def step(t: Ticket, sla, e: Event):
    after = apply(t, e)
    return after, on_event(sla, t, after, e, cals)


def test_first_reply_stops_first_response_transfer_to_a_24_7_queue_and_reopen_keep_time_used():
    t = ticket()
    sla = open_sla(SlaPolicy(), t, cals)  # defaults: 30 business minutes, 24 wall hours
    assert sla.first_response.due_at == at(2, 10, 25) and sla.resolution.due_at == at(2, 21, 55)
    assert sla.next_check() == at(2, 10, 17, 30)

    t, moved = step(t, sla, event("transfer", at(1, 21, 58), queue_id="hq-service"))
    assert moved.first_response.calendar == "hq-service"
    assert moved.first_response.due_at == at(1, 22, 25)  # 3 minutes used at the store, 27 more on the clock
    assert moved.resolution.due_at == at(2, 21, 55)  # wall time: the queue does not matter

    t, member_reply = step(t, moved, event("reply", at(1, 22, 0), role="member"))
    assert member_reply.first_response.running  # the member adding to their ticket is no response
    t, answered = step(t, member_reply, event("reply", at(1, 22, 10)))
    assert (answered.first_response.outcome, answered.first_response.done_at) == ("met", at(1, 22, 10))

    t, done = step(t, answered, event("resolve", at(2, 9, 0)))
    assert done.resolution.outcome == "met" and done.resolution.used == 11 * 3600 + 5 * 60
    assert done.next_check() is None  # nothing left to escalate: out of the due index
    t, again = step(t, done, event("reopen", at(2, 10, 0)))
    assert again.resolution.running and again.resolution.outcome is None
    assert again.resolution.due_at == at(2, 10, 0) + timedelta(hours=24) - timedelta(hours=11, minutes=5)
    assert again.first_response.outcome == "met"  # first response never re-arms


def test_escalation_steps_fall_due_in_order_once_each():
    t = ticket()
    sla = open_sla(SlaPolicy(rules=[SlaRule(priority=Priority.NORMAL, first_response=Target(minutes=30),
                                            resolution=Target(minutes=60))], hq_after_minutes=30), t, cals)
    assert sla.due_steps(at(2, 10, 17)) == []
    assert sla.due_steps(at(2, 10, 18)) == ["first_response_at_risk"]
    first = sla.escalate(sla.due_steps(at(2, 10, 18)))
    assert first.stage == "at_risk" and first.next_check() == at(2, 10, 25)
    assert first.due_steps(at(2, 10, 18)) == []  # a re-run takes nothing twice
    late = first.due_steps(at(2, 12, 0))
    assert late == ["first_response_breached", "resolution_at_risk", "resolution_breached",
                    "resolution_breached_hq"]  # res: 5 + 55 minutes -> 10:55; HQ 30 minutes later
    assert first.escalate(late).stage == "breached" and first.escalate(late).next_check() is None


# ---- generated clocks ----------------------------------------------------------------------------------------
moments = st.integers(min_value=0, max_value=6 * 24 * 60).map(lambda m: at(1, 0) + timedelta(minutes=m))


@settings(max_examples=150, deadline=None)
@given(moments, st.integers(min_value=0, max_value=3 * 24 * 60))
def test_business_time_never_exceeds_wall_time(begin, minutes):
    end = begin + timedelta(minutes=minutes)
    assert 0 <= business_seconds(SHOP, begin, end) <= (end - begin).total_seconds()


@settings(max_examples=150, deadline=None)
@given(moments, st.integers(min_value=1, max_value=2_000))
def test_a_due_time_is_inside_an_open_window_and_uses_exactly_the_target(begin, minutes):
    due = add_seconds(SHOP, begin, minutes * 60)
    assert due is not None
    local = due.astimezone(TZ)
    assert local.date() != HOLIDAY and time(10) < local.time() <= time(22) or local.time() == time(22)
    assert business_seconds(SHOP, begin, due) == minutes * 60


@settings(max_examples=100, deadline=None)
@given(moments, st.integers(min_value=1, max_value=600), st.integers(min_value=0, max_value=2 * 24 * 60))
def test_pausing_consumes_nothing(begin, run_minutes, paused_minutes):
    c = start(Target(minutes=10_000), "store-a", begin, cals, 75)
    held = pause(c, begin + timedelta(minutes=run_minutes), cals)
    later = pause(resume(held, begin + timedelta(minutes=run_minutes + paused_minutes), cals, 75),
                  begin + timedelta(minutes=run_minutes + paused_minutes), cals)
    assert later.used == held.used == business_seconds(SHOP, begin, begin + timedelta(minutes=run_minutes))


def test_who_is_told_at_each_step():
    from chalicelib.domain.sla import recipients
    from chalicelib.domain.tickets import QueueRecord

    store_q = QueueRecord(queue_id="store-a", kind="store", name="a", store_id="a", region_id="east")
    region_q = QueueRecord(queue_id="east-desk", kind="region", name="east", region_id="east")
    hq_q = QueueRecord(queue_id="hq-vip", kind="hq", name="vip")
    t = ticket()
    keys = {q.queue_id: [r.key for r in recipients("first_response_at_risk", t.evolve(queue_id=q.queue_id), "east", q)]
            for q in (store_q, region_q, hq_q)}
    assert keys == {"store-a": ["queue:store-a"], "east-desk": ["region_manager:east"], "hq-vip": ["hq"]}
    assert [r.key for r in recipients("resolution_at_risk", t.evolve(assignee="u1"), "east", store_q)] == ["sub:u1"]
    assert [r.key for r in recipients("first_response_breached", t, "east", store_q)] == ["store_managers:a"]
    assert [r.key for r in recipients("resolution_breached", t, "east", store_q)] == ["region_manager:east"]
    assert [r.key for r in recipients("resolution_breached", t.evolve(store_id=None), None, hq_q)] == ["hq"]
    assert [r.key for r in recipients("resolution_breached_hq", t, "east", store_q)] == ["hq"]
