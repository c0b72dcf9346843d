"""The coupon audience jobs' wiring on the generated template: a queue with a redrive policy to the function's
DLQ, an event source mapping reporting batch item failures, the consumer's role limited to that queue, the API
allowed to send to it (and nothing else of SQS), both given its URL, and the alarms and outputs an operator needs."""
from __future__ import annotations

from typing import Any

from infra import stack

QUEUE, DLQ, FN = "CouponAudienceQueue", "CouponAudienceDlq", "CouponAudienceFunction"
URL = "CHAINCRM_COUPON_AUDIENCE_QUEUE_URL"


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
    assert mapping == {"EventSourceArn": {"Fn::GetAtt": [QUEUE, "Arn"]}, "FunctionName": {"Ref": FN}, "BatchSize": 1,
                       "FunctionResponseTypes": ["ReportBatchItemFailures"], "Enabled": True}
    assert "CouponAudienceSchedule" not in resources and "CouponAudienceAsyncConfig" not in resources


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
