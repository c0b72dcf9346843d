"""The deployment artifacts (dist/, built by infra/package.py if out of date): their sizes, and the cold import
of each entry point from them as Lambda loads it: the zip's tree and the layer on the path (`python -S`: none
of this machine's site-packages), bytecode as shipped."""
from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Any

from infra import package

from .imports import FIRST_REQUEST, FLOOR, TIMER

LAYER_SITE = f"python/lib/python{sys.version_info.major}.{sys.version_info.minor}/site-packages"


def build() -> dict[str, Any]:
    return package.ensure_built()


def _time(stmt: str, path: list[Path], cwd: Path, runs: int) -> float:
    env = {"PYTHONPATH": ":".join(map(str, path)), "PYTHONDONTWRITEBYTECODE": "1", "LANG": "C.UTF-8"}
    code = TIMER.format(stmt=stmt)

    def once() -> float:
        out = subprocess.run([sys.executable, "-S", "-c", code], cwd=cwd, env=env, capture_output=True, text=True,
                             check=True, timeout=60)
        return float(out.stdout.strip().splitlines()[-1])

    once()
    return statistics.median(once() for _ in range(runs))


def cold_imports(manifest: dict[str, Any], runs: int) -> list[tuple[str, float]]:
    """(label, seconds): the floor, the API, then every function of the manifest (same floor as the API)."""
    with tempfile.TemporaryDirectory(prefix="chaincrm-bench-") as tmp:
        root = Path(tmp)
        for kind, a in manifest["artifacts"].items():
            with zipfile.ZipFile(package.DIST / a["file"]) as z:
                z.extractall(root / kind)
        layer = root / "layer" / LAYER_SITE
        rows = [("floor, from the API zip + layer", _time(FLOOR, [root / "api", layer], root, runs)),
                ("import app, from the API zip + layer", _time("import app", [root / "api", layer], root, runs)),
                *[(f"{label}, from the API zip + layer", _time(stmt, [root / "api", layer], root, runs))
                  for label, stmt in FIRST_REQUEST]]
        for name, handler in manifest["functions"].items():
            module = handler.rsplit(".", 1)[0]
            # Each function's own layers in the order Lambda stacks them (rfm: the shared one, then numpy's).
            kinds = manifest.get("function_layers", {}).get(name, ["layer"])
            rows.append((f"import {module} ({name}), from its zip + {' + '.join(kinds)}",
                         _time(f"import {module}", [root / "functions", *(root / k / LAYER_SITE for k in kinds)],
                               root, runs)))
        return rows
