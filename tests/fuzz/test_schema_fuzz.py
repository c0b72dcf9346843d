"""Schema fuzzing over real HTTP: schemathesis reads the API's OpenAPI document (the one the live server
serves at /openapi.json, checked below) and sends generated requests, valid and invalid, to every operation
on the live local stack, each as every kind of caller. Every answer must be documented: no 5xx, a documented
status code and content type, a body matching its schema (errors: ErrorBody), invalid input refused with a
4xx, a request without a token answered 401, an undeclared method 405.

Budget: tests/fuzz/world.py (CHAINCRM_FUZZ_* variables; scripts/fuzz.sh runs the long version).
"""
from __future__ import annotations

import json

import pytest
import requests

from tests.fuzz.world import ROLES, World, build_schema, write_report

schema = build_schema()


def test_served_document_is_the_fuzzed_one(fuzz_world: World):
    """The fuzzer reads the document at collection time (one pytest item per operation); it must be what
    the running API serves at /openapi.json, links included."""
    from chalicelib.api.openapi import LINKS, document

    served = requests.get(f"{fuzz_world.url}/openapi.json", timeout=30).json()
    assert served == json.loads(json.dumps(document()))
    links = [link for ops in served["paths"].values() for op in ops.values()
             for answer in op["responses"].values() for link in answer.get("links", {})]
    assert set(links) == {name for by_source in LINKS.values() for name in by_source}


@schema.parametrize()
def test_every_operation_as_every_caller(case, fuzz_world: World):  # noqa: ANN001
    public = not case.operation.definition.raw.get("security", True)  # `security: []`: no token needed
    callers = ("anonymous",) if public else ROLES
    with fuzz_world.session() as session:
        for n, caller in enumerate(callers):
            try:
                response = case.call_and_validate(
                    base_url=fuzz_world.url, session=session, headers=fuzz_world.auth(caller),
                    # One no-token replay per case proves the 401; repeating it for every caller adds nothing.
                    excluded_checks=_IGNORED_AUTH if n else None)
            except Exception as exc:
                exc.add_note(f"caller: {caller}")
                raise
            fuzz_world.record(case.operation.label, caller, response.status_code)
            fuzz_world.observe(response)


def _ignored_auth() -> list:
    from schemathesis.specs.openapi.checks import ignored_auth

    return [ignored_auth]


_IGNORED_AUTH = _ignored_auth()


def test_every_operation_was_fuzzed_as_every_caller_and_the_books_balance(fuzz_world: World, request):  # noqa: ANN001
    """Runs after the parametrized test above (same module, same worker): every documented operation got
    requests from every kind of caller, and the ledger auditor finds every touched member's books exact.

    Under `-n 2 --dist loadfile` (scripts/test.sh) the whole module runs on one worker. Under xdist's default
    `--dist load` the operations are spread over the workers, each with its own world: this worker can then
    only vouch for the operations it ran (every caller, balanced books), not that every one was run."""
    from chalicelib.api.openapi import document

    if not fuzz_world.sent:
        pytest.skip("run together with test_every_operation_as_every_caller")
    documented = {f"{method.upper()} {path}" for path, ops in document()["paths"].items() for method in ops}
    fuzzed = {op for op, _ in fuzz_world.sent}
    spread = hasattr(request.config, "workerinput") and request.config.getoption("dist") not in ("loadfile",
                                                                                                 "loadscope")
    assert fuzzed <= documented if spread else fuzzed == documented
    for op in fuzzed if spread else documented:
        public = not document()["paths"][op.split(" ", 1)[1]][op.split(" ")[0].lower()].get("security", True)
        callers = {c for o, c in fuzz_world.sent if o == op}
        assert callers == ({"anonymous"} if public else set(ROLES)), op
    assert fuzz_world.audit() >= len(fuzz_world.members)
    write_report("stateless", fuzz_world.report("schema fuzz, every operation x every caller"))

