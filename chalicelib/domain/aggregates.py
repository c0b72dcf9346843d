"""The member's purchase aggregates and how one order folds into them: the one definition the order post, the
bulk import and the benchmarks share (points, lots and tiers are the ledger's business, not this module's).

The nightly segmentation (domain/rfm.py) reads only what is kept here: monthly spend and order buckets (the
same buckets the tier rule reads), first and last purchase, lifetime totals, category spend, the stores, the
orders that used a coupon, and the recent purchase days in a compact text (domain/purchase_days.py).
"""
from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from . import clock
from .ledger import MemberState
from .points import add_months, month_key
from .purchase_days import with_day

# Monthly buckets kept: the 12-month window (tiers, RFM) plus the month before it, counted back from the newest
# purchase (never from a backdated order's month, which would drop later months): a member buying for years
# keeps 13 keys, not one per month ever.
KEPT_MONTHS = 13


def _recent(buckets: dict[str, int], cutoff: str) -> dict[str, int]:
    return {k: v for k, v in buckets.items() if k >= cutoff}


def fold_order(state: MemberState, *, paid_at: datetime, store_id: str, net: int,
               lines: Iterable[tuple[str, int]], used_coupon: bool = False, counted: bool = True) -> MemberState:
    """The aggregates after one more order: `net` is what it counts for in fen (its amount, less refunds it
    already had when it joins, e.g. an attached guest order), `lines` its (category, amount) pairs;
    `counted` False for an order already wholly refunded when it joins (a refunded order is no order, but
    its day stays a purchase day). The caller adds its own fields (points, version, tier) with `evolve`."""
    day = clock.business_day(paid_at)
    month = month_key(day)
    newest = max(filter(None, [state.last_purchase_at, paid_at]))
    categories = dict(state.categories)
    for category, amount in lines:
        categories[category] = categories.get(category, 0) + amount
    cutoff = month_key(add_months(clock.business_day(newest).replace(day=1), -(KEPT_MONTHS - 1)))
    return state.evolve(
        spend_months=_recent({**state.spend_months, month: state.spend_months.get(month, 0) + net}, cutoff),
        orders_months=_recent({**state.orders_months, month: state.orders_months.get(month, 0) + int(counted)},
                              cutoff),
        order_count=state.order_count + int(counted), lifetime_spend=state.lifetime_spend + net,
        first_purchase_at=min(filter(None, [state.first_purchase_at, paid_at])),
        last_purchase_at=max(filter(None, [state.last_purchase_at, paid_at])),
        stores=state.stores | {store_id}, categories=categories,
        recent_days=with_day(state.recent_days, day),
        coupon_orders=state.coupon_orders + (1 if used_coupon else 0))
