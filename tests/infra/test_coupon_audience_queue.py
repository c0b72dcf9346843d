"""The coupon audience jobs' wiring on the generated template: a queue with a redrive policy to the function's
DLQ, an event source mapping reporting batch item failures, the consumer's role limited to that queue, the API
allowed to send to it (and nothing else of SQS), both given its URL, the mapping invoking the function's alias `live`
(canary deployments, checked on SAM's translation), and the alarms and outputs an operator needs."""
from __future__ import annotations

from typing import Any

import pytest

from infra import check, stack

QUEUE, DLQ, FN = "CouponAudienceQueue", "CouponAudienceDlq", "CouponAudienceFunction"
URL = "CHAINCRM_COUPON_AUDIENCE_QUEUE_URL"
ALIAS = f"{FN}Alias{stack.ALIAS}"  # SAM's logical id of the alias `live`; its Ref is the alias's ARN


@pytest.fixture(scope="module")
def translated(template) -> dict[str, Any]:  # noqa: ANN001
    """What CloudFormation deploys: SAM's translation (the alias and its Ref exist only there)."""
    return check.translate(template, "ap-east-1")["Resources"]


def _statements(role: dict[str, Any]) -> list[dict[str, Any]]:
    return [st for p in role["Properties"]["Policies"] for st in p["PolicyDocument"]["Statement"]]


def _sqs_grants(role: dict[str, Any]) -> set[tuple[str, str]]:
    return {(a, st["Resource"]["Fn::GetAtt"][0]) for st in _statements(role)
            for a in ([st["Action"]] if isinstance(st["Action"], str) else st["Action"]) if a.startswith("sqs:")}


def test_the_queue_redrives_to_the_dlq_and_outlives_the_function(template):  # noqa: ANN001
    resources = template["Resources"]
    spec = next(s for s in stack.load_functions() if s.name == "coupon-audience")
    queue = resources[QUEUE]["Properties"]
    assert queue["RedrivePolicy"] == {"deadLetterTargetArn": {"Fn::GetAtt": [DLQ, "Arn"]}, "maxReceiveCount": 5}
    assert queue["VisibilityTimeout"] >= spec.timeout  # AWS refuses a mapping whose queue would redeliver mid-run
    assert queue["SqsManagedSseEnabled"] is True and resources[DLQ]["Type"] == "AWS::SQS::Queue"
    mapping = resources["CouponAudienceEventSourceMapping"]["Properties"]
    assert mapping == {"EventSourceArn": {"Fn::GetAtt": [QUEUE, "Arn"]}, "FunctionName": {"Ref": f"{FN}.Alias"},
                       "BatchSize": 1, "FunctionResponseTypes": ["ReportBatchItemFailures"], "Enabled": True}
    assert "CouponAudienceSchedule" not in resources and "CouponAudienceAsyncConfig" not in resources


def test_the_mapping_invokes_the_alias_live(translated):  # noqa: ANN001
    """The queue's batches go through the alias (a canary's weights apply to them, and a rollback), never to
    $LATEST; the one mapping on the queue is ours (SAM adds none: the function has no Events)."""
    mappings = {n: r["Properties"] for n, r in translated.items() if r["Type"] == "AWS::Lambda::EventSourceMapping"
                and r["Properties"]["EventSourceArn"] == {"Fn::GetAtt": [QUEUE, "Arn"]}}
    assert list(mappings) == ["CouponAudienceEventSourceMapping"]
    assert mappings["CouponAudienceEventSourceMapping"]["FunctionName"] == {"Ref": ALIAS}
    alias = translated[ALIAS]
    assert alias["Type"] == "AWS::Lambda::Alias"
    assert alias["Properties"]["Name"] == stack.ALIAS and alias["Properties"]["FunctionName"] == {"Ref": FN}
    assert alias["UpdatePolicy"]["CodeDeployLambdaAliasUpdate"]["DeploymentGroupName"] == {
        "Ref": f"{FN}DeploymentGroup"}
    group = translated[f"{FN}DeploymentGroup"]["Properties"]
    assert group["AlarmConfiguration"]["Alarms"] == [{"Name": {"Ref": "CouponAudienceErrorsAlarm"}}]
    # nothing invokes the function itself: no permission on it, no other mapping, no role granting it
    for name, r in translated.items():
        if r["Type"] in ("AWS::Lambda::Permission", "AWS::Lambda::EventSourceMapping"):
            assert r["Properties"]["FunctionName"] not in ({"Ref": FN}, {"Fn::GetAtt": [FN, "Arn"]}), name
        if r["Type"] == "AWS::IAM::Role":
            for st in _statements(r):
                if "lambda:InvokeFunction" in ([st["Action"]] if isinstance(st["Action"], str) else st["Action"]):
                    assert st["Resource"] not in ({"Ref": FN}, {"Fn::GetAtt": [FN, "Arn"]}, {"Ref": ALIAS}), name


def test_the_consumer_and_the_api_reach_only_that_queue(template):  # noqa: ANN001
    resources = template["Resources"]
    assert _sqs_grants(resources["CouponAudienceRole"]) == {
        (a, QUEUE) for a in ("sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes",
                             "sqs:ChangeMessageVisibility", "sqs:SendMessage")}
    assert _sqs_grants(resources["ApiHandlerRole"]) == {("sqs:SendMessage", QUEUE)}
    assert resources[FN]["Properties"]["Environment"]["Variables"][URL] == {"Ref": QUEUE}
    assert resources["APIHandler"]["Properties"]["Environment"]["Variables"][URL] == {"Ref": QUEUE}
    assert resources[FN]["Properties"]["Handler"] == "functions.coupon_audience.handler"


def test_alarms_and_outputs_for_the_operator(template):  # noqa: ANN001
    resources, outputs = template["Resources"], template["Outputs"]
    for alarm in ("CouponAudienceErrorsAlarm", "CouponAudienceThrottlesAlarm", "CouponAudienceDlqAlarm",
                  "CouponAudienceQueueAgeAlarm"):
        assert resources[alarm]["Type"] == "AWS::CloudWatch::Alarm"
    assert resources["CouponAudienceQueueAgeAlarm"]["Properties"]["MetricName"] == "ApproximateAgeOfOldestMessage"
    assert outputs["CouponAudienceQueueUrl"]["Value"] == {"Ref": QUEUE}
    assert outputs["CouponAudienceDlqUrl"]["Value"] == {"Ref": DLQ}


def test_the_settings_read_the_variable_the_template_sets():
    from chalicelib.settings import Settings

    assert Settings.from_env({URL: "https://sqs.example/q"}).coupon_audience_queue_url == "https://sqs.example/q"
