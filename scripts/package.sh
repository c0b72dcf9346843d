#!/usr/bin/env bash
# `make package`: the deployable stack in dist/ (template.json + artifacts/*.zip), see infra/package.py.
# Offline apart from PyPI (Chalice downloads the layer's wheels once; they are cached under .local/package/).
# `chalice package` needs a region even without credentials; the template itself is region-neutral.
set -euo pipefail
cd "$(dirname "$0")/.."
export AWS_DEFAULT_REGION="${AWS_DEFAULT_REGION:-ap-east-1}"
exec .venv/bin/python -m infra.package "$@"
