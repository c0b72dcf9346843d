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
