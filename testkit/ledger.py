"""Helpers for order/points tests: order bodies, a paid_at that no promotion touches, a clock that tests move
forward, a Lambda context for calling a function's handler."""
from __future__ import annotations

import uuid
from datetime import date, datetime, timedelta
from typing import Any

from chalicelib.domain import clock


def plain_day(days_ago: int = 1) -> str:
    """An ISO time `days_ago` back (Asia/Shanghai) that is not the member day (the 8th)."""
    at = clock.now() - timedelta(days=days_ago)
    while at.day == 8:
        at -= timedelta(days=1)
    return at.isoformat()


def one_month_expiry(api: Any, hq: str) -> dict[str, Any]:
    """Store sh-001 exists and points expire one month after earning (so 45-day-old orders are due);
    returns the rules as set."""
    api.put("/stores/sh-001", {"name": "s", "region_id": "east", "city": "上海", "store_type": "standard"}, hq)
    rules = api.get("/points/rules", hq)[1]
    rules["expiry"] = {"mode": "months_after", "months": 1}
    assert api.put("/points/rules", rules, hq)[0] == 200
    return rules


def plain_one_month_rules(api: Any, hq: str) -> dict[str, Any]:
    """Store sh-001 exists; 1 point per yuan, no promotions, points valid one month: the arithmetic a test
    writes by hand. Returns the rules as set."""
    api.put("/stores/sh-001", {"name": "s", "region_id": "east", "city": "上海", "store_type": "standard"}, hq)
    rules = {"points_per_yuan": 1, "expiry": {"mode": "months_after", "months": 1},
             "promotions": {"member_day": None, "member_day_multiplier": 1000, "birthday_month_multiplier": 1000},
             "expiring_soon_days": 30}
    assert api.put("/points/rules", rules, hq)[0] == 200
    return rules


def order(member_id: str | None = None, amount: int = 12_345, store_id: str = "sh-001", phone: str | None = None,
          lines: int = 1, **extra: Any) -> dict[str, Any]:
    amounts = [amount // lines] * lines
    amounts[-1] += amount - sum(amounts)
    body: dict[str, Any] = {
        "order_id": f"o-{uuid.uuid4().hex[:12]}", "store_id": store_id, "channel": "store",
        "paid_at": plain_day(), "amount": amount,
        "items": [{"sku": f"sku-{i}", "name": f"奶茶{i}", "category": "tea" if i % 2 == 0 else "snack", "qty": 1,
                   "amount": a} for i, a in enumerate(amounts)],
    }
    if phone:
        body["phone"] = phone
    else:
        body["member_id"] = member_id
    body.update(extra)
    return body


class ShiftedClock:
    """Business time that tests can move forward: starts today at 10:00 Asia/Shanghai (so a run never crosses
    a real midnight), then runs with the real clock plus whatever `advance` added. Install it with
    `monkeypatch.setattr(clock, "now", shifted.now)`: every `clock.now()` (orders' validation, the use cases,
    ledger times) then sees it."""

    def __init__(self) -> None:
        import time

        self._monotonic = time.monotonic
        self._start = time.monotonic()
        self._base = clock.now().replace(hour=10, minute=0, second=0, microsecond=0)
        self.offset = timedelta(0)

    def now(self) -> datetime:
        return self._base + self.offset + timedelta(seconds=self._monotonic() - self._start)

    def today(self) -> date:
        return clock.business_day(self.now())

    def advance(self, days: int) -> None:
        self.offset += timedelta(days=days)


class LambdaContext:
    """What Powertools reads from a Lambda context, for calling a function's handler in a test."""

    def __init__(self, name: str = "test") -> None:
        self.function_name = name
        self.memory_limit_in_mb = 512
        self.invoked_function_arn = f"arn:aws:lambda:local:000000000000:function:{name}"
        self.aws_request_id = "test"

    def get_remaining_time_in_millis(self) -> int:
        return 900_000
