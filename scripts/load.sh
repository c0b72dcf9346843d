#!/usr/bin/env bash
# Load / retry storm on the local stack, then a ledger audit (bench/load.py): `scripts/load.sh [--quick] [--faults]`.
set -euo pipefail
cd "$(dirname "$0")/.." && bash scripts/setup.sh && exec .venv/bin/python -m bench.load "$@"
