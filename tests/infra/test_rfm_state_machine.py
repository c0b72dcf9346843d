"""The nightly RFM run as deployed (dist/template.json): a schedule at 03:00 Asia/Shanghai starts a Step Functions
state machine; it plans, then fans the segments out in Map states (each segment's step invoked until it says it is
done), and every step is the `rfm` Lambda, which alone gets numpy (its own layer). Also the manifest rules that
make it so (infra/stack.py), and the packaging of that layer (infra/package.py)."""
from __future__ import annotations

import copy
import json
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest

from infra import check, package, stack

from .conftest import lambdas, of_type, refers_to
from .test_artifacts import LAYER_SITE, _extract_poisoned

ROOT = Path(__file__).resolve().parents[2]
LAMBDA_ERRORS = {"Lambda.ServiceException", "Lambda.AWSLambdaException", "Lambda.SdkClientException",
                 "Lambda.TooManyRequestsException"}


@pytest.fixture(scope="module")
def machine(resources) -> dict[str, Any]:  # noqa: ANN001
    return resources["RfmStateMachine"]["Properties"]


@pytest.fixture(scope="module")
def definition(machine) -> dict[str, Any]:  # noqa: ANN001
    return json.loads(machine["DefinitionString"])


@pytest.fixture(scope="module")
def translated(template) -> dict[str, Any]:  # noqa: ANN001
    """What CloudFormation deploys: SAM's translation (the alias and its Ref exist only there)."""
    return check.translate(template, "ap-east-1")["Resources"]


ALIAS = f"RfmFunctionAlias{stack.ALIAS}"  # SAM's logical id of the alias `live`; its Ref is the alias's ARN


def _statements(role: dict[str, Any]) -> list[dict[str, Any]]:
    return [s for p in role["Properties"]["Policies"] for s in p["PolicyDocument"]["Statement"]]


def _listify(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _walk(states: dict[str, Any], start: str, data: dict[str, Any]) -> list[str]:
    """The states an execution passes through, Choices decided on `data` (a stand-in for the state's JSON)."""
    path, name = [], start
    while True:
        path.append(name)
        state = states[name]
        assert len(path) < 50, path
        if state["Type"] == "Choice":
            name = state["Default"]
            for rule in state["Choices"]:
                key = rule["Variable"].removeprefix("$.")
                value = data
                for part in key.split("."):
                    value = value.get(part) if isinstance(value, dict) else None
                if ("IsPresent" in rule and (value is not None) == rule["IsPresent"]) or (
                        "BooleanEquals" in rule and value == rule["BooleanEquals"]):
                    name = rule["Next"]
                    break
            continue
        if state.get("End") or state["Type"] in ("Succeed", "Fail"):
            return path
        name = state["Next"]


def _tasks(states: dict[str, Any]) -> dict[str, dict[str, Any]]:
    found = {}
    for name, state in states.items():
        if state["Type"] == "Task":
            found[name] = state
        if state["Type"] == "Map":
            found |= _tasks(state["ItemProcessor"]["States"])
    return found


# ---- the state machine --------------------------------------------------------------------------------------------
def test_the_machine_exists_and_its_definition_parses(machine, definition, template):  # noqa: ANN001
    assert machine["StateMachineType"] == "STANDARD"
    assert machine["StateMachineName"] == {"Fn::Sub": "${AWS::StackName}-rfm"}
    assert machine["RoleArn"] == {"Fn::GetAtt": ["RfmStateMachineRole", "Arn"]}
    subs = machine["DefinitionSubstitutions"]
    assert subs == {"LambdaInvoke": {"Fn::Sub": "arn:${AWS::Partition}:states:::lambda:invoke"},  # also aws-cn
                    "FunctionArn": {"Ref": "RfmFunction.Alias"},  # the alias `live`, resolved by SAM
                    "MaxConcurrency": {"Ref": "RfmConcurrency"}}
    assert set(re.findall(r"\$\{([^}]+)\}", machine["DefinitionString"])) == set(subs)
    param = template["Parameters"]["RfmConcurrency"]
    assert (param["Type"], param["Default"], param["MinValue"]) == ("Number", 10, 1)
    assert definition["StartAt"] == "DateGiven" and 0 < definition["TimeoutSeconds"] < 24 * 3600
    # what CloudFormation hands Step Functions, placeholders filled in, is JSON too
    rendered = machine["DefinitionString"].replace("${MaxConcurrency}", "10")
    assert "States.StringToJson('10')" in json.loads(rendered)["States"]["Plan"]["ResultSelector"]["concurrency.$"]


def test_plan_choice_measure_map_thresholds_classify_map_finish(definition):  # noqa: ANN001
    states = definition["States"]
    assert _walk(states, "DateGiven", {"measure": True}) == [
        "DateGiven", "Today", "Plan", "MeasureNeeded", "MeasureMap", "Thresholds", "ClassifyMap", "Finish"]
    assert [states[n]["Type"] for n in ("Plan", "MeasureNeeded", "MeasureMap", "Thresholds", "ClassifyMap",
                                        "Finish")] == ["Task", "Choice", "Map", "Task", "Map", "Task"]
    # measured already (or nothing to measure): straight to the thresholds
    assert _walk(states, "DateGiven", {"measure": False}) == [
        "DateGiven", "Today", "Plan", "MeasureNeeded", "Thresholds", "ClassifyMap", "Finish"]
    # a re-run names its day; the schedule's {} plans today
    assert _walk(states, "DateGiven", {"date": "2026-03-01", "measure": True})[:2] == ["DateGiven", "Plan"]
    assert states["Today"]["Result"] == {"date": None}
    plan = states["Plan"]
    assert plan["Parameters"]["Payload"] == {"step": "plan", "date.$": "$.date"}
    assert plan["ResultSelector"] | {"concurrency.$": None} == {
        "as_of.$": "$.Payload.as_of", "segments.$": "$.Payload.segments", "measure.$": "$.Payload.measure",
        "concurrency.$": None}
    for name, step in (("Thresholds", "thresholds"), ("Finish", "finish")):
        assert states[name]["Parameters"]["Payload"] == {"step": step, "as_of.$": "$.as_of"}
    assert states["Thresholds"]["ResultPath"] is None  # keeps the plan (segments) for the classify Map
    assert states["Finish"]["OutputPath"] == "$.Payload" and states["Finish"]["End"] is True


@pytest.mark.parametrize("map_state, step", [("MeasureMap", "measure"), ("ClassifyMap", "classify")])
def test_each_map_iterates_the_segments_with_the_concurrency_parameter(definition, map_state, step):  # noqa: ANN001
    state = definition["States"][map_state]
    assert state["ItemsPath"] == "$.segments"
    assert state["MaxConcurrencyPath"] == "$.concurrency"  # Plan puts ${MaxConcurrency} (RfmConcurrency) there
    assert definition["States"]["Plan"]["ResultSelector"]["concurrency.$"] == "States.StringToJson('${MaxConcurrency}')"
    assert "MaxConcurrency" not in state
    # Distributed: each segment is a child execution with its own history (1,000 segments x 2 Maps would come
    # near the 25,000 events of one execution inline), and the Map's results are dropped, not kept in the state
    assert state["ItemProcessor"]["ProcessorConfig"] == {"Mode": "DISTRIBUTED", "ExecutionType": "STANDARD"}
    assert state["ResultPath"] is None
    inner = state["ItemProcessor"]["States"]
    task = inner[state["ItemProcessor"]["StartAt"]]
    assert task["Parameters"]["Payload"] == {"step": step, "as_of.$": "$.as_of", "segment.$": "$.segment"}
    assert task["ResultSelector"] == {"done.$": "$.Payload.done"} and task["ResultPath"] == "$.result"


@pytest.mark.parametrize("map_state", ["MeasureMap", "ClassifyMap"])
def test_each_loop_calls_its_step_again_until_it_is_done(definition, map_state):  # noqa: ANN001
    processor = definition["States"][map_state]["ItemProcessor"]
    start, inner = processor["StartAt"], processor["States"]
    choice = inner[inner[start]["Next"]]
    assert choice["Type"] == "Choice" and choice["Default"] == start  # not done: the same step, same segment
    path = _walk(inner, start, {"as_of": "2026-03-01", "segment": 7, "result": {"done": True}})
    assert path[:2] == [start, inner[start]["Next"]] and len(path) == 3
    finished = inner[path[-1]]
    assert finished.get("End") is True and finished.get("InputPath") == "$.result"  # {"done": true}: a few bytes
    (rule,) = choice["Choices"]
    assert (rule["Variable"], rule["BooleanEquals"]) == ("$.result.done", True)


def test_every_task_invokes_the_rfm_functions_alias(translated):  # noqa: ANN001
    """The tasks (the Distributed Maps' child executions' too: they all read ${FunctionArn}) invoke the alias
    `live`, never $LATEST, so a canary's weights and its rollback reach the nightly run."""
    machine = translated["RfmStateMachine"]["Properties"]
    assert machine["DefinitionSubstitutions"]["FunctionArn"] == {"Ref": ALIAS}
    alias = translated[ALIAS]
    assert alias["Type"] == "AWS::Lambda::Alias"  # Ref: arn:<partition>:lambda:<region>:<account>:function:<name>:live
    assert alias["Properties"]["Name"] == stack.ALIAS and alias["Properties"]["FunctionName"] == {"Ref": "RfmFunction"}
    assert alias["UpdatePolicy"]["CodeDeployLambdaAliasUpdate"]["DeploymentGroupName"] == {
        "Ref": "RfmFunctionDeploymentGroup"}
    group = translated["RfmFunctionDeploymentGroup"]["Properties"]
    assert group["AlarmConfiguration"]["Alarms"] == [{"Name": {"Ref": "RfmErrorsAlarm"}}]
    text = json.dumps(machine)  # the function itself ($LATEST) is named nowhere in it
    assert '"RfmFunction"' not in text and "${RfmFunction" not in text and ":function:" not in text


def test_every_task_invokes_the_rfm_function_with_retries(definition):  # noqa: ANN001
    tasks = _tasks(definition["States"])
    assert set(tasks) == {"Plan", "MeasureSegment", "Thresholds", "ClassifySegment", "Finish"}
    for name, task in tasks.items():
        assert task["Resource"] == "${LambdaInvoke}", name
        assert task["Parameters"]["FunctionName"] == "${FunctionArn}", name
        transient = next(r for r in task["Retry"] if LAMBDA_ERRORS <= set(r["ErrorEquals"]))
        assert transient["MaxAttempts"] >= 3 and transient["BackoffRate"] > 1 and transient["IntervalSeconds"] >= 1
        assert "Catch" not in task  # a failed execution alarms; a re-run resumes from the checkpoints


# ---- what starts it, and who may do what ----------------------------------------------------------------------------
def test_the_schedule_starts_the_machine_at_three_in_shanghai(resources):  # noqa: ANN001
    schedule = resources["RfmSchedule"]["Properties"]
    assert schedule["ScheduleExpression"] == "cron(0 3 * * ? *)"
    assert schedule["ScheduleExpressionTimezone"] == "Asia/Shanghai"
    assert schedule["State"] == {"Fn::If": ["SchedulesOn", "ENABLED", "DISABLED"]}
    target = schedule["Target"]
    assert target["Arn"] == {"Ref": "RfmStateMachine"} and json.loads(target["Input"]) == {}
    assert target["RoleArn"] == {"Fn::GetAtt": ["RfmSchedulerRole", "Arn"]}
    assert target["DeadLetterConfig"] == {"Arn": {"Fn::GetAtt": ["RfmDlq", "Arn"]}}
    assert target["RetryPolicy"]["MaximumRetryAttempts"] >= 1
    # the function itself has no schedule of its own, and no asynchronous invocations to configure
    schedules = of_type(resources, "AWS::Scheduler::Schedule").values()
    assert not [s for s in schedules if refers_to(s["Properties"]["Target"]["Arn"], "RfmFunction")]
    assert "RfmAsyncConfig" not in resources


def test_the_machine_role_invokes_only_the_rfm_functions_alias(resources, translated):  # noqa: ANN001
    role = resources["RfmStateMachineRole"]["Properties"]
    (assume,) = role["AssumeRolePolicyDocument"]["Statement"]
    assert assume["Principal"] == {"Service": "states.amazonaws.com"}
    assert assume["Condition"] == {"StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}}
    # Lambda authorizes a qualified invoke against the qualified ARN: the alias's ARN is the resource to grant, and
    # the only one (the unqualified ARN would allow $LATEST, a version ARN would stop at the next deployment).
    grants = {(action, json.dumps(st["Resource"], sort_keys=True))
              for st in _statements(translated["RfmStateMachineRole"]) for action in _listify(st["Action"])}
    arn = "arn:${AWS::Partition}:states:${AWS::Region}:${AWS::AccountId}:"
    own = json.dumps({"Fn::Sub": arn + "stateMachine:${AWS::StackName}-rfm"})
    children = json.dumps({"Fn::Sub": arn + "execution:${AWS::StackName}-rfm/*"})
    assert grants == {("lambda:InvokeFunction", json.dumps({"Ref": ALIAS})),
                      # the Distributed Maps run each segment as a child execution of this same machine
                      ("states:StartExecution", own), ("states:DescribeExecution", children),
                      ("states:StopExecution", children)}
    assert {(a, json.dumps(st["Resource"])) for st in _statements(resources["RfmStateMachineRole"])
            for a in _listify(st["Action"]) if a.startswith("lambda:")} == {
        ("lambda:InvokeFunction", json.dumps({"Ref": "RfmFunction.Alias"}))}  # as written, before the transform
    # nothing else in the stack may invoke the rfm function, neither its alias nor itself
    for name, other in of_type(translated, "AWS::IAM::Role").items():
        if name != "RfmStateMachineRole":
            for st in _statements(other):
                assert not ("lambda:InvokeFunction" in _listify(st["Action"])
                            and (refers_to(st["Resource"], "RfmFunction") or refers_to(st["Resource"], ALIAS))), name


def test_the_scheduler_role_can_only_start_this_machine(resources):  # noqa: ANN001
    statements = _statements(resources["RfmSchedulerRole"])
    grants = {(a, json.dumps(st["Resource"])) for st in statements for a in _listify(st["Action"])}
    assert grants == {("states:StartExecution", json.dumps({"Ref": "RfmStateMachine"})),
                      ("sqs:SendMessage", json.dumps({"Fn::GetAtt": ["RfmDlq", "Arn"]}))}


def test_rfm_scans_gsi5_and_never_the_table(resources, specs):  # noqa: ANN001
    rfm = next(s for s in specs if s.name == "rfm")
    assert stack.Grant("gsi5", ("Scan",)) in rfm.dynamodb
    assert "Scan" not in next(g for g in rfm.dynamodb if g.on == "table").actions
    scans = [(name, st["Resource"]) for name, role in of_type(resources, "AWS::IAM::Role").items()
             for st in _statements(role) if "dynamodb:Scan" in _listify(st["Action"])]
    # no other role scans anything (the coupon audience jobs read the same keys-only member index)
    assert sorted(scans) == [("CouponAudienceRole", {"Fn::Sub": "${Table.Arn}/index/gsi5"}),
                             ("RfmRole", {"Fn::Sub": "${Table.Arn}/index/gsi5"})]
    gsi5 = next(g for g in resources["Table"]["Properties"]["GlobalSecondaryIndexes"] if g["IndexName"] == "gsi5")
    assert gsi5["Projection"] == {"ProjectionType": "KEYS_ONLY"}
    table = [st for st in _statements(resources["RfmRole"]) if st["Resource"] == {"Fn::GetAtt": ["Table", "Arn"]}]
    (table_statement,) = table
    assert set(table_statement["Action"]) == {f"dynamodb:{a}" for a in (
        "GetItem", "BatchGetItem", "Query", "PutItem", "UpdateItem", "DeleteItem", "ConditionCheckItem",
        "DescribeTable")}


def test_alarms_and_dashboard_watch_the_machine(resources, specs):  # noqa: ANN001
    alarms = {r["Properties"]["AlarmName"]["Fn::Sub"].removeprefix("${AWS::StackName}-"): r["Properties"]
              for r in of_type(resources, "AWS::CloudWatch::Alarm").values()}
    for label, metric in (("failed", "ExecutionsFailed"), ("timed-out", "ExecutionsTimedOut")):
        alarm = alarms[f"rfm-executions-{label}"]
        assert (alarm["Namespace"], alarm["MetricName"], alarm["Statistic"]) == ("AWS/States", metric, "Sum")
        assert alarm["Dimensions"] == [{"Name": "StateMachineArn", "Value": {"Ref": "RfmStateMachine"}}]
        assert alarm["Threshold"] == 1 and alarm["AlarmActions"] == [{"Ref": "AlarmTopic"}]
    assert {"rfm-errors", "rfm-throttles", "rfm-dlq-not-empty"} <= set(alarms)
    finish = alarms["rfm-did-not-finish"]
    assert finish["MetricName"] == "RfmRunSucceeded" and finish["Period"] * finish["EvaluationPeriods"] == 25 * 3600
    body = resources["Dashboard"]["Properties"]["DashboardBody"]["Fn::Sub"]
    for metric in ("ExecutionsFailed", "ExecutionsTimedOut", "ExecutionsSucceeded"):
        assert f'["AWS/States", "{metric}", "StateMachineArn", "${{RfmStateMachine}}"' in body
    assert ":alarm:${AWS::StackName}-rfm-executions-failed" in body
    assert {"RfmMembersClassified", "RfmRunSucceeded"} <= set(stack.dashboard_metrics(stack.load_api(), specs))


# ---- numpy: the rfm function's own layer -----------------------------------------------------------------------
def test_numpy_reaches_the_rfm_function_only(resources, packaged, artifacts):  # noqa: ANN001
    assert packaged["function_layers"]["rfm"] == ["layer", "rfm-layer"]
    assert all(kinds == ["layer"] for name, kinds in packaged["function_layers"].items() if name != "rfm")
    layer = resources["RfmPackagesLayer"]["Properties"]
    assert layer["Content"]["S3Key"] == {"Fn::Sub": "${ArtifactPrefix}" + packaged["artifacts"]["rfm-layer"]["key"]}
    assert layer["CompatibleRuntimes"] == [packaged["runtime"]] and layer["CompatibleArchitectures"] == ["x86_64"]
    users = [n for n, fn in lambdas(resources).items() if {"Ref": "RfmPackagesLayer"} in fn["Properties"].get(
        "Layers", [])]
    assert users == ["RfmFunction"]
    with zipfile.ZipFile(artifacts["rfm-layer"]) as z:
        names = z.namelist()
        (wheel,) = [n for n in names if re.fullmatch(rf"{LAYER_SITE}/numpy-[^/]+\.dist-info/WHEEL", n)]
        tags = [line.split(": ", 1)[1] for line in z.read(wheel).decode().splitlines() if line.startswith("Tag: ")]
    assert "numpy" in package.top_level_names(names, LAYER_SITE + "/")
    with zipfile.ZipFile(artifacts["layer"]) as z:  # the shared layer (the API's too) has none of it
        assert "numpy" not in package.top_level_names(z.namelist(), LAYER_SITE + "/")
    # built for Lambda, not for this machine: CPython of the runtime, x86_64, a glibc the runtime's OS has
    glibc = package.LAMBDA_GLIBC[packaged["runtime"]]
    for tag in tags:
        python, _, platform = tag.split("-")
        assert python == "cp" + packaged["runtime"].removeprefix("python").replace(".", ""), tag
        m = re.fullmatch(r"manylinux_2_(\d+)_x86_64|manylinux(2014|2010|1)_x86_64", platform)
        assert m and (m.group(1) is None or int(m.group(1)) <= glibc), tag


def test_rfm_with_its_layers_stays_well_under_lambdas_250_mb(packaged):  # noqa: ANN001
    a, kinds = packaged["artifacts"], packaged["function_layers"]["rfm"]
    unzipped = a["functions"]["unzipped_bytes"] + sum(a[k]["unzipped_bytes"] for k in kinds)
    assert unzipped < 200 * 1024 * 1024, f"{unzipped / 1e6:.0f} MB of Lambda's 250 MB (function + layers unzipped)"


def test_each_function_imports_with_exactly_its_own_layers(artifacts, packaged, tmp_path):  # noqa: ANN001
    """rfm imports numpy from its layer; every other function and the API import without it (no cold-start cost)."""
    extracted = {}
    for kind in {"functions", *(k for kinds in packaged["function_layers"].values() for k in kinds)}:
        extracted[kind] = tmp_path / kind
        _extract_poisoned(artifacts[kind], extracted[kind])
    env = {"PATH": os.environ.get("PATH", ""), "PYTHONDONTWRITEBYTECODE": "1", "LANG": "C.UTF-8"}
    for name, handler in packaged["functions"].items():
        module = handler.rsplit(".", 1)[0]
        path = [extracted["functions"], *(extracted[k] / LAYER_SITE for k in packaged["function_layers"][name])]
        script = f"import {module}, sys; print('numpy' in sys.modules)"
        proc = subprocess.run([sys.executable, "-S", "-c", script], cwd=tmp_path, capture_output=True, text=True,
                              env=env | {"PYTHONPATH": os.pathsep.join(map(str, path))}, timeout=120, check=False)
        assert proc.returncode == 0, (name, proc.stderr[-3000:])
        assert proc.stdout.strip() == str(name == "rfm"), f"{name} loads numpy: {proc.stdout}"


def test_layer_wheels_are_chosen_for_lambdas_glibc():
    tags = package.wheel_platforms("python3.11")
    assert tags[0] == "manylinux_2_26_x86_64" and tags[-1] == "manylinux2014_x86_64"  # Amazon Linux 2
    assert not [t for t in tags if re.match(r"manylinux_2_(2[7-9]|3\d)_", t)]
    assert package.wheel_platforms("python3.12")[0] == "manylinux_2_34_x86_64"  # Amazon Linux 2023


# ---- the manifest rules behind it --------------------------------------------------------------------------------
def _manifest_with(**changes: Any) -> dict[str, Any]:
    manifest = copy.deepcopy(stack.read_json(ROOT / "infra" / "functions.json"))
    entry = next(e for e in manifest["functions"] if e["name"] == "rfm")
    for key, value in changes.items():
        if value is None:
            entry.pop(key, None)
        else:
            entry[key] = value
    return manifest


def _machine_with(**changes: Any) -> dict[str, Any]:
    entry = next(e for e in stack.read_json(ROOT / "infra" / "functions.json")["functions"] if e["name"] == "rfm")
    return _manifest_with(trigger={**entry["trigger"], "state_machine": {**entry["trigger"]["state_machine"],
                                                                         **changes}})


def test_the_manifest_entry_is_read_as_written():
    rfm = next(s for s in stack.load_functions() if s.name == "rfm")
    assert (rfm.handler, rfm.local_handler, rfm.timeout, rfm.memory) == ("handler", "run_locally", 900, 1769)
    assert [p.split("==")[0] for p in rfm.packages] == ["numpy"] and rfm.machine is not None
    assert [(s.step, s.map, s.when) for s in rfm.machine.steps] == [
        ("plan", False, None), ("measure", True, "measure"), ("thresholds", False, None), ("classify", True, None),
        ("finish", False, None)]
    assert rfm.is_daily and rfm.finish_alarm_hours == 25


@pytest.mark.parametrize("manifest, message", [
    (_manifest_with(local_handler="nope"), "no top-level function 'nope'"),
    (_manifest_with(retry={"attempts": 1, "max_event_age_seconds": 600}), "retries in its definition"),
    (_manifest_with(packages=["pandas"]), "pinned"),
    (_manifest_with(dynamodb=[{"on": "gsi1", "actions": ["Scan"]}]), "KEYS_ONLY"),
    (_manifest_with(dynamodb=[{"on": "table", "actions": ["Scan"]}]), "actions on table"),
    (_machine_with(steps=[{"step": "plan"}]), "two steps or more"),
    (_machine_with(steps=[{"step": "plan", "map": True}, {"step": "finish"}]), "first plans"),
    (_machine_with(steps=[{"step": "plan"}, {"step": "finish", "when": "x"}]), "last always runs"),
    (_machine_with(steps=[{"step": "plan"}, {"step": "go", "map": "yes"}]), "'map' true or false"),
    (_machine_with(max_concurrency=0), "max_concurrency"),
    (_machine_with(timeout_hours=48), "timeout_hours"),
])
def test_entries_that_cannot_be_deployed_are_refused(manifest, message):  # noqa: ANN001
    with pytest.raises(stack.ManifestError, match=message):
        stack.load_functions(manifest)
