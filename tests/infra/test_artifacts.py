"""The zips themselves: size, what they may not contain, bytecode, and that they import on their own."""
from __future__ import annotations

import importlib.util
import json
import os
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from infra import package

MB = 1_000_000
LAYER_SITE = f"python/lib/python{sys.version_info.major}.{sys.version_info.minor}/site-packages"
TAG = sys.implementation.cache_tag  # cpython-311


def _names(path: Path) -> list[str]:
    with zipfile.ZipFile(path) as z:
        return [i.filename for i in z.infolist() if not i.is_dir()]


def test_sizes_within_the_limits(packaged):  # noqa: ANN001
    a = packaged["artifacts"]
    for kind in ("api", "functions"):  # our own code
        assert a[kind]["unzipped_bytes"] < 15 * MB, kind
        assert a[kind]["unzipped_bytes"] + a["layer"]["unzipped_bytes"] < 250 * 1024 * 1024, kind


def test_no_boto3_local_tooling_or_test_tools_ship(artifacts):  # noqa: ANN001
    for kind, path in artifacts.items():
        names = _names(path)
        prefix = LAYER_SITE + "/" if kind == "layer" or kind.endswith("-layer") else ""  # a function's own too
        tops = package.top_level_names(names, prefix)
        assert not tops & package.FORBIDDEN_PACKAGES, (kind, tops & package.FORBIDDEN_PACKAGES)
        assert not [n for n in names if n.startswith(("chalicelib/local/", "chalicelib/cli.py", "tests/"))]
        # the test suite, its shared helpers and the benchmarks never ship, at the root or in the layer
        assert not tops & {"tests", "testkit", "bench"}, (kind, tops & {"tests", "testkit", "bench"})
        assert not [n for n in names if n.removeprefix(prefix).startswith(("tests/", "testkit/", "bench/"))], kind
        if kind != "api":
            assert "chalice" not in tops, "the Chalice runtime shim belongs to the API only"
    layer_tops = package.top_level_names(_names(artifacts["layer"]), LAYER_SITE + "/")
    assert {"pydantic", "pydantic_core", "aws_lambda_powertools", "jwt", "cryptography", "tzdata"} <= layer_tops
    assert {"app.py", "chalice/app.py", "chalicelib/bootstrap.py"} <= set(_names(artifacts["api"]))
    assert not [n for n in _names(artifacts["api"]) if n.startswith("functions/")]
    assert {"functions/merge_resume.py", "chalicelib/bootstrap.py"} <= set(_names(artifacts["functions"]))


def _pyc_for(py: str) -> str:
    folder, _, name = py.rpartition("/")
    return f"{folder}/__pycache__/{name[:-3]}.{TAG}.pyc" if folder else f"__pycache__/{name[:-3]}.{TAG}.pyc"


@pytest.mark.parametrize("kind", ["api", "functions", "layer"])
def test_every_module_ships_unchecked_bytecode_for_the_runtime(artifacts, kind):  # noqa: ANN001
    with zipfile.ZipFile(artifacts[kind]) as z:
        names = set(z.namelist())
        sources = [n for n in names if n.endswith(".py")]
        missing = [n for n in sources if _pyc_for(n) not in names]
        # our code: every module; third-party: a template or py2 file inside a package may not compile
        assert len(missing) <= (0 if kind != "layer" else len(sources) // 100), missing[:5]
        for py in sources[:: max(1, len(sources) // 50)]:
            if py in missing:
                continue
            header = z.read(_pyc_for(py))[:16]
            magic, flags = header[:4], struct.unpack("<I", header[4:8])[0]
            assert magic == importlib.util.MAGIC_NUMBER, py
            assert flags == 0b01, f"{py}: not an unchecked-hash pyc (flags {flags:#b})"


def _extract_poisoned(zip_path: Path, into: Path) -> None:
    """Extract, then replace every source that has bytecode by one that fails: an import that works now ran
    the shipped .pyc, never the source (as on Lambda, where a stale or checked pyc would mean a recompile)."""
    with zipfile.ZipFile(zip_path) as z:
        z.extractall(into)
        names = set(z.namelist())
    for name in names:
        if name.endswith(".py") and _pyc_for(name) in names:
            (into / name).write_text("raise SystemError('compiled from source: the .pyc was not used')\n")


@pytest.mark.parametrize("kind, statement", [
    ("api", "import app; assert app.app.app_name == 'chaincrm'"),
    ("functions", "import importlib, json; [importlib.import_module(m) for m in json.loads(MODULES)]"),
])
def test_artifacts_import_from_their_bytecode_without_boto3(artifacts, packaged, tmp_path, kind, statement):  # noqa: ANN001
    code, layer = tmp_path / "task", tmp_path / "opt"
    _extract_poisoned(artifacts[kind], code)
    _extract_poisoned(artifacts["layer"], layer)
    if kind == "functions":  # every function's own layer too (test_rfm_state_machine.py: each with its own only)
        for own in {k for kinds in packaged["function_layers"].values() for k in kinds if k != "layer"}:
            _extract_poisoned(artifacts[own], layer)
    modules = sorted({h.rsplit(".", 1)[0] for h in packaged["functions"].values()})
    script = "\n".join([f"MODULES = {json.dumps(modules)!r}", statement,
                        "import sys; assert 'boto3' not in sys.modules, 'boto3 loaded at import time'",
                        "assert not [m for m in sys.modules if m.startswith(('moto', 'chalicelib.local'))]"])
    env = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": f"{code}{os.pathsep}{layer / LAYER_SITE}",
           "PYTHONDONTWRITEBYTECODE": "1", "LANG": "C.UTF-8"}
    # -S: no site-packages of this machine; only the artifact, its layer and the standard library
    proc = subprocess.run([sys.executable, "-S", "-c", script], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
