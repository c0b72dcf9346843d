"""A store's day in numbers: what each order, refund, registration, coupon issue and redemption adds to its
store's day rollup, and what a range of those days says. Pure: the services build the additions, the store
writes them (`ADD`, inside the change's own transaction), the reports read and fold them here.

Every figure is additive, so any from/to is a sum of days. Definitions (docs/reports.md):
  - sales count on the day an order was paid, refunds on the day they were made; net = sales − refunds;
  - member / guest orders: who bought at the time of the sale (a guest order attached at a later registration
    counts as `attached_orders` on the day of the attach, and stays a guest order of its day);
  - new members: profiles registered at the store (their home store) that day; a merge takes its duplicate
    back off the day it registered, so the figure counts people;
  - coupons: redeemed at the store on the order's paid day (given back when the whole order is refunded),
    coupon orders and discounts likewise; issued from the store's own quota on the day of the issue, and
    `own_redeemed` those of them used anywhere, so the store's redemption rate is own_redeemed / issued;
  - hours: orders by the hour they were paid, Asia/Shanghai.
A busy store spreads its day over `shards` items (by order id), so concurrent posts rarely touch one item.
"""
from __future__ import annotations

import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from . import clock

HOURS = tuple(f"h{h:02d}" for h in range(24))
COUNTS = ("sales_fen", "orders", "member_orders", "guest_orders", "attached_orders", "points_issued",
          "refunds_fen", "refunds", "points_reversed", "new_members", "coupons_issued", "coupons_redeemed",
          "coupon_orders", "discount_fen", "own_redeemed")
FIELDS = COUNTS + HOURS
MAX_SHARDS = 16
MAX_DAYS = 366  # one request's range: a year, leap day included
NO_STORE = "-"  # registrations with no home store


@dataclass(frozen=True)
class DayRollup:
    """What one change adds to one store's day (on one of its shards)."""

    store_id: str
    day: date
    deltas: Mapping[str, int]
    shard: int = 0

    @property
    def key(self) -> tuple[str, date, int]:
        return self.store_id, self.day, self.shard


def shard_of(ref: str, shards: int) -> int:
    """The day item a change lands on: stable for a given order (or member) id, spread over `shards`."""
    shards = max(1, min(MAX_SHARDS, shards))
    return zlib.crc32(ref.encode()) % shards if shards > 1 else 0


def merged(rollups: Iterable[DayRollup]) -> list[DayRollup]:
    """One addition per item: a transaction may name an item once (an order's own day and its coupons' issuing
    store's day can be the same item). Zero deltas are dropped; an empty addition is no write."""
    by_key: dict[tuple[str, date, int], dict[str, int]] = {}
    for r in rollups:
        sums = by_key.setdefault(r.key, {})
        for name, value in r.deltas.items():
            if name not in FIELDS:
                raise ValueError(f"not a rollup figure: {name}")
            sums[name] = sums.get(name, 0) + value
    out = []
    for (store_id, day, shard), sums in by_key.items():
        kept = {k: v for k, v in sums.items() if v}
        if kept:
            out.append(DayRollup(store_id, day, kept, shard))
    return out


def hour_field(paid_at: datetime) -> str:
    return HOURS[paid_at.astimezone(clock.BUSINESS_TZ).hour]


@dataclass(frozen=True)
class Sale:
    """What a rollup needs of an order."""

    order_id: str
    store_id: str
    paid_at: datetime
    amount: int
    member: bool
    points: int = 0
    coupons: tuple[tuple[str, int], ...] = ()  # (issuer level, discount) per coupon
    shards: int = 1


def for_sale(sale: Sale) -> list[DayRollup]:
    """A posted order: its store's paid day, and the issuing stores of its coupons (own_redeemed)."""
    day = clock.business_day(sale.paid_at)
    deltas = {"sales_fen": sale.amount, "orders": 1, "member_orders" if sale.member else "guest_orders": 1,
              "points_issued": sale.points, hour_field(sale.paid_at): 1}
    if sale.coupons:
        deltas |= {"coupon_orders": 1, "coupons_redeemed": len(sale.coupons),
                   "discount_fen": sum(d for _, d in sale.coupons)}
    shard = shard_of(sale.order_id, sale.shards)
    out = [DayRollup(sale.store_id, day, deltas, shard)]
    out += coupon_owners(sale.store_id, shard, day, sale.coupons, 1)
    return merged(out)


def coupon_owners(store_id: str, shard: int, day: date, coupons: Iterable[tuple[str, int]],
                  sign: int) -> list[DayRollup]:
    """own_redeemed for each coupon issued from a store's quota, on that store's day (shard 0, or the order's
    own item when the coupon's store is the order's store)."""
    out = []
    for issuer, _ in coupons:
        owner = issuer.removeprefix("STORE#") if issuer.startswith("STORE#") else None
        if owner is not None:
            out.append(DayRollup(owner, day, {"own_redeemed": sign}, shard if owner == store_id else 0))
    return out


def coupons_given_back(store_id: str, order_id: str, paid_at: datetime, coupons: Iterable[tuple[str, int]],
                       shards: int, *, whole: bool) -> list[DayRollup]:
    """The whole refund of an order that used coupons gives back those still valid: they no longer count as
    redeemed on the order's paid day (as the coupon template stats do). `whole`: all of the order's coupons
    came back, so it is no longer a coupon order either."""
    listed = list(coupons)
    if not listed:
        return []
    day = clock.business_day(paid_at)
    shard = shard_of(order_id, shards)
    out = [DayRollup(store_id, day, {"coupon_orders": -int(whole), "coupons_redeemed": -len(listed),
                                     "discount_fen": -sum(d for _, d in listed)}, shard)]
    return merged(out + coupon_owners(store_id, shard, day, listed, -1))


def for_refund(store_id: str, refund_id: str, at: datetime, amount: int, points_reversed: int,
               shards: int) -> DayRollup:
    return DayRollup(store_id, clock.business_day(at),
                     {"refunds_fen": amount, "refunds": 1, "points_reversed": points_reversed},
                     shard_of(refund_id, shards))


def for_registration(home_store_id: str | None, member_id: str, at: datetime, sign: int = 1) -> DayRollup:
    """A new member on their home store's day (sign -1: a merge takes a duplicate back off). Shard 0: one
    registration at a time per member, and a store's day item 0 exists for every shard count."""
    return DayRollup(home_store_id or NO_STORE, clock.business_day(at), {"new_members": sign}, 0)


# ---- reading -------------------------------------------------------------------------------------------------
@dataclass
class Totals:
    """A sum of day items, and the figures derived from it."""

    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(FIELDS, 0))

    def add(self, item: Mapping[str, object]) -> Totals:
        for name in FIELDS:
            value = item.get(name)
            if value is not None:
                self.counts[name] += int(value)  # type: ignore[call-overload]
        return self

    def add_all(self, items: Iterable[Mapping[str, object]]) -> Totals:
        for item in items:
            self.add(item)
        return self

    def kpis(self) -> dict[str, int]:
        c = self.counts
        return {**{k: c[k] for k in COUNTS}, "net_sales_fen": c["sales_fen"] - c["refunds_fen"],
                "average_ticket_fen": ratio(c["sales_fen"], c["orders"]),
                "member_share_permille": permille(c["member_orders"], c["orders"]),
                "coupon_redemption_permille": permille(c["own_redeemed"], c["coupons_issued"])}

    def hours(self) -> list[int]:
        return [self.counts[h] for h in HOURS]


def ratio(numerator: int, denominator: int) -> int:
    """numerator / denominator to the nearest integer, halves up; 0 when there is nothing to divide by."""
    return (2 * numerator + denominator) // (2 * denominator) if denominator > 0 else 0


def permille(part: int, whole: int) -> int:
    return ratio(1000 * part, whole)


def day_of(item: Mapping[str, object]) -> date:
    """The day a stored day item is for (its sort key: DAY#<day>[#<shard>])."""
    return date.fromisoformat(str(item["sk"]).split("#")[1])


def days(first: date, last: date) -> list[date]:
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]


def totals(items: Iterable[Mapping[str, object]]) -> Totals:
    return Totals().add_all(items)


def by_day(items: Iterable[Mapping[str, object]], first: date, last: date) -> dict[date, Totals]:
    """Every day of the range (zeros included) with the sum of its shards."""
    out = {d: Totals() for d in days(first, last)}
    for item in items:
        d = day_of(item)
        if d in out:
            out[d].add(item)
    return out
