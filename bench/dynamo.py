"""DynamoDB requests and capacity per use case: the service functions called directly against DynamoDB Local.

Each scenario prepares its own fresh data first (not measured), then runs the use case N times under the meter.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from chalicelib import bootstrap
from chalicelib.domain.access import Principal, Role
from chalicelib.domain.members import Registration
from chalicelib.services import members as svc
from tests.support import unique_phone

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
]


def measure(runs: int) -> list[tuple[str, Usage]]:
    """Average usage per call of each scenario (requests, RCU and WCU divided by `runs`)."""
    # Build the repositories (which loads the secret bundle) before anything is counted.
    bootstrap.members()
    bootstrap.stores()
    results = []
    with CapacityMeter(bootstrap.dynamodb_client()) as meter:
        for scenario in SCENARIOS:
            args = scenario.prepare(runs)
            meter.take()  # forget the preparation's requests
            for arg in args:
                scenario.run(arg)
            total = meter.take()
            results.append((scenario.label, Usage(
                requests=Counter({op: count / runs for op, count in total.requests.items()}),
                rcu=total.rcu / runs, wcu=total.wcu / runs)))
    return results
