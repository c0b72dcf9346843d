"""The go-live review (issue 17), read off the packaged template and, where CloudFormation would see something
else, off its SAM translation (infra/check.py): one API stage, the China partition, a first deploy that can
fail and be retried, alarms that reach someone, the go-live order, dev and prod in one account, the runbook."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from infra import check, stack

from .conftest import of_type

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"


# ---- one stage, lint clean and partition-neutral, in a global and a China region ----------------------------------
@pytest.mark.parametrize("region", ["ap-east-1", "cn-north-1"])
def test_translated_template_has_one_stage_lints_clean_and_names_no_partition(template, region):  # noqa: ANN001
    translated = check.translate(template, region)
    assert check.api_stages(translated) == ["api"]  # not also SAM's "Stage": unthrottled, unlogged, unalarmed
    assert check.check(template, region) == []


def test_the_partition_scan_finds_global_only_arns_and_domains():
    bad = {"Resources": {"R": {"Properties": {
        "Arn": "arn:aws:s3:::bucket", "Via": {"Fn::Sub": "dynamodb.${AWS::Region}.amazonaws.com"},
        "Url": "https://ap-east-1.console.aws.amazon.com/", "Cn": "https://x.execute-api.cn-north-1.amazonaws.com.cn"}}}}
    assert len(check.partition_problems(bad)) == 4
    ok = {"Resources": {"R": {"Properties": {
        "Arn": {"Fn::Sub": "arn:${AWS::Partition}:s3:::bucket"},
        "Via": {"Fn::Sub": "dynamodb.${AWS::Region}.${AWS::URLSuffix}"},
        "AssumeRolePolicyDocument": {"Statement": [{"Principal": {"Service": "lambda.amazonaws.com"}}]},
        "Principal": "sns.amazonaws.com"}}}}
    assert check.partition_problems(ok) == []


def test_china_partition_tracing_key_condition_and_console_link(resources, template):  # noqa: ANN001
    assert template["Conditions"]["IsChinaPartition"] == {"Fn::Equals": [{"Ref": "AWS::Partition"}, "aws-cn"]}
    # (AWS Backup's role may also create grants for AWS resources: tests/infra/test_go_live_extras.py)
    roles = {name: r for name, r in of_type(resources, "AWS::IAM::Role").items() if name != "BackupRole"}
    via = {json.dumps(st["Condition"]) for r in roles.values()
           for p in r["Properties"].get("Policies", []) for st in p["PolicyDocument"]["Statement"] if "Condition" in st}
    suffix = {"Fn::Sub": "dynamodb.${AWS::Region}.${AWS::URLSuffix}"}  # amazonaws.com.cn in China
    assert via == {json.dumps({"StringEquals": {"kms:ViaService": suffix}})}
    url, names = template["Outputs"]["DashboardUrl"]["Value"]["Fn::Sub"]
    assert "${Console}" in url and names["Console"] == {
        "Fn::If": ["IsChinaPartition", "console.amazonaws.cn", "console.aws.amazon.com"]}
    for fn in of_type(resources, "AWS::Lambda::Function").values():
        tracing = fn["Properties"].get("TracingConfig")  # the alarm webhook does not trace
        assert tracing is None or tracing["Fn::If"][0] == "IsChinaPartition"


# ---- a first deploy that fails can be retried ------------------------------------------------------------------
def test_a_failed_create_leaves_nothing_behind_but_the_table(resources):  # noqa: ANN001
    kept = {name: r["DeletionPolicy"] for name, r in resources.items() if "DeletionPolicy" in r}
    # The table keeps Retain: its deletion protection would make a create rollback fail (clean-up step in the runbook)
    assert kept.pop("Table") == "Retain" and resources["Table"]["Properties"]["DeletionProtectionEnabled"] is True
    # The KMS keys too: their policies deny scheduling their deletion, so CloudFormation must never try. They have
    # no name, so they do not block the retry (docs/operations.md: delete them with the break-glass role).
    for key in stack.PROTECTED_KEYS:
        assert kept.pop(key) == "Retain" and resources[key]["Type"] == "AWS::KMS::Key"
    assert kept and set(kept.values()) == {"RetainExceptOnCreate"}, kept
    for name in kept:
        assert resources[name]["UpdateReplacePolicy"] == "Retain", name


def test_reserved_concurrency_is_a_parameter(template, resources, specs):  # noqa: ANN001
    param = template["Parameters"]["JobsReservedConcurrency"]
    assert param["AllowedValues"] == ["manifest", "none"] and param["Default"] == "manifest"
    for spec in specs:
        reserved = resources[f"{spec.logical}Function"]["Properties"].get("ReservedConcurrentExecutions")
        if spec.reserved_concurrency:
            assert reserved["Fn::If"][0] == "ReserveJobConcurrency" and reserved["Fn::If"][2] == {"Ref": "AWS::NoValue"}


# ---- alarms reach someone -------------------------------------------------------------------------------------
def _value(expr: Any, params: dict[str, str]) -> Any:
    """A small evaluator for the rule functions CloudFormation offers (enough for our Rules)."""
    if isinstance(expr, dict):
        (fn, arg), = expr.items()
        if fn == "Ref":
            return params[arg]
        if fn == "Fn::Equals":
            return _value(arg[0], params) == _value(arg[1], params)
        if fn == "Fn::Not":
            return not _value(arg[0], params)
        if fn == "Fn::And":
            return all(_value(a, params) for a in arg)
        if fn == "Fn::Or":
            return any(_value(a, params) for a in arg)
        raise AssertionError(f"no evaluator for {fn}")
    return expr


def _rules_pass(template: dict[str, Any], **given: str) -> bool:
    params = {n: p.get("Default", "") for n, p in template["Parameters"].items()} | given
    return all(_value(a["Assert"], params) for rule in template["Rules"].values()
               if _value(rule.get("RuleCondition", True), params) for a in rule["Assertions"])


def test_prod_cannot_be_deployed_without_an_alarm_destination(template):  # noqa: ANN001
    assert not _rules_pass(template, Stage="prod")
    assert _rules_pass(template, Stage="prod", AlarmEmail="oncall@example.com")
    assert _rules_pass(template, Stage="prod", AlarmWebhookUrl="https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=k")
    assert _rules_pass(template, Stage="dev")
    assert not _rules_pass(template, Stage="dev", AlarmWebhookSigningSecret="SECabc")
    assert template["Parameters"]["AlarmWebhookUrl"]["NoEcho"] is True


def test_alarm_webhook_is_wired_to_the_topic_when_a_url_is_given(resources, template):  # noqa: ANN001
    names = [n for n in resources if n.startswith("AlarmWebhook")]
    assert all(resources[n]["Condition"] == "HasAlarmWebhook" for n in names) and len(names) == 8
    fn = resources["AlarmWebhookFunction"]["Properties"]
    assert fn["Code"]["ZipFile"] == (INFRA / "alarm_webhook.py").read_text() and fn["Handler"] == "index.handler"
    assert len(fn["Code"]["ZipFile"]) < stack.INLINE_CODE_LIMIT
    assert fn["Environment"]["Variables"]["WEBHOOK_SECRET_ID"] == {"Ref": "AlarmWebhookSecret"}
    sub = resources["AlarmWebhookSubscription"]["Properties"]
    assert (sub["Protocol"], sub["TopicArn"]) == ("lambda", {"Ref": "AlarmTopic"})
    permission = resources["AlarmWebhookPermission"]["Properties"]
    assert permission["Principal"] == "sns.amazonaws.com" and permission["SourceArn"] == {"Ref": "AlarmTopic"}
    secret = resources["AlarmWebhookSecret"]["Properties"]["SecretString"]["Fn::Sub"]
    assert json.loads(secret.replace("${AlarmWebhookUrl}", "u").replace("${AlarmWebhookSigningSecret}", "")) == {
        "url": "u", "sign": ""}


# ---- go-live order, dev and prod in one account, the pause ------------------------------------------------------
def test_schedules_stay_off_until_enabled_and_their_finish_alarms_stay_quiet(template, resources):  # noqa: ANN001
    assert template["Parameters"]["SchedulesEnabled"]["Default"] == "false"
    for schedule in of_type(resources, "AWS::Scheduler::Schedule").values():
        assert schedule["Properties"]["State"] == {"Fn::If": ["SchedulesOn", "ENABLED", "DISABLED"]}
    finish = [r for n, r in resources.items() if n.endswith("DidNotFinishAlarm")]
    assert finish and all(r["Properties"]["ActionsEnabled"] == {"Fn::If": ["SchedulesOn", True, False]}
                          for r in finish)


def test_stage_is_required_and_the_account_logging_role_is_not_in_a_stage_stack(template, resources):  # noqa: ANN001
    assert "Default" not in template["Parameters"]["Stage"]
    assert not of_type(resources, "AWS::ApiGateway::Account")
    assert "ApiGatewayCloudWatchRole" not in template["Parameters"]
    account = json.loads((INFRA / "apigateway-account.json").read_text())
    assert [r["Type"] for r in account["Resources"].values()] == ["AWS::IAM::Role", "AWS::ApiGateway::Account"]
    for region in ("ap-east-1", "cn-north-1"):
        assert check.lint(account, region) == [] and check.partition_problems(account) == []


def test_api_paused_throttles_every_route_to_zero(resources, api_spec):  # noqa: ANN001
    settings = resources["RestAPI"]["Properties"]["MethodSettings"]
    assert len(settings) == 1 + len(api_spec.routes)
    for paused, live in ((True, False), (False, True)):
        conditions = {"ApiIsPaused": paused}
        values = [[s[k]["Fn::If"][1] if conditions[s[k]["Fn::If"][0]] else s[k]["Fn::If"][2]
                   for k in ("ThrottlingRateLimit", "ThrottlingBurstLimit")] for s in settings]
        assert all(v == [0, 0] for v in values) is paused
        assert all(r > 0 and b > 0 for r, b in values) is live


def test_runbook_shows_the_throttling_of_infra_api_json(api_spec):  # noqa: ANN001
    runbook = (ROOT / "docs" / "operations.md").read_text()
    table = stack.throttling_table(api_spec)
    assert table in runbook, "docs/operations.md: paste this table (from infra/api.json):\n" + table
    assert "rate 100" not in runbook and "burst 200" not in runbook
