#!/usr/bin/env bash
# The long schema-fuzzing run (CI runs the same tests/fuzz with a small budget): 100 examples per operation and
# mode, 300 linked scenarios, a fresh seed (printed; CHAINCRM_FUZZ_SEED=<it> replays). Override any
# CHAINCRM_FUZZ_* variable (tests/fuzz/world.py); extra arguments go to pytest. Report: .local/fuzz-*.txt
set -uo pipefail
cd "$(dirname "$0")/.." && bash scripts/setup.sh || exit 1
rm -f .local/fuzz-*.txt
CHAINCRM_FUZZ_EXAMPLES="${CHAINCRM_FUZZ_EXAMPLES:-100}" CHAINCRM_FUZZ_STATEFUL_EXAMPLES="${CHAINCRM_FUZZ_STATEFUL_EXAMPLES:-300}" \
  CHAINCRM_FUZZ_SEED="${CHAINCRM_FUZZ_SEED:-random}" .venv/bin/python -m pytest -n 2 --dist loadfile tests/fuzz "$@"
status=$?
cat .local/fuzz-*.txt 2>/dev/null
exit $status
