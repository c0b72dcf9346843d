"""Purchase history is newest *paid* first, whatever order the POS posted the orders in.

A POS that syncs offline orders late posts them out of purchase order; the history must still list them
by `paid_at` (ties: the later posting first), across cursor pages."""
from __future__ import annotations

from datetime import timedelta

import pytest

from chalicelib.domain import clock
from testkit.ledger import order
from testkit.support import registration, unique_phone


@pytest.fixture
def staff(tokens):
    return tokens.staff(stores=["sh-001"])


def _paid(days_ago: int) -> str:
    """A fixed time of day `days_ago` back (within the 90 days an order may be backdated, never ahead)."""
    at = (clock.now() - timedelta(days=days_ago)).replace(hour=10, minute=30, second=0, microsecond=0)
    return clock.iso(at)


def _history(api, member_id: str, token: str, limit: int) -> tuple[list[str], int]:
    """Every order id of the member's history, page by page; and the number of pages read."""
    ids: list[str] = []
    cursor, pages = None, 0
    while True:
        path = f"/members/{member_id}/orders?limit={limit}" + (f"&cursor={cursor}" if cursor else "")
        status, page = api.get(path, token)
        assert status == 200, page
        assert len(page["items"]) <= limit
        ids += [o["order_id"] for o in page["items"]]
        pages += 1
        cursor = page["next_cursor"]
        if not cursor:
            return ids, pages
        assert pages < 20, "the cursor never ends"


def test_orders_synced_late_are_listed_by_purchase_time_not_posting_time(api, staff, tokens):
    # Given three orders paid on three days in a row, posted newest-paid first (an offline POS syncing late),
    member = api.post("/members", registration(), staff)[1]["member_id"]
    day3, day2, day1 = (order(member, amount=1_000, paid_at=_paid(d)) for d in (3, 2, 1))
    for body in (day1, day2, day3):
        assert api.post("/orders", body, staff)[0] == 201
    # and a fourth paid at the very same instant as the middle one, posted after it
    twin = order(member, amount=2_000, paid_at=day2["paid_at"])
    assert api.post("/orders", twin, staff)[0] == 201
    expected = [day1["order_id"], twin["order_id"], day2["order_id"], day3["order_id"]]
    me = tokens.member(member)

    # When the member reads the history in one page
    status, page = api.get(f"/members/{member}/orders", me)

    # Then it is newest paid first, the later posting first on a tie
    assert status == 200
    assert [o["order_id"] for o in page["items"]] == expected
    assert page["next_cursor"] is None
    paid = [o["paid_at"] for o in page["items"]]
    assert paid == sorted(paid, reverse=True)

    # And page by page (one order a page) the cursor walks the same order, nothing repeated or lost
    ids, pages = _history(api, member, me, limit=1)
    assert ids == expected
    assert pages >= len(expected)
    ids, _ = _history(api, member, tokens.hq(), limit=3)
    assert ids == expected


def test_attached_guest_orders_are_listed_by_when_they_were_paid(api, staff, tokens):
    # Given a phone with two guest orders (paid 5 and 1 days ago), attached when it registers,
    phone = unique_phone()
    early, late = order(phone=phone, amount=3_000, paid_at=_paid(5)), order(phone=phone, amount=4_000,
                                                                            paid_at=_paid(1))
    for body in (early, late):
        assert api.post("/orders", body, staff)[1]["guest"] is True
    status, member = api.post("/members", registration(phone), staff)
    assert status == 201 and member["order_count"] == 2
    # and a member order paid between them, posted after the attach
    between = order(member["member_id"], amount=5_000, paid_at=_paid(3))
    assert api.post("/orders", between, staff)[0] == 201

    # When the history is read
    ids, _ = _history(api, member["member_id"], tokens.member(member["member_id"]), limit=2)

    # Then the attached orders sit where they were paid, not where they were attached
    assert ids == [late["order_id"], between["order_id"], early["order_id"]]


def test_a_cursor_of_another_members_history_is_refused(api, staff, tokens):
    a, b = (api.post("/members", registration(), staff)[1]["member_id"] for _ in range(2))
    for member in (a, b):
        for days in (2, 1):
            assert api.post("/orders", order(member, amount=1_000, paid_at=_paid(days)), staff)[0] == 201
    hq = tokens.hq()
    cursor = api.get(f"/members/{a}/orders?limit=1", hq)[1]["next_cursor"]
    assert cursor
    status, err = api.get(f"/members/{b}/orders?limit=1&cursor={cursor}", hq)
    assert status == 422 and err["code"] == "invalid_cursor"
