"""DynamoDB requests and capacity per use case: the service functions called directly against DynamoDB Local.

Each scenario prepares its own fresh data first (not measured), then runs the use case N times under the meter.
"""
from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from chalicelib import bootstrap
from chalicelib.domain import clock
from chalicelib.domain.access import Principal, Role
from chalicelib.domain.coupons import ExchangeInput, IssueInput, RedeemInput, TemplateInput
from chalicelib.domain.members import Registration
from chalicelib.domain.orders import OrderCoupon, OrderInput, RefundInput
from chalicelib.domain.pool import (
    STAT_SHARDS,
    AllocationInput,
    CouponUse,
    month_of,
    region_level,
    shard,
    store_level,
)
from chalicelib.services import (
    benefit_pool,
    coupon_counter,
    coupon_expiry,
    coupon_issues,
    coupon_templates,
    exchanges,
    expiry,
    guest_orders,
    points_views,
    posting,
    program,
    redemptions,
    refunds,
)
from chalicelib.services import members as svc
from chalicelib.store.coupons import count_issued, count_redemption
from chalicelib.store.db import Tx
from testkit.support import STORES, unique_phone

from .capacity import CapacityMeter, Usage

STORE = "sh-001"
# A counter clerk of the store: the caller the hot paths (register, look up) are built for.
CLERK = Principal(sub="bench-clerk", role=Role.STAFF, store_ids=frozenset({STORE}))
HQ = Principal(sub="bench-hq", role=Role.HQ)
REGION = STORES[STORE]  # east: sh-001 and sh-002
REGION_MANAGER = Principal(sub="bench-region", role=Role.REGION_MANAGER, region_id=REGION)
MANAGER = Principal(sub="bench-manager", role=Role.STORE_MANAGER, store_ids=frozenset({STORE}))


@dataclass
class Scenario:
    label: str
    prepare: Callable[[int], list[Any]]  # n -> one argument per measured run (fresh data, made unmeasured)
    run: Callable[[Any], None]
    per_run: int = 1  # what a row reports per: a bulk issue's run issues 1,000 coupons, the row is per coupon


def _registration(phone: str, channel: str = "store") -> Registration:
    return Registration(phone=phone, channel=channel, store_id=STORE, consent={"marketing": True})


def _register(phone: str, channel: str = "store", *, expect_created: bool) -> str:
    member, created = svc.register(_registration(phone, channel), CLERK, bootstrap.members(), bootstrap.stores())
    # Check the outcome, so a scenario can never silently measure a different path than its label says.
    if created is not expect_created:
        raise RuntimeError(f"register({channel}) created={created}, expected {expect_created}")
    return member.member_id


def _registered_phones(n: int) -> list[str]:
    phones = [unique_phone() for _ in range(n)]
    for phone in phones:
        _register(phone, expect_created=True)
    return phones


def _lookup(phone: str, *, expect_found: bool) -> None:
    found = svc.lookup_by_phone(phone, CLERK, bootstrap.members())
    if bool(found) is not expect_found:
        raise RuntimeError(f"lookup found={bool(found)}, expected {expect_found}")


HEAVY_LOTS = 30  # a regular: a month of daily teas, none spent yet
BULK = 1_000  # members in one bulk issue (the most one request takes)
BULK_LABEL = "coupon: bulk issue to 1,000 members, per coupon"
QUOTA_LABEL = "pool: store-quota issue to 1,000 members, per coupon"
POOL_STORE = "gz-001"  # the store whose pool is read (the other scenarios give it no quota)
POOL_TEMPLATES = 10  # templates with a quota at that store
STATS_DAYS = 30
# A month of settlement: rows (template, issuer, redeeming store), each in SETTLE_SHARDS of the 8 shards (its
# coupons' codes fell there); the store read is of sh-001, which is an issuer and a redeemer of some.
SETTLE_TEMPLATES = 3
SETTLE_ISSUERS = ("HQ", region_level(REGION), store_level(STORE), store_level("sh-002"))
SETTLE_STORES = tuple(STORES)
SETTLE_SHARDS = 3
SETTLE_ROWS = SETTLE_TEMPLATES * len(SETTLE_ISSUERS) * len(SETTLE_STORES)
# sh-001's: those it issued (to every store) and those it redeemed (from the other issuers)
STORE_SETTLE_ROWS = SETTLE_TEMPLATES * (len(SETTLE_STORES) + len(SETTLE_ISSUERS) - 1)
SETTLE_LABEL = f"{SETTLE_ROWS} rows, {SETTLE_ROWS * SETTLE_SHARDS} shard items"

SCENARIOS = [
    Scenario("register (new phone)", lambda n: [unique_phone() for _ in range(n)],
             lambda phone: _register(phone, expect_created=True)),
    Scenario("register (existing phone, same channel)", _registered_phones,
             lambda phone: _register(phone, "store", expect_created=False)),
    Scenario("register (existing phone, new channel)", _registered_phones,
             lambda phone: _register(phone, "app", expect_created=False)),
    Scenario("lookup by phone (hit)", _registered_phones, lambda phone: _lookup(phone, expect_found=True)),
    Scenario("lookup by phone (miss)", lambda n: [unique_phone() for _ in range(n)],
             lambda phone: _lookup(phone, expect_found=False)),
    Scenario("get member view", lambda n: [_register(unique_phone(), expect_created=True) for _ in range(n)],
             lambda member_id: svc.view(member_id, CLERK, bootstrap.members())),
    Scenario("guest-order attach check (none waiting)", _registered_phones,
             lambda phone: guest_orders.attach_guest_orders("unused", phone, bootstrap.members(), bootstrap.ledger())),
    Scenario("post order (1 line)", lambda n: _shoppers(n), lambda m: _post(m, 1)),
    Scenario("post order (5 lines)", lambda n: _shoppers(n), lambda m: _post(m, 5)),
    Scenario("post order (20 lines)", lambda n: _shoppers(n), lambda m: _post(m, 20)),
    Scenario("post order (replay of a posted order)", lambda n: [_post(m, 5) for m in _shoppers(n)],
             lambda cmd: _replay(cmd)),
    Scenario("refund (partial, 5-line order)", lambda n: [_post(m, 5) for m in _shoppers(n)],
             lambda cmd: refunds.refund(cmd.order_id, RefundInput(refund_id="r1", amount=1_000), CLERK,
                                        bootstrap.ledger(), bootstrap.stores(), bootstrap.coupons())),
    Scenario("redeem points (2 open lots, spends both)", lambda n: [_post(m, 5).member_id for m in _shoppers(n)],
             lambda member_id: _redeem(member_id, 50)),
    Scenario(f"redeem points ({HEAVY_LOTS} open lots, spends 2)", lambda n: _heavy(n), lambda m: _redeem(m, 30)),
    Scenario("cancel a redemption (2 lots re-credited)",
             lambda n: [(m, _redeem(_post(m, 5).member_id, 50)) for m in _shoppers(n)],
             lambda arg: redemptions.cancel_redemption(arg[0], arg[1], CLERK, bootstrap.ledger())),
    Scenario("points view (2 open lots, first ledger page)", lambda n: [_post(m, 5).member_id for m in _shoppers(n)],
             lambda m: points_views.points_view(m, CLERK, bootstrap.ledger(), None, 20)),
    Scenario(f"points view ({HEAVY_LOTS} open lots, first ledger page)", lambda n: _heavy(n),
             lambda m: points_views.points_view(m, CLERK, bootstrap.ledger(), None, 20)),
    Scenario("purchase history (first page of 20)", lambda n: _heavy(n),
             lambda m: bootstrap.ledger().member_orders(m, None, 20)),
    Scenario("nightly expiry: one member's due lot (after the index query)", lambda n: _shoppers(n),
             lambda m: _expire(m)),
    Scenario("coupon: redeem at the counter (5 lines)", lambda n: _coupons_at_counter(n),
             lambda arg: _redeem_coupon(*arg)),
    Scenario("coupon: points exchange (2 open lots)", lambda n: _exchange_template() and _shoppers(n),
             lambda m: _exchange(m)),
    Scenario("post order with 1 coupon (5 lines)", lambda n: _redeemed_orders(n, 1), lambda cmd: _post_cmd(cmd)),
    Scenario("post order with 2 stacked coupons (5 lines)", lambda n: _redeemed_orders(n, 2),
             lambda cmd: _post_cmd(cmd)),
    Scenario("nightly coupon expiry: one due coupon (after the index query)",
             lambda n: [bootstrap.coupons().get_coupon(code) for code, _ in _coupons_at_counter(n)],
             lambda coupon: _expire_coupon(coupon)),
    Scenario(BULK_LABEL, lambda n: _bulk_template() and [_bulk_members()],
             lambda members: _bulk_issue(members, workers=1), per_run=BULK),
    Scenario("pool: allocate HQ -> region", lambda n: _allocations(n, "region", REGION),
             lambda cmd: _allocate(cmd, HQ, region_level(REGION))),
    Scenario("pool: allocate region -> store (region manager)", lambda n: _region_allocations(n),
             lambda cmd: _allocate(cmd, REGION_MANAGER, store_level(STORE))),
    Scenario(QUOTA_LABEL, lambda n: _give_quota(BULK) and [_bulk_members()],
             lambda members: _quota_issue(members, workers=1), per_run=BULK),
    Scenario(f"pool: GET /benefit-pool, a store ({POOL_TEMPLATES} templates)", lambda n: _pool_store(n),
             lambda actor: benefit_pool.pool(POOL_STORE, None, actor, bootstrap.coupons(), bootstrap.stores())),
    Scenario(f"coupon stats: a store, {STATS_DAYS} days", lambda n: [_stats_template()] * n,
             lambda template_id: _stats(template_id, STORE, MANAGER, STAT_SHARDS // 2)),
    Scenario(f"coupon stats: whole brand (HQ), {STATS_DAYS} days", lambda n: [_stats_template()] * n,
             lambda template_id: _stats(template_id, None, HQ, STAT_SHARDS)),
    Scenario(f"coupon settlement: a month, HQ ({SETTLE_LABEL})", lambda n: [_settlement_month()] * n,
             lambda month: _settle(month, None, HQ, SETTLE_ROWS)),
    Scenario(f"coupon settlement: a month, one store ({SETTLE_LABEL} read)", lambda n: [_settlement_month()] * n,
             lambda month: _settle(month, STORE, MANAGER, STORE_SETTLE_ROWS)),
]


def _heavy(n: int) -> list[str]:
    """Fewer members (the preparation posts HEAVY_LOTS orders each); measure() averages per member."""
    heavy = [_register(unique_phone(), expect_created=True) for _ in range(max(3, n // 5))]
    for member_id in heavy:
        for _ in range(HEAVY_LOTS):
            _post(member_id, 1)
    return heavy


def _redeem(member_id: str, pts: int) -> str:
    redemption_id = f"r-{uuid.uuid4().hex[:8]}"
    redemptions.redeem(member_id, redemption_id, pts, "bench", STORE, CLERK, bootstrap.ledger(), bootstrap.stores())
    return redemption_id


def _expire(member_id: str) -> None:
    """As the nightly job does per member the expiry index names, on a day after the lot's last day."""
    later = clock.business_day(clock.now()) + timedelta(days=800)
    if expiry._expire_partition(bootstrap.ledger(), member_id, later)[0] != 1:
        raise RuntimeError("expected exactly one due lot")


def _shoppers(n: int) -> list[str]:
    """Members who already bought once: the measured order updates an existing points state, the
    steady state of a real member (a first order creates it instead)."""
    shoppers = [_register(unique_phone(), expect_created=True) for _ in range(n)]
    for member_id in shoppers:
        _post(member_id, 1)
    return shoppers


def _order(member_id: str, lines: int) -> OrderInput:
    amount = 2_000 * lines
    items = [{"sku": f"SKU-{i:04d}", "name": f"招牌奶茶 大杯 {i}", "category": "tea", "qty": 1, "amount": 2_000}
             for i in range(lines)]
    return OrderInput(order_id=f"bench-{uuid.uuid4().hex[:16]}", member_id=member_id, store_id=STORE,
                      channel="store", paid_at=clock.now() - timedelta(minutes=5), amount=amount, items=items)


def _post(member_id: str, lines: int) -> OrderInput:
    cmd = _order(member_id, lines)
    posted = posting.post_order(cmd, CLERK, bootstrap.members(), bootstrap.ledger(), bootstrap.stores())
    if not posted.created:
        raise RuntimeError("order was not created")
    return cmd


def _replay(cmd: OrderInput) -> None:
    if posting.post_order(cmd, CLERK, bootstrap.members(), bootstrap.ledger(), bootstrap.stores()).created:
        raise RuntimeError("a replay created an order")


# ---- coupons -------------------------------------------------------------------------------------------------
_templates: dict[str, str] = {}


def _template(name: str, **terms: Any) -> str:
    """A template made once per benchmark run (unlimited budget, no per-member limit)."""
    if name not in _templates:
        template_id = f"bench-{name}-{uuid.uuid4().hex[:6]}"
        coupon_templates.put_template(template_id, TemplateInput(name=name, valid_days=30, **terms), HQ,
                                      bootstrap.coupons())
        _templates[name] = template_id
    return _templates[name]


def _cash_template() -> str:
    return _template("cash5", kind="cash", value=500, stackable=True)


def _issue(template_id: str, member_ids: list[str], workers: int | None = None, *,
           store_id: str | None = None, actor: Principal = HQ) -> list[str]:
    """One coupon per member; `workers` as the bulk issue runs them in parallel (1: one at a time, so the
    capacity meter, which follows one request at a time, sizes every write); `store_id`: from its quota."""
    default = coupon_issues.WORKERS
    coupon_issues.WORKERS = workers or default
    try:
        answer, created = coupon_issues.issue(
            IssueInput(issue_id=f"bench-{uuid.uuid4().hex[:12]}", template_id=template_id, member_ids=member_ids,
                       store_id=store_id),
            actor, bootstrap.coupons(), bootstrap.ledger(), bootstrap.stores())
    finally:
        coupon_issues.WORKERS = default
    if not created or answer["issued_count"] != len(member_ids):
        raise RuntimeError(f"expected {len(member_ids)} coupons issued, got {answer['issued_count']}")
    if store_id is not None and answer["issuer"] != store_level(store_id):
        raise RuntimeError(f"issued from {answer['issuer']}, expected the store's quota")
    by_member = {row["member_id"]: row["code"] for row in answer["issued"]}
    return [by_member[m] for m in member_ids]


def _members(n: int) -> list[str]:
    return [_register(unique_phone(), expect_created=True) for _ in range(n)]


def _coupons_at_counter(n: int) -> list[tuple[str, str]]:
    members = _members(n)
    return list(zip(_issue(_cash_template(), members, workers=1), members, strict=True))


def _lines(lines: int) -> list[dict[str, Any]]:
    return [{"sku": f"SKU-{i:04d}", "amount": 2_000} for i in range(lines)]


def _redeem_coupon(code: str, member_id: str, order_id: str | None = None) -> list[int]:
    """Redeem at the counter for a 5-line order of ¥100; the discount's share of each line."""
    cmd = RedeemInput(member_id=member_id, store_id=STORE, order_id=order_id or f"bench-{uuid.uuid4().hex[:16]}",
                      order_amount=10_000, lines=_lines(5))
    answer, created = coupon_counter.redeem(code, cmd, CLERK, bootstrap.coupons(), bootstrap.stores(),
                                            bootstrap.ledger())
    if not created or not answer.discount or answer.lines is None:
        raise RuntimeError("the coupon was not redeemed")
    return [line.discount for line in answer.lines]


def _expire_coupon(coupon: Any) -> None:
    """As the nightly job does for each coupon its expiry index names, on a day after the coupon's last day."""
    if not coupon_expiry._expire(bootstrap.coupons(), coupon, clock.business_day(coupon.valid_to) + timedelta(days=1)):
        raise RuntimeError("the coupon was not expired")


def _exchange_template() -> str:
    return _template("exchange", kind="cash", value=300, points_price=10)


def _exchange(member_id: str) -> None:
    template_id = _exchange_template()
    me = Principal(sub=member_id, role=Role.MEMBER, member_id=member_id)
    answer, created = exchanges.exchange(member_id, ExchangeInput(exchange_id=f"x-{uuid.uuid4().hex[:10]}",
                                                                  template_id=template_id),
                                         me, bootstrap.ledger(), bootstrap.coupons())
    if not created or answer["points"] != 10:
        raise RuntimeError("the exchange did not happen")


def _redeemed_orders(n: int, coupons: int) -> list[OrderInput]:
    """Shoppers with `coupons` stackable coupons redeemed at the counter for a 5-line order of ¥100: the order
    as the POS then posts it (lines at their paid amounts, the coupons with their discounts)."""
    shoppers = _shoppers(n)
    templates = [_cash_template(), _template("cash3", kind="cash", value=300, stackable=True)][:coupons]
    codes = [_issue(t, shoppers, workers=1) for t in templates]
    orders = []
    for i, member_id in enumerate(shoppers):
        cmd = _order(member_id, 5)
        paid = [item.amount for item in cmd.items]
        used = []
        for per_template in codes:
            shares = _redeem_coupon(per_template[i], member_id, cmd.order_id)
            paid = [p - s for p, s in zip(paid, shares, strict=True)]
            used.append(OrderCoupon(code=per_template[i], discount=sum(shares)))
        items = [{**item.model_dump(mode="json"), "amount": p} for item, p in zip(cmd.items, paid, strict=True)]
        orders.append(OrderInput.model_validate({**cmd.model_dump(mode="json"), "items": items, "amount": sum(paid),
                                                 "coupons": [c.model_dump() for c in used]}))
    return orders


def _post_cmd(cmd: OrderInput) -> None:
    if not posting.post_order(cmd, CLERK, bootstrap.members(), bootstrap.ledger(), bootstrap.stores()).created:
        raise RuntimeError("order was not created")


_bulk: list[str] = []


def _bulk_members() -> list[str]:
    """The 1,000 members every bulk issue goes to (registered once: each issue is of another template)."""
    if not _bulk:
        _bulk.extend(_members(BULK))
    return _bulk


def _bulk_template() -> str:
    return _template("bulk", kind="cash", value=500)


def _bulk_issue(members: list[str], workers: int | None = None) -> None:
    _issue(_bulk_template(), members, workers)


def bulk_issue_seconds() -> float:
    timed = _template("bulk-timed", kind="cash", value=500)
    return issue_seconds(lambda members, workers: _issue(timed, members, workers))


# ---- the benefit pool ----------------------------------------------------------------------------------------
def _pool_template() -> str:
    return _template("pool", kind="cash", value=500, budget=100_000_000)


def _allocations(n: int, scope: str, scope_id: str, quantity: int = 100,
                 template_id: str | None = None) -> list[AllocationInput]:
    return [AllocationInput(allocation_id=f"bench-{uuid.uuid4().hex[:12]}", template_id=template_id or _pool_template(),
                            scope=scope, scope_id=scope_id, quantity=quantity) for _ in range(n)]


def _allocate(cmd: AllocationInput, actor: Principal, target: str) -> None:
    answer, created = benefit_pool.allocate(cmd, actor, bootstrap.coupons(), bootstrap.stores())
    if not created or answer.target != target:
        raise RuntimeError(f"allocation created={created} to {answer.target}, expected a new one to {target}")


def _region_allocations(n: int) -> list[AllocationInput]:
    """The region's manager passes quota on to a store; HQ gave the region enough first (unmeasured)."""
    (given,) = _allocations(1, "region", REGION, 100 * n)
    _allocate(given, HQ, region_level(REGION))
    return _allocations(n, "store", STORE)


def _quota_template() -> str:
    return _template("quota", kind="cash", value=500, budget=100_000_000)


def _give_quota(n: int) -> str:
    """HQ gives sh-001 a quota of n coupons (unmeasured: the allocation has its own row)."""
    (given,) = _allocations(1, "store", STORE, n, _quota_template())
    _allocate(given, HQ, store_level(STORE))
    return _quota_template()


def _quota_issue(members: list[str], workers: int | None = None) -> None:
    """The store's manager issues from the store's quota."""
    _issue(_quota_template(), members, workers, store_id=STORE, actor=MANAGER)


def _pool_store(n: int) -> list[Principal]:
    """POOL_TEMPLATES templates with a quota at POOL_STORE (made once); its manager reads the store's pool."""
    for i in range(POOL_TEMPLATES):
        if f"shelf{i}" not in _templates:
            template_id = _template(f"shelf{i}", kind="cash", value=300, budget=1_000)
            (given,) = _allocations(1, "store", POOL_STORE, 50, template_id)
            _allocate(given, HQ, store_level(POOL_STORE))
    return [Principal(sub="bench-manager-gz", role=Role.STORE_MANAGER, store_ids=frozenset({POOL_STORE}))] * n


def _code(shard_no: int) -> str:
    """A coupon code whose counters fall in shard `shard_no`."""
    while True:
        code = f"BENCH{uuid.uuid4().hex[:11].upper()}"
        if shard(code) == shard_no:
            return code


def _count(write: Callable[[Tx], None]) -> None:
    """Counters written by the same transaction pieces the issues and orders use (one transaction each)."""
    db = bootstrap.coupons().db
    tx = db.tx()
    write(tx)
    db.commit(tx)


def _use(template_id: str, issuer: str, store_id: str, day: date, shard_no: int) -> CouponUse:
    return CouponUse(code=_code(shard_no), template_id=template_id, issuer=issuer, store_id=store_id, day=day,
                     discount=500, gift_cost=0, sales=4_500)


def _stats_days() -> tuple[date, date]:
    last = clock.business_day(clock.now())
    return last - timedelta(days=STATS_DAYS - 1), last


def _stats_template() -> str:
    """A busy template's month, made once: every day sh-001 issues from its quota and the brand redeems in
    every shard (half of those coupons sh-001's), so the store has a row a day and the brand 8."""
    if "stats" not in _templates:
        template_id = _template("stats", kind="cash", value=500)
        first, _ = _stats_days()
        for d in range(STATS_DAYS):
            day = first + timedelta(days=d)
            _count(lambda tx, day=day, d=d: count_issued(tx, template_id, store_level(STORE), day, 40,
                                                         d % STAT_SHARDS))
            for n in range(STAT_SHARDS):
                used = _use(template_id, store_level(STORE) if n % 2 else "HQ", STORE, day, n)
                _count(lambda tx, used=used: count_redemption(tx, used, 1))
    return _templates["stats"]


def _stats(template_id: str, store_id: str | None, actor: Principal, redeemed_a_day: int) -> None:
    first, last = _stats_days()
    _, days = benefit_pool.stats(template_id, store_id, None, first, last, actor, bootstrap.coupons(),
                                 bootstrap.stores())
    if len(days) != STATS_DAYS or any(d.redeemed != redeemed_a_day for d in days):
        raise RuntimeError(f"stats: {len(days)} days, redeemed {[d.redeemed for d in days]}")


_settled: list[str] = []


def _settlement_month() -> str:
    """A month a year ago, made once: SETTLE_ROWS rows, each redeemed in SETTLE_SHARDS shards."""
    if not _settled:
        day = (clock.business_day(clock.now()) - timedelta(days=365)).replace(day=15)
        templates = [_template(f"settle{i}", kind="cash", value=500) for i in range(SETTLE_TEMPLATES)]
        i = 0
        for template_id in templates:
            for issuer in SETTLE_ISSUERS:
                for store_id in SETTLE_STORES:
                    for k in range(SETTLE_SHARDS):
                        used = _use(template_id, issuer, store_id, day, (i + 3 * k) % STAT_SHARDS)
                        _count(lambda tx, used=used: count_redemption(tx, used, 1))
                    i += 1
        _settled.append(month_of(day))
    return _settled[0]


def _settle(month: str, store_id: str | None, actor: Principal, rows: int) -> None:
    _, found = benefit_pool.settlement(month, store_id, actor, bootstrap.coupons(), bootstrap.stores())
    if len(found) != rows or any(r.count != SETTLE_SHARDS for r in found):
        raise RuntimeError(f"settlement: {len(found)} rows, expected {rows} of {SETTLE_SHARDS} each")


def issue_seconds(issue: Callable[[list[str], int | None], None]) -> float:
    """Local wall time of one issue to 1,000 members as the API runs it (in parallel), with no meter on the
    client (the meter's own reads and its one-request-at-a-time sizing would slow it)."""
    members = _bulk_members()
    start = time.perf_counter()
    issue(members, None)
    return time.perf_counter() - start


def measure(runs: int) -> list[tuple[str, Usage]]:
    """Average usage per call of each scenario (requests, RCU and WCU divided by `runs`)."""
    # Build the repositories (which loads the secret bundle) before anything is counted.
    bootstrap.members()
    bootstrap.stores()
    program.tiers(bootstrap.ledger())  # the program configuration is cached per container
    program.rules(bootstrap.ledger())
    _bulk_members()  # 1,000 registrations, made before the meter is on (it would triple their requests)
    from .tickets import SCENARIOS as TICKETS  # it builds on this module's callers and Scenario

    results = []
    with CapacityMeter(bootstrap.dynamodb_client()) as meter:
        for scenario in [*SCENARIOS, *TICKETS]:
            args = scenario.prepare(runs)
            meter.take()  # forget the preparation's requests
            for arg in args:
                scenario.run(arg)
            total = meter.take()
            per = len(args) * scenario.per_run
            results.append((scenario.label, Usage(
                requests=Counter({op: count / per for op, count in total.requests.items()}),
                rcu=total.rcu / per, wcu=total.wcu / per)))
    _give_quota(BULK)
    seconds = {BULK_LABEL: bulk_issue_seconds(), QUOTA_LABEL: issue_seconds(_quota_issue)}
    return [(f"{label} (one issue: {seconds[label]:.1f} s locally)" if label in seconds else label, usage)
            for label, usage in results]
