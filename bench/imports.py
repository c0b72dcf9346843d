"""Cold import time: what a Lambda cold start pays before the handler runs, each sample in a fresh interpreter."""
from __future__ import annotations

import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# The libraries every entry point needs anyway: the part of a cold start our own code cannot shrink.
# `import pydantic` is lazy: BaseModel's machinery loads with the first model, so it counts as 'added'.
# `import pydantic` alone defers BaseModel; every app defines models, so the floor includes it.
FLOOR = "import chalice; from pydantic import BaseModel; from aws_lambda_powertools import Logger; Logger()"
# Creating a boto3 client is the expensive part of boto3, which is why bootstrap builds clients lazily.
BOTO3_CLIENT = "import boto3; boto3.client('dynamodb', region_name='ap-east-1')"

# `import app` registers lazy dispatchers (chalicelib/api/__init__.py): a view's module, its models and
# services load on the first request that needs them. These rows add that to the import, so the cold start
# a first request really pays is in the table too, not only the part before it.
FIRST_REQUEST = [
    ("import app + the members views (first /members request)", "import app; import chalicelib.api.members"),
    ("import app + every view (worst first request)", "import app; from chalicelib.api import load_all; load_all()"),
]

# The timer wraps only the statement: interpreter start-up is the same for every entry and is left out.
TIMER = "import time\n_t0 = time.perf_counter()\n{stmt}\nprint(time.perf_counter() - _t0)\n"


def entry_points() -> list[tuple[str, str]]:
    """(label, statement): the floor, the API, every Lambda under functions/, and the boto3 reference."""
    functions = sorted(p.stem for p in (ROOT / "functions").glob("*.py") if p.stem != "__init__")
    return [("floor: chalice + pydantic + powertools Logger", FLOOR), ("import app (the API)", "import app"),
            *FIRST_REQUEST,
            *[(f"import functions.{name}", f"import functions.{name}") for name in functions],
            ("reference: boto3 + a DynamoDB client", BOTO3_CLIENT)]


def time_import(stmt: str, runs: int) -> float:
    """Median seconds over `runs` fresh interpreters (cwd = repo root, as Lambda's task root)."""
    # Without the local stack's variables: importing must not depend on (or be slowed by) them.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "CHAINCRM_"))}
    code = TIMER.format(stmt=stmt)

    def once() -> float:
        out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                             check=True, timeout=60)
        return float(out.stdout.strip().splitlines()[-1])

    once()  # discarded: the first run may compile .pyc files; the median compares like with like
    return statistics.median(once() for _ in range(runs))
