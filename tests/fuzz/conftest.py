"""Fixtures of the schema fuzzer: the isolated world (tests/fuzz/world.py) the generated requests run in."""
from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fuzz import world as w


@pytest.fixture(scope="module")
def fuzz_world(stack, live) -> Iterator[w.World]:  # noqa: ANN001
    with w.isolated_world(stack, live) as world:
        w.CURRENT = world
        try:
            yield world
        finally:
            w.CURRENT = None


def pytest_collection_modifyitems(items) -> None:  # noqa: ANN001
    """Compatibility shim, schemathesis 4.32 x pytest 9.2: schemathesis names one item per operation
    ("test[POST /members]"), but pytest 9.2 builds node ids from the function's name and its parametrize
    call specs only, so every operation's item gets the same node id, and pytest-xdist then runs just one
    of them. Give each its own id again; a no-op once the ids are unique (a fixed schemathesis or pytest)."""
    seen: dict[str, int] = {}
    for item in items:
        seen[item.nodeid] = seen.get(item.nodeid, 0) + 1
    for item in items:
        label = getattr(item, "operation_label", None)
        if label and seen[item.nodeid] > 1:
            item._id = item.parent.id.child(item.originalname).with_params(label)  # noqa: SLF001
