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
from .points import month_key
from .purchase_days import with_day


def fold_order(state: MemberState, *, paid_at: datetime, store_id: str, net: int,
               lines: Iterable[tuple[str, int]], used_coupon: bool = False, counted: bool = True) -> MemberState:
    """The aggregates after one more order: `net` is what it counts for in fen (its amount, less refunds it
    already had when it joins, e.g. an attached guest order), `lines` its (category, amount) pairs;
    `counted` False for an order already wholly refunded when it joins (a refunded order is no order, but
    its day stays a purchase day). The caller adds its own fields (points, version, tier) with `evolve`."""
    day = clock.business_day(paid_at)
    month = month_key(day)
    categories = dict(state.categories)
    for category, amount in lines:
        categories[category] = categories.get(category, 0) + amount
    return state.evolve(
        spend_months={**state.spend_months, month: state.spend_months.get(month, 0) + net},
        orders_months={**state.orders_months, month: state.orders_months.get(month, 0) + int(counted)},
        order_count=state.order_count + int(counted), lifetime_spend=state.lifetime_spend + net,
        first_purchase_at=min(filter(None, [state.first_purchase_at, paid_at])),
        last_purchase_at=max(filter(None, [state.last_purchase_at, paid_at])),
        stores=state.stores | {store_id}, categories=categories,
        recent_days=with_day(state.recent_days, day),
        coupon_orders=state.coupon_orders + (1 if used_coupon else 0))
