"""Stateful fuzzing: schemathesis follows the OpenAPI links (chalicelib/api/openapi.py LINKS) to chain real
calls: register a member, then read, edit, order for, redeem from, cancel, merge, export and erase them;
post an order, then read and refund it; put a store, then read it and register there. Every step must be
documented and valid (the same checks as the stateless run, plus use-after-free and resource
availability), and afterwards the ledger auditor proves every touched member's books exact.

Each step runs as the most capable caller the operation admits (HQ where allowed), so that sequences go
deep; test_schema_fuzz.py covers every caller on every operation."""
from __future__ import annotations

import hypothesis
from hypothesis import HealthCheck
from hypothesis.errors import Flaky
from schemathesis.core.failures import FailureGroup

from chalicelib.api import load_all
from tests.fuzz import world as w

schema = w.build_schema()

# Preference: HQ, then the counter, then a member (the WeChat-signed-in one for POST /members/me/phone).
_PREFERENCE = ("hq", "staff", "integration", "member")
CALLER = {f"{r.method} {r.path}": "anonymous" if r.public else
          ("member_wechat" if r.name == "bind_phone" else next(c for c in _PREFERENCE if c in r.roles))
          for r in load_all()}


# Where scenarios may start. schemathesis guesses roots from its own dependency analysis, which reads the
# `store_id` of a registration or an order as a "Store" resource that no operation produces (PUT answers
# a StoreView), so it would never start from a registration or an order: the very sequences the links
# describe. The fixture's world has the stores, so these are added as roots (schemathesis' own choices stay).
ROOTS = {"POST /members", "POST /orders", "PUT /stores/{store_id}", "POST /auth/wechat"}


def test_linked_sequences_stay_documented_and_balanced(fuzz_world: w.World, monkeypatch):  # noqa: ANN001
    from schemathesis.specs.openapi import stateful

    guess = stateful.is_likely_root_transition
    monkeypatch.setattr(stateful, "is_likely_root_transition",
                        lambda operation, *args: operation.label in ROOTS or guess(operation, *args))
    machine = schema.as_state_machine()
    assert {"RANDOM__POST_members", "RANDOM__POST_orders"} <= machine.root_rules, sorted(machine.root_rules)
    transitions = schema.statistic.transitions.total
    assert transitions >= 20, f"the document declares {transitions} links"
    failures: list[str] = []
    scenarios = 0

    class Sequences(machine):  # type: ignore[misc, valid-type]
        def setup(self) -> None:
            nonlocal scenarios
            scenarios += 1
            self.session = fuzz_world.session()
            self.steps: list[str] = []

        def teardown(self) -> None:
            self.session.close()

        def get_call_kwargs(self, case):  # noqa: ANN001, ANN201
            return {"base_url": fuzz_world.url, "session": self.session,
                    "headers": fuzz_world.auth(CALLER[case.operation.label])}

        def after_call(self, response, case):  # noqa: ANN001, ANN201
            super().after_call(response, case)
            self.steps.append(f"{case.method.upper()} {response.request.path_url[:80]} -> {response.status_code}")
            fuzz_world.record(case.operation.label, CALLER[case.operation.label], response.status_code)
            fuzz_world.observe(response)

        def validate_response(self, response, case, additional_checks=None, **kwargs):  # noqa: ANN001, ANN201
            try:
                super().validate_response(response, case, additional_checks, **kwargs)
            except FailureGroup as exc:  # kept here: Hypothesis may fail to replay it (see below)
                caller = CALLER[case.operation.label]
                failures.append(f"sequence: {' | '.join(self.steps)}\nlast step as {caller}: {exc}")
                raise

    # As schemathesis' own runner does for stateful runs: generate only (no shrinking, no replay database).
    # The server is external state: which bundles hold ids depends on its answers, so Hypothesis may stop
    # a run as "flaky" when a choice it made before leads elsewhere now. That is not a finding; the run
    # restarts until the budget of scenarios is spent. Findings are the check failures recorded above.
    settings = hypothesis.settings(stateful_step_count=w.STATEFUL_STEPS, deadline=None, database=None,
                                   phases=[hypothesis.Phase.generate], suppress_health_check=list(HealthCheck))
    for _ in range(20):
        if scenarios >= w.STATEFUL_EXAMPLES or failures:
            break
        try:
            Sequences.run(settings=hypothesis.settings(settings, max_examples=w.STATEFUL_EXAMPLES - scenarios))
        except (Flaky, FailureGroup):
            pass
    assert not failures, "\n\n".join(failures)

    chained = {op for (op, status), n in fuzz_world.statuses.items() if 200 <= status < 300}
    deep = {op for op in chained if "{" in op}  # operations on an id that an earlier answer supplied
    assert {"POST /members", "POST /orders"} <= chained and len(deep) >= 5, fuzz_world.report("stateful")
    assert fuzz_world.audit() >= len(fuzz_world.members)
    w.write_report("stateful", fuzz_world.report("stateful fuzz, linked sequences"))
