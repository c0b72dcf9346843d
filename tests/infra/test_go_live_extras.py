"""The go-live review's second part (issue 17, "Also before go-live"), read off the packaged template and, where
SAM generates the resources (aliases, versions, deployment groups), off its translation (infra/check.py): WAF,
the custom domain, canary releases through the alias `live`, AWS Backup, the protected KMS keys, the CloudTrail
alarms, the budget and the encrypted log groups."""
from __future__ import annotations

import copy
import fnmatch
import json
import re
from typing import Any

import pytest

from infra import check, stack

from .conftest import of_type
from .test_go_live import _rules_pass, _value

SCHEDULED_JOBS = {"merge-resume", "points-expiry", "coupon-expiry", "sla-escalation", "tier-review"}
# Every function of the manifest is aliased: the scheduled jobs above, rfm (its state machine's tasks) and
# coupon-audience (its queue's mapping). Only the alarm robot is not: SNS's, inline code, nothing to canary.
NOT_ALIASED = {"AlarmWebhookFunction"}


@pytest.fixture(scope="module")
def translated(template) -> dict[str, Any]:  # noqa: ANN001
    return check.translate(template, "ap-east-1")["Resources"]


def _scheduled_specs(specs):  # noqa: ANN001, ANN202
    """The functions a schedule invokes itself (asynchronously: retries and a DLQ on the alias)."""
    return [s for s in specs if s.schedule and not s.machine]


# ---- 1. WAF ------------------------------------------------------------------------------------------------------
def test_waf_rate_limits_per_ip_with_a_tighter_rule_for_wechat_sign_in(template, resources, translated):  # noqa: ANN001
    params = template["Parameters"]
    assert params["WafEnabled"]["Default"] == "true" and params["WafMode"]["AllowedValues"] == ["block", "count"]
    assert params["WafAuthRateLimit"]["Default"] < params["WafRateLimit"]["Default"]
    acl = resources["WebAcl"]
    assert acl["Condition"] == "WafOn" and acl["Properties"]["Scope"] == "REGIONAL"
    assert acl["Properties"]["DefaultAction"] == {"Allow": {}}
    rules = {r["Name"]: r for r in acl["Properties"]["Rules"]}
    assert set(rules) == {"auth-wechat-per-ip", "per-ip"}
    assert rules["auth-wechat-per-ip"]["Priority"] < rules["per-ip"]["Priority"]  # the tighter rule first
    for name, limit in (("auth-wechat-per-ip", "WafAuthRateLimit"), ("per-ip", "WafRateLimit")):
        rate = rules[name]["Statement"]["RateBasedStatement"]
        assert rate["AggregateKeyType"] == "IP" and rate["Limit"] == {"Ref": limit}
        action = rules[name]["Action"]["Fn::If"]
        assert action[0] == "WafCounts" and action[1] == {"Count": {}}
        assert action[2]["Block"]["CustomResponse"]["ResponseCode"] == 429
    assert "ScopeDownStatement" not in rules["per-ip"]["Statement"]["RateBasedStatement"]
    scope = rules["auth-wechat-per-ip"]["Statement"]["RateBasedStatement"]["ScopeDownStatement"]["AndStatement"]
    matches = {json.dumps(s["ByteMatchStatement"]["FieldToMatch"]): s["ByteMatchStatement"]
               for s in scope["Statements"]}
    method, path = matches['{"Method": {}}'], matches['{"UriPath": {}}']
    assert (method["SearchString"], method["PositionalConstraint"]) == ("POST", "EXACTLY")
    assert (path["SearchString"], path["PositionalConstraint"]) == ("/auth/wechat", "ENDS_WITH")
    for url in ("/auth/wechat", "/api/auth/wechat"):  # through the custom domain and through the stage URL
        assert url.endswith(path["SearchString"])
    assert ("POST", "/auth/wechat") in stack.load_api().routes  # the route exists under that path
    body = acl["Properties"]["CustomResponseBodies"]["throttled"]
    assert json.loads(body["Content"])["code"] == "throttled" and set(json.loads(body["Content"])) == {
        "code", "message", "details"}  # our error shape
    # associated with the one stage: SAM resolves ${RestAPI.Stage} to the stage resource, so it waits for it
    arn = translated["WebAclAssociation"]["Properties"]["ResourceArn"]["Fn::Sub"]
    assert arn.endswith("/restapis/${RestAPI}/stages/${RestAPIapiStage}")
    assert translated["RestAPIapiStage"]["Properties"]["StageName"] == "api"
    blocked = resources["WafBlockedAlarm"]
    assert blocked["Condition"] == "WafOn" and blocked["Properties"]["MetricName"] == "BlockedRequests"
    assert {d["Name"] for d in blocked["Properties"]["Dimensions"]} == {"WebACL", "Region", "Rule"}
    assert blocked["Properties"]["AlarmActions"] == [{"Ref": "AlarmTopic"}]


# ---- 2. the custom domain ----------------------------------------------------------------------------------------
def test_custom_domain_is_regional_tls12_on_the_stage_and_switches_execute_api_off(template, resources,  # noqa: ANN001
                                                                                  translated):
    domain = resources["ApiDomain"]
    assert domain["Condition"] == "HasApiDomain"
    props = domain["Properties"]
    assert props["SecurityPolicy"] == "TLS_1_2" and props["EndpointConfiguration"] == {"Types": ["REGIONAL"]}
    assert props["RegionalCertificateArn"] == {"Ref": "ApiCertificateArn"} and "CertificateArn" not in props
    mapping = translated["ApiDomainMapping"]
    assert mapping["Condition"] == "HasApiDomain" and "BasePath" not in mapping["Properties"]  # the stage at /
    assert mapping["Properties"]["Stage"] == {"Ref": "RestAPIapiStage"}
    assert resources["RestAPI"]["Properties"]["DisableExecuteApiEndpoint"] == {"Fn::If": ["HasApiDomain", True, False]}
    # SAM carries it into the OpenAPI body, where API Gateway reads it when a body is given
    body = translated["RestAPI"]["Properties"]["Body"]
    assert body["x-amazon-apigateway-endpoint-configuration"]["disableExecuteApiEndpoint"] == {
        "Fn::If": ["HasApiDomain", True, False]}
    outputs = template["Outputs"]
    assert outputs["ApiDomainTarget"]["Condition"] == "HasApiDomain"
    assert outputs["ApiDomainTarget"]["Value"] == {"Fn::GetAtt": ["ApiDomain", "RegionalDomainName"]}
    assert outputs["EndpointURL"]["Value"]["Fn::If"][0] == "HasApiDomain"
    assert outputs["EndpointURL"]["Value"]["Fn::If"][1] == {"Fn::Sub": "https://${ApiDomainName}/"}
    cert = "arn:aws-cn:acm:cn-north-1:123456789012:certificate/0a1b2c3d-1111-2222-3333-444455556666"
    assert not _rules_pass(template, Stage="dev", ApiDomainName="api.brand.example")
    assert not _rules_pass(template, Stage="dev", ApiCertificateArn=cert)
    assert _rules_pass(template, Stage="dev", ApiDomainName="api.brand.example", ApiCertificateArn=cert)
    assert re.fullmatch(template["Parameters"]["ApiCertificateArn"]["AllowedPattern"], cert)
    assert re.fullmatch(template["Parameters"]["ApiDomainName"]["AllowedPattern"], "api.brand.example")


# ---- 3. canary releases ------------------------------------------------------------------------------------------
def test_every_invoker_of_an_aliased_function_targets_its_alias(translated, specs):  # noqa: ANN001
    alias = translated["APIHandlerAliaslive"]
    assert alias["Type"] == "AWS::Lambda::Alias" and alias["Properties"]["Name"] == stack.ALIAS
    uris = [op["x-amazon-apigateway-integration"]["uri"] for ops in translated["RestAPI"]["Properties"]["Body"][
        "paths"].values() for op in ops.values() if isinstance(op, dict) and "x-amazon-apigateway-integration" in op]
    assert len(uris) > 10
    for uri in uris:
        text, names = uri["Fn::Sub"]
        assert "${Invoked}/invocations" in text and names == {"Invoked": {"Ref": "APIHandlerAliaslive"}}
        assert "APIHandler.Arn" not in json.dumps(uri)
    assert translated["APIHandlerInvokePermission"]["Properties"]["FunctionName"] == {"Ref": "APIHandlerAliaslive"}
    for spec in _scheduled_specs(specs):
        fn = f"{spec.logical}Function"
        target = f"{fn}Alias{stack.ALIAS}"
        assert translated[target]["Properties"]["FunctionName"] == {"Ref": fn}
        assert translated[f"{spec.logical}Schedule"]["Properties"]["Target"]["Arn"] == {"Ref": target}
        grants = [st for p in translated[f"{spec.logical}SchedulerRole"]["Properties"]["Policies"]
                  for st in p["PolicyDocument"]["Statement"] if st["Action"] == "lambda:InvokeFunction"]
        assert [g["Resource"] for g in grants] == [{"Ref": target}]
        configs = [r for r in of_type(translated, "AWS::Lambda::EventInvokeConfig").values()
                   if r["Properties"]["FunctionName"] == {"Ref": fn}]
        assert len(configs) == 1 and configs[0]["Properties"]["Qualifier"] == stack.ALIAS
        assert configs[0]["DependsOn"] == [target]
        assert configs[0]["Properties"]["DestinationConfig"]["OnFailure"]["Destination"] == {
            "Fn::GetAtt": [f"{spec.logical}Dlq", "Arn"]}
    assert {s.name for s in _scheduled_specs(specs)} == SCHEDULED_JOBS
    # the rfm state machine's tasks and the coupon-audience queue's mapping: tests/infra/test_rfm_state_machine.py
    # and tests/infra/test_coupon_audience_queue.py
    aliased = {r["Properties"]["FunctionName"]["Ref"] for r in of_type(translated, "AWS::Lambda::Alias").values()}
    functions = set(of_type(translated, "AWS::Lambda::Function"))
    assert functions - aliased == NOT_ALIASED and aliased == {"APIHandler", *(f"{s.logical}Function" for s in specs)}
    assert {s.name for s in specs} >= SCHEDULED_JOBS | {"rfm", "coupon-audience"}
    # no invoker anywhere names a function itself ($LATEST): only its alias (Permission, mapping, schedule, task)
    for name, resource in translated.items():
        if resource["Type"] in ("AWS::Lambda::Permission", "AWS::Lambda::EventSourceMapping"):
            target = resource["Properties"]["FunctionName"]
            assert target.get("Ref") not in functions - NOT_ALIASED, (name, target)
    invoke_grants = [(name, st["Resource"]) for name, role in of_type(translated, "AWS::IAM::Role").items()
                     for p in role["Properties"].get("Policies", []) for st in p["PolicyDocument"]["Statement"]
                     if "lambda:InvokeFunction" in ([st["Action"]] if isinstance(st["Action"], str) else st["Action"])]
    assert len(invoke_grants) == len(SCHEDULED_JOBS) + 1  # each schedule's role, and the rfm machine's
    for name, resource in invoke_grants:
        assert isinstance(resource, dict) and list(resource) == ["Ref"], (name, resource)
        assert translated[resource["Ref"]]["Type"] == "AWS::Lambda::Alias", (name, resource)


def test_deployments_are_canaries_in_prod_and_roll_back_on_the_alarms(template, translated, specs):  # noqa: ANN001
    stages = template["Mappings"]["StageSettings"]
    assert stages["prod"]["DeploymentType"] == "CodeDeployDefault.LambdaCanary10Percent10Minutes"
    assert stages["dev"]["DeploymentType"] == "CodeDeployDefault.LambdaAllAtOnce"
    expected = {"APIHandler": {"Api5xxAlarm", "ApiErrorLogAlarm", "ApiHandlerErrorsAlarm"},
                **{f"{s.logical}Function": {f"{s.logical}ErrorsAlarm"} for s in specs}}
    groups = of_type(translated, "AWS::CodeDeploy::DeploymentGroup")
    assert set(groups) == {f"{fn}DeploymentGroup" for fn in expected}
    for fn, alarms in expected.items():
        group = groups[f"{fn}DeploymentGroup"]["Properties"]
        assert {a["Name"]["Ref"] for a in group["AlarmConfiguration"]["Alarms"]} == alarms
        assert group["AlarmConfiguration"]["Enabled"] is True
        assert all(translated[a]["Type"] == "AWS::CloudWatch::Alarm" for a in alarms)
        assert {"DEPLOYMENT_STOP_ON_ALARM", "DEPLOYMENT_STOP_ON_REQUEST"} <= set(
            group["AutoRollbackConfiguration"]["Events"])
        assert group["DeploymentConfigName"] == {"Fn::FindInMap": ["StageSettings", {"Ref": "Stage"}, "DeploymentType"]}
        assert group["ServiceRoleArn"] == {"Fn::GetAtt": ["CodeDeployRole", "Arn"]}
        update = translated[f"{fn}Alias{stack.ALIAS}"]["UpdatePolicy"]["CodeDeployLambdaAliasUpdate"]
        assert update["DeploymentGroupName"] == {"Ref": f"{fn}DeploymentGroup"}
    assert "CodeDeployServiceRole" not in translated  # SAM's would name a literal partition
    role = translated["CodeDeployRole"]["Properties"]
    assert role["AssumeRolePolicyDocument"]["Statement"][0]["Principal"] == {"Service": "codedeploy.amazonaws.com"}
    lambda_grant = next(st for st in role["Policies"][0]["PolicyDocument"]["Statement"] if "lambda:UpdateAlias" in
                        st["Action"])
    assert lambda_grant["Resource"]["Fn::Sub"].endswith(":function:${AWS::StackName}-*")


def test_config_layer_and_restart_changes_publish_a_new_version(resources, translated):  # noqa: ANN001
    props = resources["APIHandler"]["Properties"]
    digest = props["AutoPublishCodeSha256"]
    assert digest == stack.version_digest(resources, "APIHandler")
    (version,) = [n for n, r in of_type(translated, "AWS::Lambda::Version").items()
                  if r["Properties"]["FunctionName"] == {"Ref": "APIHandler"}]
    assert version == f"APIHandlerVersion{digest[:10]}"  # the digest names the version: a change publishes one
    assert translated["APIHandlerAliaslive"]["Properties"]["FunctionVersion"] == {"Fn::GetAtt": [version, "Version"]}
    # a restart (new ConfigGeneration) changes the version's description, which replaces it: a new version
    assert "${ConfigGeneration}" in translated[version]["Properties"]["Description"]["Fn::Sub"]
    changed = copy.deepcopy(resources)
    changed["ManagedLayer"]["Properties"]["ContentUri"]["Key"] = {"Fn::Sub": "${ArtifactPrefix}layer-new.zip"}
    assert stack.version_digest(changed, "APIHandler") != digest  # new dependencies only
    changed = copy.deepcopy(resources)
    changed["APIHandler"]["Properties"]["MemorySize"] += 1
    assert stack.version_digest(changed, "APIHandler") != digest  # a setting only
    assert stack.version_digest(copy.deepcopy(resources), "APIHandler") == digest  # and nothing else
    # what the function's description becomes still fits Lambda's 256 characters
    for name, fn in of_type(translated, "AWS::Lambda::Function").items():
        assert len(fn["Properties"].get("Description", "")) <= 256, name


# ---- 4. backups --------------------------------------------------------------------------------------------------
def test_backups_daily_and_monthly_copied_to_a_second_vault(resources):  # noqa: ANN001
    rules = {r["RuleName"]: r for r in resources["BackupPlan"]["Properties"]["BackupPlan"]["BackupPlanRule"]}
    daily, monthly = rules["daily-35-days"], rules["monthly-12-months"]
    assert daily["Lifecycle"] == {"DeleteAfterDays": 35} and daily["ScheduleExpression"] == "cron(30 4 * * ? *)"
    assert monthly["ScheduleExpression"] == "cron(30 4 1 * ? *)" and monthly["Lifecycle"]["DeleteAfterDays"] == 365
    cold = monthly["Lifecycle"]["MoveToColdStorageAfterDays"]["Fn::If"]
    assert cold[:2] == ["IsChinaPartition", {"Ref": "AWS::NoValue"}]
    assert monthly["Lifecycle"]["DeleteAfterDays"] >= cold[2] + 90  # AWS Backup's minimum time in cold storage
    for rule in rules.values():
        assert rule["ScheduleExpressionTimezone"] == "Asia/Shanghai"
        assert rule["TargetBackupVault"] == {"Ref": "BackupVault"}
        (copy_action,) = rule["CopyActions"]
        assert copy_action["DestinationBackupVaultArn"] == {"Fn::If": [
            "HasCrossRegionBackupCopy", {"Ref": "BackupCopyVaultArn"},
            {"Fn::GetAtt": ["BackupCopyVault", "BackupVaultArn"]}]}
        assert copy_action["Lifecycle"] == rule["Lifecycle"]
    selection = resources["BackupSelection"]["Properties"]
    assert selection["BackupSelection"]["Resources"] == [{"Fn::GetAtt": ["Table", "Arn"]}]
    assert selection["BackupSelection"]["IamRoleArn"] == {"Fn::GetAtt": ["BackupRole", "Arn"]}
    for vault in ("BackupVault", "BackupCopyVault"):
        props = resources[vault]["Properties"]
        assert props["EncryptionKeyArn"] == {"Fn::GetAtt": ["BackupKey", "Arn"]}
        assert resources[vault]["DeletionPolicy"] == "RetainExceptOnCreate"
        (deny,) = props["AccessPolicy"]["Statement"]
        assert deny["Effect"] == "Deny" and "backup:DeleteRecoveryPoint" in deny["Action"]
        assert deny["Condition"]["Fn::If"][0] == "HasBreakGlass"
    role = resources["BackupRole"]["Properties"]
    assert role["AssumeRolePolicyDocument"]["Statement"][0]["Principal"] == {"Service": "backup.amazonaws.com"}
    assert role["ManagedPolicyArns"] == [
        {"Fn::Sub": "arn:${AWS::Partition}:iam::aws:policy/service-role/AWSBackupServiceRolePolicyForBackup"},
        {"Fn::Sub": "arn:${AWS::Partition}:iam::aws:policy/service-role/AWSBackupServiceRolePolicyForRestores"}]
    grant = next(st for st in role["Policies"][0]["PolicyDocument"]["Statement"] if st["Action"] == "kms:CreateGrant")
    assert grant["Condition"] == {"Bool": {"kms:GrantIsForAWSResource": "true"}}


# ---- 5. the keys -------------------------------------------------------------------------------------------------
def _denied(statement: dict[str, Any], principal_arn: str, break_glass: str) -> bool:
    """Whether the deny statement applies to a caller, with KeyBreakGlassRoleArn set to `break_glass` (or "")."""
    condition = statement["Condition"]["Fn::If"]
    assert condition[0] == "HasBreakGlass" and condition[2] == {"Ref": "AWS::NoValue"}
    if not break_glass:
        return True  # no condition: everyone
    (arn,) = condition[1]["ArnNotEquals"]["aws:PrincipalArn"].values()
    assert arn == "KeyBreakGlassRoleArn"
    return principal_arn != break_glass


def test_keys_refuse_disable_and_deletion_but_to_the_break_glass_role(template, resources):  # noqa: ANN001
    glass = "arn:aws-cn:iam::123456789012:role/chaincrm-break-glass"
    assert re.fullmatch(template["Parameters"]["KeyBreakGlassRoleArn"]["AllowedPattern"], glass)
    for key in stack.PROTECTED_KEYS:
        resource = resources[key]
        statements = resource["Properties"]["KeyPolicy"]["Statement"]
        (deny,) = [st for st in statements if st["Effect"] == "Deny"]
        assert deny["Principal"] == {"AWS": "*"}
        assert set(deny["Action"]) == {"kms:DisableKey", "kms:ScheduleKeyDeletion"}
        assert _denied(deny, "arn:aws-cn:iam::123456789012:role/Admin", glass)
        assert not _denied(deny, glass, glass)
        assert _denied(deny, glass, "")  # nobody at all until a stack update names the role
        # The stack must keep updating its own key policy: PutKeyPolicy is never denied ...
        assert not [st for st in statements if st["Effect"] == "Deny" and "kms:PutKeyPolicy" in json.dumps(st)]
        admin = next(st for st in statements if st.get("Sid") == "AccountAdmin")
        assert admin["Principal"] == {"AWS": {"Fn::Sub": "arn:${AWS::Partition}:iam::${AWS::AccountId}:root"}}
        # ... and CloudFormation never calls a denied action: kept on delete, replacement and failed create alike,
        # and never disabled by the template (Enabled: false would be a DisableKey)
        assert resource["DeletionPolicy"] == resource["UpdateReplacePolicy"] == "Retain"
        assert "Enabled" not in resource["Properties"] and resource["Properties"]["EnableKeyRotation"] is True
        assert resource["Properties"]["PendingWindowInDays"] == 30


# ---- 6. CloudTrail alarms ----------------------------------------------------------------------------------------
def _matches(pattern: str, event: dict[str, Any]) -> bool:
    """Our filter patterns' subset of the CloudWatch Logs JSON syntax: { (a || b) && (c || d) }, each term
    ($.path = "value") with an optional trailing * wildcard."""
    groups = re.fullmatch(r"\{ \((.+)\) && \((.+)\) \}", pattern)
    assert groups, pattern

    def term(text: str) -> bool:
        m = re.fullmatch(r'\(\$\.([A-Za-z0-9_.\[\]]+) = "([^"]*)"\)', text.strip())
        assert m, text
        value: Any = event
        for part in re.findall(r"[A-Za-z0-9_]+|\[\d+\]", m.group(1)):
            if isinstance(value, list) and part.startswith("["):
                value = value[int(part[1:-1])] if int(part[1:-1]) < len(value) else None
            elif isinstance(value, dict):
                value = value.get(part)
            else:
                value = None
        return isinstance(value, str) and fnmatch.fnmatchcase(value, m.group(2))

    return all(any(term(t) for t in group.split(" || ")) for group in groups.groups())


def _pattern(resources: dict[str, Any], name: str) -> str:
    values = {"TableKey.Arn": "arn:aws-cn:kms:cn-north-1:1:key/table",
              "LogKey.Arn": "arn:aws-cn:kms:cn-north-1:1:key/logs",
              "BackupKey.Arn": "arn:aws-cn:kms:cn-north-1:1:key/backup", "Stage": "prod",
              "Table.Arn": "arn:aws-cn:dynamodb:cn-north-1:1:table/chaincrm-prod", "AWS::Partition": "aws-cn",
              "AWS::Region": "cn-north-1", "AWS::AccountId": "1", "AWS::StackName": "chaincrm-prod",
              "BackupPlan": "plan-1"}
    text = resources[name]["Properties"]["FilterPattern"]["Fn::Sub"]
    return re.sub(r"\$\{([^}]+)\}", lambda m: values[m.group(1)], text)


def test_cloudtrail_alarms_catch_key_secret_table_and_backup_changes(template, resources):  # noqa: ANN001
    filters = {n: r for n, r in of_type(resources, "AWS::Logs::MetricFilter").items() if n.startswith("CloudTrail")}
    assert len(filters) == 4
    for name, f in filters.items():
        assert f["Condition"] == "WatchCloudTrail"
        assert f["Properties"]["LogGroupName"] == {"Fn::If": ["HasTrailLogGroup", {"Ref": "CloudTrailLogGroupName"},
                                                              {"Ref": "TrailLogGroup"}]}
        (transform,) = f["Properties"]["MetricTransformations"]
        watching = resources[name.replace("Filter", "Alarm")]
        assert watching["Condition"] == "WatchCloudTrail"
        assert (watching["Properties"]["Namespace"], watching["Properties"]["MetricName"]) == (
            transform["MetricNamespace"], transform["MetricName"])
        assert watching["Properties"]["AlarmActions"] == [{"Ref": "AlarmTopic"}]
    key, secret, table = (_pattern(resources, f"CloudTrail{n}Filter") for n in ("KeyChanged", "SecretChanged",
                                                                                 "TableChanged"))
    ours = {"resources": [{"ARN": "arn:aws-cn:kms:cn-north-1:1:key/table"}]}
    for event in ("DisableKey", "ScheduleKeyDeletion", "PutKeyPolicy"):
        assert _matches(key, {"eventName": event, **ours})
        assert not _matches(key, {"eventName": event, "resources": [{"ARN": "arn:aws-cn:kms:cn-north-1:1:key/x"}]})
    assert not _matches(key, {"eventName": "Decrypt", **ours})
    for event in ("PutSecretValue", "UpdateSecret", "DeleteSecret"):
        for secret_id in ("chaincrm/prod", "arn:aws-cn:secretsmanager:cn-north-1:1:secret:chaincrm/prod-AbCdEf",
                          "chaincrm/prod/alarm-webhook"):
            assert _matches(secret, {"eventName": event, "requestParameters": {"secretId": secret_id}})
        assert not _matches(secret, {"eventName": event, "requestParameters": {"secretId": "chaincrm/dev"}})
    assert not _matches(secret, {"eventName": "GetSecretValue", "requestParameters": {"secretId": "chaincrm/prod"}})
    for event in ("DeleteTable", "UpdateTable", "UpdateContinuousBackups"):
        assert _matches(table, {"eventName": event, "requestParameters": {"tableName": "chaincrm-prod"}})
        assert not _matches(table, {"eventName": event, "requestParameters": {"tableName": "chaincrm-dev"}})
    backup = "arn:aws-cn:dynamodb:cn-north-1:1:table/chaincrm-prod/backup/01700000000000-abcd"
    assert _matches(table, {"eventName": "DeleteBackup", "requestParameters": {"backupArn": backup}})
    assert not _matches(table, {"eventName": "PutItem", "requestParameters": {"tableName": "chaincrm-prod"}})
    assert all(len(_pattern(resources, n)) < 1024 for n in filters)  # CloudWatch Logs' limit
    trail = resources["Trail"]
    assert trail["Condition"] == "CreateTrailHere" and trail["Properties"]["IsLogging"] is True
    assert trail["Properties"]["CloudWatchLogsLogGroupArn"] == {"Fn::GetAtt": ["TrailLogGroup", "Arn"]}
    assert not _rules_pass(template, Stage="dev", CreateTrail="true", CloudTrailLogGroupName="aws-cloudtrail-logs")
    assert _rules_pass(template, Stage="dev", CreateTrail="true")


# ---- 7. the budget -----------------------------------------------------------------------------------------------
def _condition(template: dict[str, Any], name: str, **params: str) -> bool:
    def value(expr: Any) -> Any:
        if isinstance(expr, dict) and set(expr) == {"Condition"}:
            return value(template["Conditions"][expr["Condition"]])
        if isinstance(expr, dict) and len(expr) == 1:
            (fn, arg), = expr.items()
            if fn in ("Fn::Equals", "Fn::Not", "Fn::And", "Fn::Or"):
                args = [value(a) for a in arg]
                return {"Fn::Equals": lambda: args[0] == args[1], "Fn::Not": lambda: not args[0],
                        "Fn::And": lambda: all(args), "Fn::Or": lambda: any(args)}[fn]()
            return _value(expr, {n: str(p.get("Default", "")) for n, p in template["Parameters"].items()} | params)
        return expr

    return bool(value(template["Conditions"][name]))


def test_budget_only_where_cloudformation_offers_it_and_to_the_alarm_topic(template, resources):  # noqa: ANN001
    import os

    import cfnlint

    providers = os.path.join(os.path.dirname(cfnlint.__file__), "data", "schemas", "providers")
    lacking = sorted(f.removesuffix(".json") for f in os.listdir(providers) if f.endswith(".json") and f != "sam.json"
                     and "AWS::Budgets::Budget" not in json.loads(open(os.path.join(providers, f)).read()))
    assert sorted(stack.BUDGETS_UNSUPPORTED_REGIONS) == lacking  # cfn-lint's region schemas: keep them equal
    budget = resources["MonthlyCostBudget"]
    assert budget["Condition"] == "CreateBudget"
    for region, offered in (("ap-east-1", False), ("cn-north-1", True), ("cn-northwest-1", True),
                            ("ap-southeast-1", True), ("us-gov-west-1", False)):
        assert _condition(template, "CreateBudget", **{"AWS::Region": region, "MonthlyBudget": "500"}) is offered
    assert not _condition(template, "CreateBudget", **{"AWS::Region": "cn-north-1"})  # default 0: none
    limit = budget["Properties"]["Budget"]["BudgetLimit"]
    assert limit == {"Amount": {"Ref": "MonthlyBudget"}, "Unit": {"Fn::If": ["IsChinaPartition", "CNY", "USD"]}}
    for notification in budget["Properties"]["NotificationsWithSubscribers"]:
        with_email, without = notification["Subscribers"]["Fn::If"][1:]
        assert {"SubscriptionType": "SNS", "Address": {"Ref": "AlarmTopic"}} in with_email and without
    policy = resources["AlarmTopicPolicy"]["Properties"]["PolicyDocument"]["Statement"]
    assert any(st["Principal"] == {"Service": "budgets.amazonaws.com"} and st["Action"] == "sns:Publish"
               for st in policy)


# ---- 8. encrypted log groups -------------------------------------------------------------------------------------
def test_every_log_group_is_encrypted_with_a_key_cloudwatch_logs_may_use_for_it(resources, translated):  # noqa: ANN001
    groups = of_type(translated, "AWS::Logs::LogGroup")
    assert set(groups) == set(of_type(resources, "AWS::Logs::LogGroup"))  # SAM adds none of its own
    statements = resources["LogKey"]["Properties"]["KeyPolicy"]["Statement"]
    use = next(st for st in statements if st["Sid"] == "CloudWatchLogsForThisStacksGroups")
    assert use["Principal"] == {"Service": {"Fn::Sub": "logs.${AWS::Region}.${AWS::URLSuffix}"}}  # .com.cn in China
    assert {"kms:Encrypt", "kms:Decrypt", "kms:GenerateDataKey"} <= set(use["Action"])
    patterns = [p["Fn::Sub"] for p in use["Condition"]["ArnLike"]["kms:EncryptionContext:aws:logs:arn"]]
    prefix = "arn:${AWS::Partition}:logs:${AWS::Region}:${AWS::AccountId}:log-group:"
    assert len(groups) >= 9
    for name, group in groups.items():
        assert group["Properties"]["KmsKeyId"] == {"Fn::GetAtt": ["LogKey", "Arn"]}, name
        arn = prefix + group["Properties"]["LogGroupName"]["Fn::Sub"]
        assert any(fnmatch.fnmatchcase(arn, p) for p in patterns), name
    assert not any(fnmatch.fnmatchcase(prefix + "/aws/lambda/someone-else", p) for p in patterns)
