"""A DynamoDB or Secrets Manager call, all retries included, gives up well inside the API Lambda's timeout, so
a slow dependency ends in our 503 (store/db.py maps transport errors) rather than API Gateway's 502/504."""
from __future__ import annotations

import json
from pathlib import Path

from botocore.retries.standard import ExponentialBackoff

from chalicelib import bootstrap

ROOT = Path(__file__).resolve().parents[2]


def worst_case_seconds(config) -> float:  # noqa: ANN001
    """Every attempt times out connecting and reading; every backoff is the throttling one at its maximum."""
    attempts = config.retries["max_attempts"]
    backoffs = sum(min(2 ** i, ExponentialBackoff._MAX_BACKOFF) for i in range(attempts - 1))
    return attempts * (config.connect_timeout + config.read_timeout) + backoffs


def test_boto_gives_up_before_the_api_lambda_times_out():
    config = bootstrap._boto_config()
    timeout = json.loads((ROOT / ".chalice" / "config.json").read_text())["lambda_timeout"]
    assert config.retries["mode"] == "standard"
    # Leave the request time to answer (and to have done its other calls): under three quarters of the timeout.
    assert worst_case_seconds(config) <= 0.75 * timeout, (worst_case_seconds(config), timeout)
    assert worst_case_seconds(config) == 18
