"""Assertions on the packaged template (dist/template.json), the thing CloudFormation deploys."""
from __future__ import annotations

import json
import re
from pathlib import Path

from infra import stack

from .conftest import lambdas, of_type, refers_to

ROOT = Path(__file__).resolve().parents[2]


def test_cfn_lint_finds_no_errors_or_warnings(packaged):  # noqa: ANN001
    from cfnlint.api import lint_all

    for path in (ROOT / "dist" / packaged["template"], ROOT / "infra" / "artifacts-bucket.json"):
        matches = lint_all(path.read_text())
        assert [str(m) for m in matches if m.rule.id[0] in "EW"] == [], path  # I (informational) are advice


# ---- the table --------------------------------------------------------------------------------------------
def test_table_is_protected_encrypted_and_on_demand(resources):  # noqa: ANN001
    table = resources["Table"]
    props = table["Properties"]
    assert props["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    assert props["DeletionProtectionEnabled"] is True
    assert props["SSESpecification"] == {"SSEEnabled": True, "SSEType": "KMS", "KMSMasterKeyId": {"Ref": "TableKey"}}
    assert props["BillingMode"] == "PAY_PER_REQUEST"
    assert props["StreamSpecification"]["StreamViewType"] == "NEW_AND_OLD_IMAGES"
    assert table["DeletionPolicy"] == table["UpdateReplacePolicy"] == "Retain"
    key = resources["TableKey"]
    assert key["Properties"]["EnableKeyRotation"] is True
    # Retain even on a failed create: its policy denies scheduling its deletion (tests/infra/test_go_live_extras.py)
    assert key["DeletionPolicy"] == "Retain" and key["UpdateReplacePolicy"] == "Retain"


def test_packaged_table_is_the_one_the_local_stack_creates(resources):  # noqa: ANN001
    """chalicelib/store/table_def.py builds DynamoDB Local's table from infra/template.json's Table."""
    from chalicelib.store.table_def import table_properties

    assert resources["Table"]["Properties"] == table_properties()


# ---- functions, triggers, failures ------------------------------------------------------------------------
def test_every_manifest_function_is_deployed_with_its_settings(resources, specs, packaged):  # noqa: ANN001
    for spec in specs:
        fn = resources[f"{spec.logical}Function"]["Properties"]
        assert fn["Handler"] == f"{spec.module}.{spec.handler}"
        assert fn["Runtime"] == packaged["runtime"] == resources["APIHandler"]["Properties"]["Runtime"]
        assert fn["CodeUri"]["Key"] == {"Fn::Sub": "${ArtifactPrefix}" + packaged["artifacts"]["functions"]["key"]}
        # the shared layer, then the function's own packages (infra/functions.json "packages"), if any
        own = [{"Ref": f"{spec.logical}PackagesLayer"}] if spec.packages else []
        assert fn["Layers"] == [{"Ref": "ManagedLayer"}, *own]
        assert (fn["Timeout"], fn["MemorySize"]) == (spec.timeout, spec.memory)
        reserved = fn.get("ReservedConcurrentExecutions")
        assert reserved == (None if spec.reserved_concurrency is None else
                            {"Fn::If": ["ReserveJobConcurrency", spec.reserved_concurrency, {"Ref": "AWS::NoValue"}]})
        assert fn["Tracing"] == {"Fn::If": ["IsChinaPartition", "PassThrough", "Active"]}
    assert set(lambdas(resources)) == {"APIHandler", "AlarmWebhookFunction", *(f"{s.logical}Function" for s in specs)}


def test_async_triggers_have_a_dead_letter_queue_and_on_failure_destination(resources):  # noqa: ANN001
    schedules = of_type(resources, "AWS::Scheduler::Schedule")
    invoke_configs = of_type(resources, "AWS::Lambda::EventInvokeConfig")
    mappings = of_type(resources, "AWS::Lambda::EventSourceMapping")
    queues = of_type(resources, "AWS::SQS::Queue")
    machines = of_type(resources, "AWS::StepFunctions::StateMachine")
    for name in lambdas(resources):
        if name == "APIHandler":  # invoked synchronously by API Gateway: the caller gets the error
            continue
        if name == "AlarmWebhookFunction":  # SNS -> Lambda; its failures raise its own errors alarm
            continue
        # a schedule invokes the function's alias (canary deployments): {"Ref": "<Function>.Alias"}, which SAM resolves
        triggers = [s for s in schedules.values() if s["Properties"]["Target"]["Arn"] == {"Ref": f"{name}.Alias"}]
        assert not [s for s in schedules.values() if refers_to(s["Properties"]["Target"]["Arn"], name)], name
        # a queue's mapping and a state machine's tasks invoke the alias too (SAM resolves {"Ref": "<Function>.Alias"})
        alias = {"Ref": f"{name}.Alias"}
        assert not [m for m in mappings.values() if refers_to(m["Properties"]["FunctionName"], name)], name
        streams = [m for m in mappings.values() if m["Properties"]["FunctionName"] == alias]
        # run by a state machine (synchronous tasks, retried in its definition) that a schedule with a DLQ starts
        run_by = [m for m, r in machines.items() if alias in r["Properties"]["DefinitionSubstitutions"].values()]
        assert not [m for m, r in machines.items()
                    if any(refers_to(v, name) for v in r["Properties"]["DefinitionSubstitutions"].values())], name
        for machine in run_by:
            (start,) = [s for s in schedules.values() if refers_to(s["Properties"]["Target"]["Arn"], machine)]
            assert start["Properties"]["Target"]["DeadLetterConfig"]["Arn"]["Fn::GetAtt"][0] in queues
        assert triggers or streams or run_by, f"{name} has no trigger"
        for schedule in triggers:  # Scheduler invokes Lambda asynchronously
            target = schedule["Properties"]["Target"]
            dlq = target["DeadLetterConfig"]["Arn"]["Fn::GetAtt"][0]
            assert dlq in queues and target["RetryPolicy"]["MaximumRetryAttempts"] >= 0
            # on the function, for SAM to put on its alias (translated: tests/infra/test_go_live_extras.py)
            config = [resources[name]["Properties"]["EventInvokeConfig"]]
            assert not [c for c in invoke_configs.values() if refers_to(c["Properties"]["FunctionName"], name)]
            destination = config[0]["DestinationConfig"]["OnFailure"]["Destination"]["Fn::GetAtt"][0]
            assert destination in queues
            assert config[0]["MaximumRetryAttempts"] <= 2 and config[0]["MaximumEventAgeInSeconds"] <= 21600
        for mapping in streams:  # what a stream or queue consumer must declare
            p = mapping["Properties"]
            assert p["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
            source = p["EventSourceArn"]["Fn::GetAtt"][0] if "Fn::GetAtt" in p["EventSourceArn"] else None
            if source in queues:  # SQS: failed messages go to a DLQ through the queue's redrive policy
                redrive = queues[source]["Properties"]["RedrivePolicy"]
                assert redrive["deadLetterTargetArn"]["Fn::GetAtt"][0] in queues
                assert 1 <= redrive["maxReceiveCount"] <= 100
                continue
            assert p["DestinationConfig"]["OnFailure"]["Destination"]
            if "DynamoDB" in json.dumps(p["EventSourceArn"]):
                assert p["BisectBatchOnFunctionError"] is True
                assert "MaximumRetryAttempts" in p and "MaximumRecordAgeInSeconds" in p
    for queue in queues.values():
        assert queue["Properties"]["MessageRetentionPeriod"] == 14 * 24 * 3600
        assert queue["Properties"]["SqsManagedSseEnabled"] is True


def test_schedules_run_in_shanghai_time(resources):  # noqa: ANN001
    schedules = of_type(resources, "AWS::Scheduler::Schedule")
    assert schedules
    for schedule in schedules.values():
        p = schedule["Properties"]
        assert p["ScheduleExpressionTimezone"] == "Asia/Shanghai"
        assert p["FlexibleTimeWindow"] == {"Mode": "OFF"}
        assert p["State"] == {"Fn::If": ["SchedulesOn", "ENABLED", "DISABLED"]}  # SchedulesEnabled, off by default
        assert p["GroupName"] == {"Ref": "ScheduleGroup"}
        json.loads(p["Target"]["Input"])


def test_every_lambda_logs_to_a_declared_group_with_retention(resources):  # noqa: ANN001
    groups = of_type(resources, "AWS::Logs::LogGroup")
    for group in groups.values():
        assert group["Properties"]["RetentionInDays"] == {
            "Fn::FindInMap": ["StageSettings", {"Ref": "Stage"}, "LogRetentionDays"]}
    names = {g["Properties"]["LogGroupName"]["Fn::Sub"]: n for n, g in groups.items()}
    for name, fn in lambdas(resources).items():
        function_name = fn["Properties"]["FunctionName"]["Fn::Sub"]
        group = names.get("/aws/lambda/" + function_name)
        assert group, f"{name}: no log group /aws/lambda/{function_name}"
        assert group in fn["DependsOn"], f"{name} must be created after its log group (or Lambda creates it)"
    stages = json.loads((ROOT / "infra" / "template.json").read_text())["Mappings"]["StageSettings"]
    assert stages["prod"]["LogRetentionDays"] >= 180  # Cybersecurity Law: network logs kept at least 6 months


# ---- the API ----------------------------------------------------------------------------------------------
def test_api_throttling_per_stage_and_route(resources, api_spec):  # noqa: ANN001
    settings = resources["RestAPI"]["Properties"]["MethodSettings"]
    default = next(s for s in settings if (s["ResourcePath"], s["HttpMethod"]) == ("/*", "*"))
    assert default["ThrottlingRateLimit"] == {"Fn::If": ["ApiIsPaused", 0, api_spec.default_rate]}
    assert default["ThrottlingBurstLimit"] == {"Fn::If": ["ApiIsPaused", 0, api_spec.default_burst]}
    routes = {(s["HttpMethod"], s["ResourcePath"].replace("~1", "/")[1:]): s for s in settings if s is not default}
    assert set(routes) == set(api_spec.routes)
    for s in settings:
        assert s["LoggingLevel"] == "OFF" and s["DataTraceEnabled"] is False  # bodies carry personal data


def _render(template: str) -> str:
    return (template.replace("$context.error.messageString", json.dumps('say "why"'))
            .replace("$context.requestId", "c0ffee").replace("$context.", "ctx-"))


def test_gateway_responses_answer_in_our_error_shape(resources):  # noqa: ANN001
    responses = resources["RestAPI"]["Properties"]["DefinitionBody"]["x-amazon-apigateway-gateway-responses"]
    expected_status = {"MISSING_AUTHENTICATION_TOKEN": "404", "THROTTLED": "429", "REQUEST_TOO_LARGE": "413",
                       "DEFAULT_4XX": None, "DEFAULT_5XX": None}
    for kind, status in expected_status.items():
        assert responses[kind].get("statusCode") == status, kind
    for kind, response in responses.items():
        body = json.loads(_render(response["responseTemplates"]["application/json"]))
        assert set(body) == {"code", "message", "details"}, kind
        assert isinstance(body["code"], str) and isinstance(body["message"], str)
        assert body["details"] == {"request_id": "c0ffee"}


def test_api_access_log_tracing_and_role(resources):  # noqa: ANN001
    api = resources["RestAPI"]["Properties"]
    assert api["TracingEnabled"] == {"Fn::If": ["IsChinaPartition", False, True]}
    assert api["EndpointConfiguration"] == "REGIONAL"
    # ApiName, the dimension of the dashboard's and the 5xx alarm's API metrics, is the stack's name
    assert api["Name"] == api["DefinitionBody"]["info"]["title"] == {"Ref": "AWS::StackName"}
    access = api["AccessLogSetting"]
    assert refers_to(access["DestinationArn"], "ApiAccessLogGroup")
    line = json.loads(_render(access["Format"]))
    assert line["requestId"] == "c0ffee" and "ctx-integration.requestId" in line.values()
    assert "querystring" not in access["Format"].lower()  # GET /members?phone= keeps phones out of logs
    handler = resources["APIHandler"]["Properties"]
    assert handler["Role"] == {"Fn::GetAtt": ["ApiHandlerRole", "Arn"]}
    assert handler["Tracing"] == {"Fn::If": ["IsChinaPartition", "PassThrough", "Active"]}


# ---- configuration and secrets ----------------------------------------------------------------------------
def test_configuration_comes_from_ssm_and_secrets_manager_never_the_template(resources):  # noqa: ANN001
    for name, fn in lambdas(resources).items():
        env = fn["Properties"]["Environment"]["Variables"]
        if name == "AlarmWebhookFunction":  # no table, no keys: only the secret holding the robot's URL
            assert set(env) == {"WEBHOOK_SECRET_ID", "CHAINCRM_STAGE"}
            continue
        assert env["CHAINCRM_TABLE_NAME"] == {"Ref": "Table"} and env["CHAINCRM_STAGE"] == {"Ref": "Stage"}
        assert env["POWERTOOLS_SERVICE_NAME"] == "chaincrm" and env["POWERTOOLS_METRICS_NAMESPACE"] == "ChainCRM"
        if "CHAINCRM_SECRET_ID" in env:
            assert env["CHAINCRM_SECRET_ID"] == {"Ref": "Secret"}
        for key, value in env.items():
            if key in stack.SSM_PARAMETERS:
                assert value == {"Fn::Sub": "{{resolve:ssm:" + stack.SSM_PARAMETERS[key] + "}}"}
            else:
                assert not isinstance(value, str) or key.startswith("POWERTOOLS_"), f"{name}: literal {key}"
    assert "CHAINCRM_ISSUERS_JSON" in resources["APIHandler"]["Properties"]["Environment"]["Variables"]
    assert resources["Secret"]["Properties"]["SecretString"] == "{}"  # the values are put in by hand, once
    config = json.loads((ROOT / ".chalice" / "config.json").read_text())
    assert "environment_variables" not in json.dumps(config)


# ---- operations -------------------------------------------------------------------------------------------
def _alarm_names(resources):  # noqa: ANN001
    return {r["Properties"]["AlarmName"]["Fn::Sub"].removeprefix("${AWS::StackName}-"): r["Properties"]
            for r in of_type(resources, "AWS::CloudWatch::Alarm").values()}


def test_alarms_cover_errors_throttles_dlqs_table_and_unfinished_daily_jobs(resources, specs):  # noqa: ANN001
    alarms = _alarm_names(resources)
    for label in ["api", *(s.name for s in specs)]:
        assert alarms[f"{label}-errors"]["MetricName"] == "Errors"
        assert alarms[f"{label}-throttles"]["MetricName"] == "Throttles"
    for spec in specs:
        assert alarms[f"{spec.name}-dlq-not-empty"]["MetricName"] == "ApproximateNumberOfMessagesVisible"
        if spec.is_daily:
            finish = alarms[f"{spec.name}-did-not-finish"]
            assert finish["MetricName"] == spec.success_metric and finish["TreatMissingData"] == "breaching"
            assert finish["Period"] * finish["EvaluationPeriods"] >= 24 * 3600
    watched: set[tuple[str, str]] = set()
    for name in [n for n in alarms if n.startswith("dynamodb-throttles")]:
        assert len(alarms[name]["Metrics"]) <= 10  # CloudWatch's limit for one alarm's metric math
        watched |= {(m["MetricStat"]["Metric"]["MetricName"],
                     next((d["Value"] for d in m["MetricStat"]["Metric"]["Dimensions"]
                           if d["Name"] == "GlobalSecondaryIndexName"), "table"))
                    for m in alarms[name]["Metrics"] if "MetricStat" in m}
    indexes = [i["IndexName"] for i in json.loads((ROOT / "infra" / "template.json").read_text())["Resources"]
               ["Table"]["Properties"]["GlobalSecondaryIndexes"]]
    assert watched == {(kind, source) for kind in ("ReadThrottleEvents", "WriteThrottleEvents")
                       for source in ("table", *indexes)}
    assert {"api-5xx", "api-error-logs"} <= set(alarms)
    for alarm in alarms.values():
        assert alarm["AlarmActions"] == [{"Ref": "AlarmTopic"}]


def test_dashboard_shows_business_metrics_lambdas_api_table_and_dlqs(resources, specs, api_spec):  # noqa: ANN001
    body = resources["Dashboard"]["Properties"]["DashboardBody"]["Fn::Sub"]
    placeholders = set(re.findall(r"\$\{([^}]+)\}", body))
    logical = {p.split(".")[0] for p in placeholders if not p.startswith("AWS::")}
    assert logical <= set(resources) | set(json.loads((ROOT / "infra" / "template.json").read_text())["Parameters"])
    widgets = json.loads(re.sub(r"\$\{[^}]+\}", "x", body))["widgets"]
    metrics = [m for w in widgets if w["type"] == "metric" for m in w["properties"]["metrics"]]
    names = {(m[0], m[1]) for m in metrics}
    for metric in stack.dashboard_metrics(api_spec, specs):
        assert ("ChainCRM", metric) in names
    assert {("AWS/Lambda", "Errors"), ("AWS/Lambda", "Duration"), ("AWS/ApiGateway", "4XXError"),
            ("AWS/ApiGateway", "5XXError"), ("AWS/ApiGateway", "Latency"), ("AWS/DynamoDB", "ReadThrottleEvents"),
            ("AWS/SQS", "ApproximateNumberOfMessagesVisible")} <= names
    dlq_widgets = [m for m in metrics if m[0] == "AWS/SQS"]
    assert len(dlq_widgets) == len(specs)
    assert len([m for m in metrics if m[:2] == ["AWS/Lambda", "Errors"]]) == len(specs) + 1
