"""The layers the architecture promises, checked on the source (import-linter checks the imports; this
checks what handlers do): every view calls exactly one service function and never a repository, and the
generated files (routes.json, docs/access-policy.md) match what they are generated from."""
from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

from chalicelib.api import VIEW_MODULES

ROOT = Path(__file__).resolve().parents[2]
API = ROOT / "chalicelib" / "api"
VIEW_FILES = sorted(p for p in API.glob("*.py") if p.stem in VIEW_MODULES)
# bootstrap getters that hand out repositories (or the raw table): a view may pass them to a service, never
# call them itself
REPOSITORY_GETTERS = {"members", "stores", "ledger", "coupons", "tickets", "kb", "db", "dynamodb_client"}


def _service_aliases(tree: ast.Module) -> set[str]:
    """Names bound to service modules in this file (`from ..services import posting, refunds as r`)."""
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.module and node.module.endswith("services"):
            names |= {a.asname or a.name for a in node.names}
    return names


def _views(tree: ast.Module) -> list[ast.FunctionDef]:
    def is_route(d: ast.expr) -> bool:
        return isinstance(d, ast.Call) and isinstance(d.func, ast.Name) and d.func.id == "route"

    return [n for n in tree.body if isinstance(n, ast.FunctionDef) and any(is_route(d) for d in n.decorator_list)]


def _problems(source: str) -> list[str]:
    tree = ast.parse(source)
    services = _service_aliases(tree)
    found = []
    for view in _views(tree):
        service_calls = []
        for node in ast.walk(view):
            if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
                continue
            receiver = node.func.value
            if isinstance(receiver, ast.Name) and receiver.id in services:
                service_calls.append(f"{receiver.id}.{node.func.attr}")
            # bootstrap.ledger().get_order(...): a repository method called from a handler
            if (isinstance(receiver, ast.Call) and isinstance(receiver.func, ast.Attribute)
                    and isinstance(receiver.func.value, ast.Name) and receiver.func.value.id == "bootstrap"
                    and receiver.func.attr in REPOSITORY_GETTERS):
                found.append(f"{view.name}: calls a repository (bootstrap.{receiver.func.attr}().{node.func.attr})")
        # health and the document answer without a use case
        if len(service_calls) != 1 and view.name not in ("health", "openapi"):
            found.append(f"{view.name}: calls {len(service_calls)} service functions {service_calls}, not one")
    return found


@pytest.mark.parametrize("path", VIEW_FILES, ids=lambda p: p.stem)
def test_every_view_calls_one_service_function_and_no_repository(path: Path) -> None:
    assert _problems(path.read_text()) == []


def test_the_check_catches_a_view_that_reads_a_repository() -> None:
    # Given a view that looks an order up itself, as api/orders.py once did
    broken = '''
from .. import bootstrap
from ..services import order_reads

@route("/orders/{order_id}", "GET", op="orders.get")
def get_order(call, order_id):
    order = bootstrap.ledger().get_order(order_id)
    return order_reads.get_order(order_id, call.principal, bootstrap.ledger(), bootstrap.stores())
'''
    # When it is checked, Then both the repository call is named
    assert _problems(broken) == ["get_order: calls a repository (bootstrap.ledger().get_order)"]


def test_the_check_catches_a_view_that_calls_two_use_cases() -> None:
    broken = '''
from ..services import members, program

@route("/members/{member_id}/merge", "POST", op="members.merge")
def merge_member(call, member_id):
    tiers = program.tiers(None)
    return members.merge(member_id, tiers)
'''
    assert _problems(broken) == ["merge_member: calls 2 service functions ['program.tiers', 'members.merge'], not one"]


def test_route_table_is_current() -> None:
    # routes.json is what the app registers at import (the views load lazily); it must list what the views declare
    from chalicelib.api import ROUTE_TABLE, route_table

    assert json.loads(ROUTE_TABLE.read_text()) == route_table(), \
        "chalicelib/api/routes.json is stale: run `python -m chalicelib.cli routes`"


def test_access_policy_doc_is_current() -> None:
    from chalicelib.cli import POLICY_DOC, policy_doc

    assert POLICY_DOC.read_text() == policy_doc(), \
        "docs/access-policy.md is stale: run `python -m chalicelib.cli policy`"


def test_every_route_names_an_operation_of_the_policy() -> None:
    from chalicelib.api import load_all
    from chalicelib.domain.policy import POLICY, PUBLIC

    specs = load_all()
    assert {s.operation for s in specs} <= POLICY.keys() | PUBLIC
    assert len({s.operation for s in specs}) == len(specs), "two routes share one operation"


def test_importing_the_app_builds_no_view_module() -> None:
    # The cold-start promise (api/__init__.py): `import app` registers dispatchers, the views load on first call.
    import subprocess
    import sys

    code = ("import sys, app; loaded = [m for m in sys.modules if m.startswith(('chalicelib.api.', "
            "'chalicelib.services', 'chalicelib.domain.orders', 'pydantic.main'))]; print(loaded)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
