#!/usr/bin/env bash
# The whole suite: lints, the import-layering contract, then every test (2 workers: one per core; each
# worker starts its own in-memory DynamoDB Local). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
.venv/bin/ruff check .
.venv/bin/lint-imports --no-cache
.venv/bin/python -m pytest -n 2 --dist loadfile "$@"
