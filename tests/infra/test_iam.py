"""Least privilege, read off the packaged template: each role names only the ARNs its function uses."""
from __future__ import annotations

from typing import Any

from infra import stack

from .conftest import of_type


def _statements(role: dict[str, Any]) -> list[dict[str, Any]]:
    props = role["Properties"]
    assert "ManagedPolicyArns" not in props, "managed policies grant more than a function needs"
    return [s for p in props["Policies"] for s in p["PolicyDocument"]["Statement"]]


def _listify(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _resource_id(resource: Any) -> str:
    """'*', a logical id (Ref/GetAtt ...Arn) or 'Table/index/<name>'."""
    if resource == "*":
        return "*"
    if isinstance(resource, dict) and "Ref" in resource:
        return resource["Ref"]
    if isinstance(resource, dict) and "Fn::GetAtt" in resource and resource["Fn::GetAtt"][1] == "Arn":
        return resource["Fn::GetAtt"][0]
    if isinstance(resource, dict) and isinstance(resource.get("Fn::Sub"), str):
        sub = resource["Fn::Sub"]
        if sub.startswith("${Table.Arn}/index/"):
            return "Table/index/" + sub.removeprefix("${Table.Arn}/index/")
    raise AssertionError(f"unexpected resource form {resource!r}: name the resource by its logical id")


def _expected(grants: tuple[stack.Grant, ...]) -> dict[str, set[str]]:
    want: dict[str, set[str]] = {}
    for g in grants:
        want["Table" if g.on == "table" else f"Table/index/{g.on}"] = {f"dynamodb:{a}" for a in g.actions}
    return want


CONSUME = {"sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes", "sqs:ChangeMessageVisibility"}


def _check_lambda_role(role: dict[str, Any], *, log_group: str, grants: tuple[stack.Grant, ...], secret: bool,
                       dlq: str | None, queues: dict[str, set[str]] | None = None) -> None:
    allowed = {log_group: {"logs:CreateLogStream", "logs:PutLogEvents"}, "TableKey": {"kms:Decrypt",
                                                                                        "kms:GenerateDataKey"},
               **_expected(grants), **(queues or {})}
    if secret:
        allowed["Secret"] = {"secretsmanager:GetSecretValue"}
    if dlq:
        allowed[dlq] = {"sqs:SendMessage"}
    seen: dict[str, set[str]] = {}
    for st in _statements(role):
        assert st["Effect"] == "Allow" and "NotAction" not in st and "NotResource" not in st
        actions = set(_listify(st["Action"]))
        assert not any("*" in a for a in actions), f"wildcard action in {st}"
        for resource in _listify(st["Resource"]):
            rid = _resource_id(resource)
            if rid == "*":
                assert actions <= stack.STAR_ONLY_ACTIONS, f"{actions} on '*'"
                assert st.get("Sid"), "a statement on '*' says why in its Sid"
                continue
            assert rid in allowed, f"{rid} is not a resource this function uses"
            assert actions <= allowed[rid], f"{actions - allowed[rid]} on {rid}"
            seen.setdefault(rid, set()).update(actions)
            if rid == "TableKey":
                assert st["Condition"] == {"StringEquals": {"kms:ViaService": {
                    "Fn::Sub": "dynamodb.${AWS::Region}.${AWS::URLSuffix}"}}}  # amazonaws.com.cn in China
    assert seen == allowed, "the role should grant exactly what the manifest declares"


def test_api_role_is_least_privilege(resources, api_spec, specs):  # noqa: ANN001
    sends = {f"{s.logical}Queue": {"sqs:SendMessage"} for s in specs if s.queue and "api" in s.queue.senders}
    assert sends, "the API sends coupon audience jobs to their queue"
    _check_lambda_role(resources["ApiHandlerRole"], log_group="ApiHandlerLogGroup", grants=api_spec.dynamodb,
                       secret=api_spec.secret, dlq=None, queues=sends)


def test_function_roles_are_least_privilege(resources, specs):  # noqa: ANN001
    for spec in specs:
        p = spec.logical
        assert resources[f"{p}Function"]["Properties"]["Role"] == {"Fn::GetAtt": [f"{p}Role", "Arn"]}
        # a machine's function is invoked synchronously, a queue consumer's by its mapping: neither writes its DLQ
        # (SQS moves a consumer's failed messages there); a consumer reads its queue and re-queues its own jobs
        _check_lambda_role(resources[f"{p}Role"], log_group=f"{p}LogGroup", grants=spec.dynamodb,
                           secret=spec.secret, dlq=None if spec.machine or spec.queue else f"{p}Dlq",
                           queues={f"{p}Queue": CONSUME | {"sqs:SendMessage"}} if spec.queue else None)


def test_scheduler_roles_invoke_only_their_function(resources, specs):  # noqa: ANN001
    for spec in specs:
        p = spec.logical
        if spec.queue:  # not scheduled: its queue's event source mapping runs it
            assert f"{p}SchedulerRole" not in resources and f"{p}Schedule" not in resources
            continue
        role = resources[f"{p}SchedulerRole"]
        assume = role["Properties"]["AssumeRolePolicyDocument"]["Statement"][0]
        assert assume["Principal"] == {"Service": "scheduler.amazonaws.com"}
        assert assume["Condition"] == {"StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}}
        grants = {(a, _resource_id(st["Resource"])) for st in _statements(role) for a in _listify(st["Action"])}
        # a schedule invokes the function's alias (canary deployments), never $LATEST
        target = (("states:StartExecution", f"{p}StateMachine") if spec.machine else
                  ("lambda:InvokeFunction", f"{p}Function.Alias"))
        assert grants == {target, ("sqs:SendMessage", f"{p}Dlq")}


def test_no_role_in_the_stack_uses_wildcards(resources):  # noqa: ANN001
    for name, role in of_type(resources, "AWS::IAM::Role").items():
        for policy in role["Properties"].get("Policies", []):
            for st in policy["PolicyDocument"]["Statement"]:
                assert not any("*" in a for a in _listify(st["Action"])), name
                if "*" in _listify(st["Resource"]):
                    assert set(_listify(st["Action"])) <= stack.STAR_ONLY_ACTIONS and st.get("Sid"), name
