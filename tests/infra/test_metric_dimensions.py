"""What the code emits matches what the alarms watch: same metric names, same dimensions, per stage.

A stage's alarms must see its own metrics only (dev and prod may share an account), and an alarm on a
dimension set the code never emits would stay silent forever."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

EMIT = """
from chalicelib.observability import logger, metrics
metrics.add_metric(name="PointsExpiryRunSucceeded", unit="Count", value=1)
metrics.flush_metrics()
logger.error("boom")
"""


def _emitted(stage: str) -> tuple[dict, dict]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("POWERTOOLS_")}
    env.update(CHAINCRM_STAGE=stage, PYTHONPATH=str(ROOT))
    out = subprocess.run([sys.executable, "-c", EMIT], env=env, cwd=ROOT, capture_output=True, text=True,
                         check=True, timeout=60)
    lines = [json.loads(line) for line in (out.stdout + out.stderr).splitlines() if line.startswith("{")]
    emf = next(line for line in lines if "_aws" in line)
    log = next(line for line in lines if line.get("message") == "boom")
    return emf, log


def test_job_success_metric_carries_the_dimensions_its_alarm_watches(resources, specs):  # noqa: ANN001
    emf, _ = _emitted("prod")
    (directive,) = emf["_aws"]["CloudWatchMetrics"]
    (dimension_names,) = directive["Dimensions"]
    emitted = {name: emf[name] for name in dimension_names}
    assert emitted == {"service": "chaincrm", "stage": "prod"}

    alarm = resources["PointsExpiryDidNotFinishAlarm"]["Properties"]
    assert alarm["MetricName"] in {m["Name"] for m in directive["Metrics"]}
    assert alarm["Namespace"] == directive["Namespace"]
    watched = {d["Name"]: d["Value"] for d in alarm["Dimensions"]}
    assert watched == {"service": "chaincrm", "stage": {"Ref": "Stage"}}


def test_api_error_lines_name_their_stage_for_the_log_metric(resources):  # noqa: ANN001
    _, log = _emitted("dev")
    assert log["stage"] == "dev" and log["level"] == "ERROR"
    (transform,) = resources["ApiErrorLogFilter"]["Properties"]["MetricTransformations"]
    assert transform["Dimensions"] == [{"Key": "stage", "Value": "$.stage"}]
    alarm = next(r["Properties"] for r in resources.values()
                 if r["Type"] == "AWS::CloudWatch::Alarm" and r["Properties"].get("MetricName") == "ApiErrorLogLines")
    assert alarm["Dimensions"] == [{"Name": "stage", "Value": {"Ref": "Stage"}}]
