"""The packaged stack, built once per run: scripts/test.sh builds dist/ before pytest; if dist/ is missing or
older than the sources (pytest run on its own), the first test that needs it builds it, under a lock that the
other xdist worker waits on, so it is built once."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from infra import package, stack


@pytest.fixture(scope="session")
def packaged() -> dict[str, Any]:
    return package.ensure_built()


@pytest.fixture(scope="session")
def template(packaged) -> dict[str, Any]:  # noqa: ANN001
    return json.loads((package.DIST / packaged["template"]).read_text())


@pytest.fixture(scope="session")
def resources(template) -> dict[str, Any]:  # noqa: ANN001
    return template["Resources"]


@pytest.fixture(scope="session")
def specs() -> list[stack.FunctionSpec]:
    return stack.load_functions()


@pytest.fixture(scope="session")
def api_spec() -> stack.ApiSpec:
    return stack.load_api()


@pytest.fixture(scope="session")
def artifacts(packaged) -> dict[str, Path]:  # noqa: ANN001
    return {kind: package.DIST / a["file"] for kind, a in packaged["artifacts"].items()}


def of_type(resources: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {name: r for name, r in resources.items() if r["Type"] == kind}


def lambdas(resources: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {**of_type(resources, "AWS::Lambda::Function"), **of_type(resources, "AWS::Serverless::Function")}


def refers_to(value: Any, logical: str) -> bool:
    """Whether an intrinsic value is a Ref/GetAtt of `logical`."""
    return value in ({"Ref": logical}, {"Fn::GetAtt": [logical, "Arn"]})
