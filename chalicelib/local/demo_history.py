"""A year of the demo brand's trade, so a newcomer's first report and segmentation are not empty: members who
joined over the year, their orders (lunch and evening peaks, some with coupons), guests, and refunds days later.

Generated (seeded: the same day gives the same year) and loaded the way a bulk import loads history: each
member's orders go through the one fold (domain/aggregates.fold_order) into their state, and the stores' days
are written whole on the shard kept for loads (IMPORT_SHARD), never added to live figures. No order documents
are written: the purchase history view of these members stays empty, their aggregates are what the nightly
job and the reports read. A marker item makes the load run once per local database."""
from __future__ import annotations

import random
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any

from ..domain import clock, rollups
from ..domain.aggregates import fold_order
from ..domain.ledger import MemberState
from ..domain.members import AuditEntry, Channel, Consent, Member
from ..domain.phone import mask_phone

SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何林罗高"
GIVEN = "伟芳娜敏静丽强磊洋艳勇军杰娟涛明超霞平刚"
# Orders a day by hour of the day (a tea shop: lunch and the afternoon break, a late evening tail).
HOUR_WEIGHTS = [0, 0, 0, 0, 0, 0, 0, 1, 3, 4, 5, 8, 12, 9, 7, 9, 10, 8, 7, 8, 7, 5, 3, 1]
CATEGORIES = [("tea", 70), ("snack", 20), ("cake", 10)]
STORE_WEIGHT = {"sh-001": 5, "sh-002": 3, "hz-001": 2, "gz-001": 3, "sz-001": 1, "mall": 2}
GUESTS_A_DAY = {"sh-001": 9, "sh-002": 5, "hz-001": 3, "gz-001": 5, "sz-001": 2, "mall": 1}
MEMBERS = 600
DAYS = 365
MARKER = {"pk": "DEMO#HISTORY", "sk": "DEMO#HISTORY"}


@dataclass
class Sale:
    store_id: str
    paid_at: datetime
    amount: int
    member_id: str | None
    lines: list[tuple[str, int]]
    discount: int = 0  # a coupon from the store's own quota was used
    refunded: int = 0
    refunded_at: datetime | None = None


@dataclass
class History:
    members: list[Member] = field(default_factory=list)
    sales: list[Sale] = field(default_factory=list)
    issued: dict[tuple[str, date], int] = field(default_factory=dict)  # coupons issued from a store's quota


def _at(day: date, rng: random.Random) -> datetime:
    hour = rng.choices(range(24), HOUR_WEIGHTS)[0]
    return datetime.combine(day, time(hour, rng.randrange(60), rng.randrange(60)), clock.BUSINESS_TZ)


def _lines(amount: int, rng: random.Random) -> list[tuple[str, int]]:
    n = rng.choice([1, 1, 2, 3])
    cats = rng.choices([c for c, _ in CATEGORIES], [w for _, w in CATEGORIES], k=n)
    cuts = sorted(rng.sample(range(1, amount), n - 1)) if n > 1 and amount > n else []
    parts = [b - a for a, b in zip([0, *cuts], [*cuts, amount], strict=True)]
    return list(zip(cats, parts, strict=True))


def generate(today: date, *, members: int = MEMBERS, days: int = DAYS, seed: int = 2026) -> History:
    """The year before `today` (today itself not included: the morning report's yesterday is the last day)."""
    rng = random.Random(f"{seed}:{today.isoformat()}")
    first = today - timedelta(days=days)
    stores = list(STORE_WEIGHT)
    h = History()
    for n in range(members):
        home = rng.choices(stores, [STORE_WEIGHT[s] for s in stores])[0]
        joined = first + timedelta(days=int(rng.random() ** 1.6 * (days - 1)))  # more joined early
        registered = _at(joined, rng)
        mid = _member_id(n, today)
        name = rng.choice(SURNAMES) + "".join(rng.choice(GIVEN) for _ in range(rng.choice([1, 2])))
        phone = f"137{(n * 7919 + today.toordinal()) % 10**8:08d}"
        h.members.append(Member(
            member_id=mid, phone=phone, phone_masked=mask_phone(phone), name=name, home_store_id=home,
            registration_channel=Channel.MALL if home == "mall" else Channel.STORE,
            channels=frozenset({Channel.MALL if home == "mall" else Channel.STORE}), stores_visited=frozenset({home}),
            consent=Consent(marketing=rng.random() < 0.7, updated_at=registered), registered_at=registered,
            updated_at=registered))
        # Habits: a few regulars, many occasional buyers; some stop coming (the churn list's people).
        gap = rng.choice([3, 5, 7, 10, 14, 21, 30, 45, 60, 90])
        basket = rng.choice([1_500, 1_800, 2_200, 2_800, 3_500, 5_000])
        stop = today - timedelta(days=rng.randrange(0, 200)) if rng.random() < 0.3 else today
        day = joined
        while True:
            day += timedelta(days=max(1, round(rng.expovariate(1 / gap))))
            if day >= min(stop, today):
                break
            store = home if rng.random() < 0.85 else rng.choice(stores)
            amount = max(500, int(rng.gauss(basket, basket / 4)) // 10 * 10)
            h.sales.append(_sale(store, _at(day, rng), amount, mid, rng, today))
    for offset in range(days):
        day = first + timedelta(days=offset)
        for store, mean in GUESTS_A_DAY.items():
            for _ in range(max(0, int(rng.gauss(mean, mean / 3)))):
                h.sales.append(_sale(store, _at(day, rng), rng.choice([900, 1_200, 1_600, 2_000]), None, rng, today))
        if day.day == 1:  # each store issues its month's coupons on the 1st
            for store in stores:
                h.issued[(store, day)] = 40 * STORE_WEIGHT[store]
    h.sales.sort(key=lambda s: s.paid_at)
    return h


def _sale(store: str, paid_at: datetime, amount: int, member_id: str | None, rng: random.Random, today: date) -> Sale:
    sale = Sale(store, paid_at, amount, member_id, _lines(amount, rng))
    if member_id and rng.random() < 0.08:
        sale.discount = 500
    roll = rng.random()
    if roll < 0.03:
        when = paid_at + timedelta(days=rng.randrange(0, 8), hours=rng.randrange(0, 3))
        if clock.business_day(when) < today:
            sale.refunded, sale.refunded_at = (amount if roll < 0.02 else amount // 2), when
    return sale


def _member_id(n: int, today: date) -> str:
    """Deterministic ULID-shaped ids (Crockford base 32, 26 characters), so a re-run names the same members."""
    alphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
    value = (today.toordinal() << 40) | (0xDE << 32) | n
    return "".join(alphabet[(value >> (5 * i)) & 31] for i in range(25, -1, -1))


def states(h: History) -> list[MemberState]:
    """Each member's aggregates: their orders folded in time order (an order refunded by now joins as it
    stands, exactly as an attached guest order does)."""
    by_member: dict[str, MemberState] = {m.member_id: MemberState(member_id=m.member_id, home_store_id=m.home_store_id)
                                         for m in h.members}
    for s in h.sales:
        if s.member_id is None:
            continue
        st = by_member[s.member_id]
        net = s.amount - s.refunded
        by_member[s.member_id] = fold_order(st, paid_at=s.paid_at, store_id=s.store_id, net=net,
                                            lines=s.lines if not s.refunded else [(c, a * net // s.amount)
                                                                                  for c, a in s.lines],
                                            used_coupon=bool(s.discount), counted=net > 0)
    return [st.evolve(version=1) for st in by_member.values() if st.order_count or st.last_purchase_at]


def day_figures(h: History) -> dict[tuple[str, date], dict[str, int]]:
    """The stores' days as the live writes would have added them up (domain/rollups.py's definitions)."""
    days: dict[tuple[str, date], dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for s in h.sales:
        d = days[(s.store_id, clock.business_day(s.paid_at))]
        d["sales_fen"] += s.amount
        d["orders"] += 1
        d["member_orders" if s.member_id else "guest_orders"] += 1
        d[rollups.hour_field(s.paid_at)] += 1
        if s.discount:
            d["coupon_orders"] += 1
            d["coupons_redeemed"] += 1
            d["discount_fen"] += s.discount
            d["own_redeemed"] += 1  # the demo's coupons come from the redeeming store's own quota
        if s.refunded and s.refunded_at is not None:
            r = days[(s.store_id, clock.business_day(s.refunded_at))]
            r["refunds_fen"] += s.refunded
            r["refunds"] += 1
    for (store, day), n in h.issued.items():
        days[(store, day)]["coupons_issued"] += n
    return days


def load(today: date | None = None) -> dict[str, Any]:
    """Once per database: members (their registrations count on the day they joined), states, store days."""
    from .. import bootstrap
    from ..domain.errors import PhoneTaken
    from ..store import keys

    db = bootstrap.db()
    if db.get(MARKER, consistent=True) is not None:
        return {"history": "already loaded"}
    today = today or clock.business_day(clock.now())
    h = generate(today)
    repo = bootstrap.members()

    def register(m: Member) -> None:
        try:
            repo.create(m, AuditEntry(actor="demo", role="hq", action="member.registered", fields=["phone", "name"],
                                      at=m.registered_at))
        except PhoneTaken:
            pass  # a load that stopped half-way: this one is in

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(register, h.members))
    from ..services import program
    from ..store.ledger import state_item

    lowest = program.tiers(bootstrap.ledger()).tiers[0].tier_id  # where every member starts
    db.put_many([state_item(s.evolve(tier=lowest, tier_base=lowest)) for s in states(h)])
    db.put_many([{**keys.store_day_key(store, day, keys.IMPORT_SHARD), **{k: v for k, v in fig.items() if v}}
                 for (store, day), fig in day_figures(h).items()])
    db.put({**MARKER, "loaded_on": today.isoformat(), "sales": len(h.sales)})
    return {"history_members": len(h.members), "history_orders": len(h.sales),
            "history_refunds": sum(1 for s in h.sales if s.refunded)}
