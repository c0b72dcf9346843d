#!/usr/bin/env bash
# The whole suite: lints, the import-layering contract, the package (dist/, as `make package` builds it) and
# cfn-lint on its template, then every test, tests/infra included (2 workers: one per core; each worker starts
# its own in-memory DynamoDB Local; tests/conftest.py groups the tests: by file, the longest split). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
.venv/bin/ruff check .
.venv/bin/lint-imports --no-cache
bash scripts/package.sh
.venv/bin/cfn-lint dist/template.json infra/artifacts-bucket.json
.venv/bin/python -m pytest -n 2 --dist loadgroup "$@"
