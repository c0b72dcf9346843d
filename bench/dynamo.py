"""DynamoDB requests and capacity per use case: the service functions called directly against DynamoDB Local.

Each scenario prepares its own fresh data first (not measured), then runs the use case N times under the meter.
"""
from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from chalicelib import bootstrap
from chalicelib.domain import clock
from chalicelib.domain.access import Principal, Role
from chalicelib.domain.members import Registration
from chalicelib.domain.orders import OrderInput, RefundInput
from chalicelib.services import expiry, guest_orders, points_views, posting, program, redemptions, refunds
from chalicelib.services import members as svc
from testkit.support import unique_phone

from .capacity import CapacityMeter, Usage

STORE = "sh-001"
# A counter clerk of the store: the caller the hot paths (register, look up) are built for.
CLERK = Principal(sub="bench-clerk", role=Role.STAFF, store_ids=frozenset({STORE}))


@dataclass
class Scenario:
    label: str
    prepare: Callable[[int], list[Any]]  # n -> one argument per measured run (fresh data, made unmeasured)
    run: Callable[[Any], None]


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


def measure(runs: int) -> list[tuple[str, Usage]]:
    """Average usage per call of each scenario (requests, RCU and WCU divided by `runs`)."""
    # Build the repositories (which loads the secret bundle) before anything is counted.
    bootstrap.members()
    bootstrap.stores()
    program.tiers(bootstrap.ledger())  # the program configuration is cached per container
    program.rules(bootstrap.ledger())
    results = []
    with CapacityMeter(bootstrap.dynamodb_client()) as meter:
        for scenario in SCENARIOS:
            args = scenario.prepare(runs)
            meter.take()  # forget the preparation's requests
            for arg in args:
                scenario.run(arg)
            total = meter.take()
            per = len(args)
            results.append((scenario.label, Usage(
                requests=Counter({op: count / per for op, count in total.requests.items()}),
                rcu=total.rcu / per, wcu=total.wcu / per)))
    return results
