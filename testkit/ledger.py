"""Helpers for order/points tests: order bodies, a paid_at that no promotion touches."""
from __future__ import annotations

import uuid
from datetime import timedelta
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
