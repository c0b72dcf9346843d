"""Fixtures. Unit tests use none of the stack fixtures, so they run with no Java and no sockets.

`stack` starts one DynamoDB Local (in memory), moto's server and a fake WeChat per test process (per
xdist worker), creates the table from infra/template.json and the demo stores the tests rely on.
"""
from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

from testkit.support import Api, LiveServer, Tokens, create_stores


@pytest.fixture(scope="session")
def stack() -> Iterator[object]:
    os.environ["POWERTOOLS_METRICS_DISABLED"] = "true"  # keep EMF blobs out of test output
    from chalicelib import bootstrap
    from chalicelib.local.stack import LocalStack, new_secret_bundle

    s = LocalStack(new_secret_bundle(), table_name=f"chaincrm-test-{uuid.uuid4().hex[:8]}").start()
    bootstrap.reset()
    create_stores()
    yield s
    s.stop()


@pytest.fixture
def fresh_table(stack, monkeypatch) -> Iterator[str]:  # noqa: ANN001
    """A new empty table for tests that need to count or list everything."""
    from chalicelib import bootstrap

    name = f"chaincrm-fresh-{uuid.uuid4().hex[:8]}"
    stack.ensure_table(name)
    monkeypatch.setenv("CHAINCRM_TABLE_NAME", name)
    bootstrap.reset()
    yield name
    monkeypatch.setenv("CHAINCRM_TABLE_NAME", stack.table_name)
    bootstrap.reset()
    stack.client("dynamodb").delete_table(TableName=name)


@pytest.fixture(scope="session")
def tokens(stack) -> Tokens:  # noqa: ANN001
    return Tokens(stack.bundle)


@pytest.fixture(scope="session")
def api(stack) -> Iterator[Api]:  # noqa: ANN001
    from chalice.test import Client

    from app import app

    with Client(app) as client:
        yield Api(client)


@pytest.fixture(scope="session")
def live(stack) -> Iterator[LiveServer]:  # noqa: ANN001
    server = LiveServer().start()
    yield server
    server.stop()


# How the run is spread over the workers (scripts/test.sh: --dist loadgroup). Every test is grouped with its file
# (as --dist loadfile would: a file's module fixtures are made once), except the files in SPLIT, whose tests are
# dealt into that many groups: the bad-input suite checks "nothing written" by scanning its own table before
# and after each of its ~2,000 cases, so one worker running it whole ends the run alone, ever slower as the
# table grows (measured: its last ten minutes on one worker). Each group gets its own module fixtures (its
# own table), so the scans stay short too.
SPLIT = {"tests/api/test_bad_input.py": 4, "tests/api/test_access_matrix.py": 2}
# The longest groups start first: xdist hands them out in collection order, so a long one collected last keeps
# one worker busy while the other has finished.
LONG_FILES = ("tests/api/test_bad_input.py", "tests/integration/test_ledger_state_machine.py",
              "tests/fuzz/test_schema_fuzz.py", "tests/fuzz/test_stateful_fuzz.py",
              "tests/api/test_access_matrix.py", "tests/integration/test_rfm_reference.py",
              "tests/integration/test_concurrent_pool.py", "tests/integration/test_rfm_job.py",
              "tests/integration/test_coupon_audience.py")


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook turns the marks into node ids
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        path = item.nodeid.split("::", 1)[0]
        return LONG_FILES.index(path) if path in LONG_FILES else len(LONG_FILES)

    items.sort(key=rank)  # stable: every other test keeps its order
    dealt: dict[str, int] = {}
    for item in items:
        path = item.nodeid.split("::", 1)[0]
        if path in SPLIT:
            n = dealt[path] = dealt.get(path, -1) + 1
            item.add_marker(pytest.mark.xdist_group(f"{path}#{n % SPLIT[path]}"))
        else:
            item.add_marker(pytest.mark.xdist_group(path))
