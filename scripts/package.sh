#!/usr/bin/env bash
# `make package [REGION=cn-north-1]`: the deployable stack in dist/ (template.json + artifacts/*.zip), see
# infra/package.py, then checks it for that region (infra/check.py: the SAM transform gives one API stage,
# cfn-lint is clean before and after it, no partition-specific ARN or domain).
# Offline apart from PyPI (Chalice downloads the layer's wheels once; they are cached under .local/package/).
# `chalice package` needs a region even without credentials; the template itself is region- and
# partition-neutral (one template for ap-east-1 and cn-north-1 alike), REGION chooses what it is checked for.
set -euo pipefail
cd "$(dirname "$0")/.."
export AWS_DEFAULT_REGION="${REGION:-${AWS_DEFAULT_REGION:-ap-east-1}}"
.venv/bin/python -m infra.package "$@"
exec .venv/bin/python -m infra.check --region "$AWS_DEFAULT_REGION" dist/template.json
