"""infra/functions.json: one entry per function module, and the generator's rules for what an entry must say."""
from __future__ import annotations

import copy
import re
from pathlib import Path

import pytest

from infra import stack

ROOT = Path(__file__).resolve().parents[2]


def test_every_function_module_has_a_manifest_entry():
    modules = {f"functions.{p.stem}" for p in (ROOT / "functions").glob("*.py") if p.stem != "__init__"}
    declared = {s.module for s in stack.load_functions()}
    assert modules - declared == set(), "add these to infra/functions.json (trigger, grants, alarms)"
    assert declared - modules == set(), "manifest entries for modules that no longer exist"


def test_packaging_refuses_a_function_without_an_entry():
    specs = [s for s in stack.load_functions() if s.module != "functions.merge_resume"]
    with pytest.raises(stack.ManifestError, match="functions.merge_resume"):
        stack.check_manifest_complete(specs)


def test_every_metric_the_code_emits_is_on_the_dashboard():
    """A metric added in code must be listed (infra/api.json or its function's entry) to reach the dashboard."""
    emitted = set()
    for path in [*(ROOT / "chalicelib").rglob("*.py"), *(ROOT / "functions").rglob("*.py")]:
        emitted |= set(re.findall(r"add_metric\(\s*name\s*=\s*\"([A-Za-z0-9]+)\"", path.read_text()))
    listed = set(stack.dashboard_metrics(stack.load_api(), stack.load_functions()))
    assert emitted, "no metrics found: has the add_metric call changed shape?"
    assert emitted - listed == set()


def _manifest():
    return copy.deepcopy(stack.read_json(ROOT / "infra" / "functions.json"))


def _entry(**changes):
    manifest = _manifest()
    entry = next(e for e in manifest["functions"] if e["name"] == "merge-resume")
    entry.update(changes)
    return manifest, entry


def test_a_daily_job_gets_a_did_not_finish_alarm_over_its_window():
    manifest, entry = _entry(trigger={"schedule": "cron(5 0 * * ? *)", "timezone": "Asia/Shanghai"},
                             finish_alarm_hours=25)
    merged = stack.build_merge_template("functions-x.zip", "python3.11", manifest=manifest)
    alarm = merged["Resources"]["MergeResumeDidNotFinishAlarm"]["Properties"]
    assert (alarm["MetricName"], alarm["Statistic"]) == ("MergesResumed", "SampleCount")
    assert alarm["Period"] * alarm["EvaluationPeriods"] == 25 * 3600
    assert alarm["DatapointsToAlarm"] == alarm["EvaluationPeriods"]  # every hour of the window without a run
    assert alarm["ComparisonOperator"] == "LessThanThreshold" and alarm["TreatMissingData"] == "breaching"
    assert merged["Resources"]["MergeResumeSchedule"]["Properties"]["ScheduleExpression"] == "cron(5 0 * * ? *)"


@pytest.mark.parametrize("changes, message", [
    ({"finish_alarm_hours": None, "trigger": {"schedule": "cron(5 0 * * ? *)", "timezone": "Asia/Shanghai"}},
     "daily job needs"),
    ({"trigger": {"schedule": "rate(1 day)", "timezone": "UTC"}}, "Asia/Shanghai"),
    ({"trigger": {"dynamodb_stream": {}}}, "ReportBatchItemFailures"),
    ({"trigger": {"sqs": {"queue": "x"}}}, "redrive policy"),
    ({"dynamodb": [{"on": "table", "actions": ["Scan"]}]}, "actions on table"),
    ({"dynamodb": [{"on": "table", "actions": ["*"]}]}, "actions on table"),
    ({"dynamodb": [{"on": "gsi9", "actions": ["Query"]}]}, "indexes"),
    ({"dynamodb": [{"on": "gsi2", "actions": ["GetItem"]}]}, "actions on gsi2"),
    ({"handler": "nope"}, "no top-level function"),
    ({"module": "functions.missing"}, "exists"),
    ({"finish_alarm_hours": 24 * 31}, "1..168"),
    ({"success_metric": "NotEmitted"}, "success_metric"),
    ({"retry": {"attempts": 5, "max_event_age_seconds": 60}}, "retry"),
])
def test_entries_that_cannot_be_deployed_are_refused(changes, message):
    manifest, entry = _entry(**changes)
    with pytest.raises(stack.ManifestError, match=message):
        stack.load_functions(manifest)


def test_daily_means_once_a_day_every_day():
    assert stack.is_daily_cron("cron(10 0 * * ? *)")
    assert not stack.is_daily_cron("cron(0 1 1 * ? *)")  # monthly
    assert not stack.is_daily_cron("cron(0/15 * * * ? *)")
    assert not stack.is_daily_cron("rate(15 minutes)")


def test_throttled_routes_must_exist(template, api_spec):  # noqa: ANN001
    paths = template["Resources"]["RestAPI"]["Properties"]["DefinitionBody"]["paths"]
    for method, path in api_spec.routes:
        assert method.lower() in paths.get(path, {}), f"{method} {path}"
