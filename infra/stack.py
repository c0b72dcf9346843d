"""The merge template: infra/template.json (table, key, secret, alarm topic) plus everything generated from the
manifests, so that adding a function is one entry in infra/functions.json and nothing is written per function.

For the API (Chalice generates its function and REST API; we merge into them) and for every function of the
manifest this generates: a role with one least-privilege policy, a log group with retention, alarms, and the
dashboard. For each function also: the Lambda, its EventBridge Scheduler schedule (Asia/Shanghai, retry policy,
dead-letter queue), the async on-failure destination, and the "did not finish" alarm of daily jobs. A function
whose trigger names a `state_machine` is run by a Step Functions state machine instead (its schedule starts the
machine, which invokes the function once per step and fans the segments out in Map states), and a function with
`packages` gets them in a layer of its own (infra/package.py builds it), kept out of the API's dependencies.

Pure functions of the files in infra/ (and .chalice/config.json): tests call them with their own manifests.
"""
from __future__ import annotations

import ast
import copy
import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
INFRA = ROOT / "infra"
TIMEZONE = "Asia/Shanghai"
NAMESPACE = "ChainCRM"
SERVICE = "chaincrm"
# Powertools adds `service`; observability.py adds `stage`, so dev and prod in one account stay apart.
METRIC_DIMENSIONS = [{"Name": "service", "Value": SERVICE}, {"Name": "stage", "Value": {"Ref": "Stage"}}]
# Per-stage values that are not secrets live in SSM Parameter Store; the template only names them.
SSM_PARAMETERS = {
    "CHAINCRM_ISSUERS_JSON": "/chaincrm/${Stage}/issuers-json",
    "CHAINCRM_WECHAT_APPID": "/chaincrm/${Stage}/wechat-appid",
}
# The only actions granted on "*" (no resource-level permissions; each statement says why). DescribeAlarms: what
# CodeDeploy reads of a deployment group's alarms, granted on "*" as AWS's own AWSCodeDeployRoleForLambda does.
STAR_ONLY_ACTIONS = {"xray:PutTraceSegments", "xray:PutTelemetryRecords", "cloudwatch:PutMetricData",
                     "cloudwatch:DescribeAlarms"}
TABLE_ACTIONS = {"GetItem", "BatchGetItem", "Query", "PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem",
                 "ConditionCheckItem", "DescribeTable"}  # no Scan: the table is never scanned (docs/access-patterns.md)
# Scan only of an index that exists to be scanned: KEYS_ONLY (a fraction of the table, and of its cost per read).
INDEX_ACTIONS = {"Query", "Scan"}
SCAN_NEEDS_PROJECTION = "KEYS_ONLY"
# What a state machine's Lambda tasks retry with backoff: Lambda's own transient errors, documented as retryable.
LAMBDA_TRANSIENT_ERRORS = ["Lambda.ServiceException", "Lambda.AWSLambdaException", "Lambda.SdkClientException",
                           "Lambda.TooManyRequestsException"]
RETENTION = {"Fn::FindInMap": ["StageSettings", {"Ref": "Stage"}, "LogRetentionDays"]}
# Kept when the stack is deleted or a resource replaced, but removed when the stack's own creation rolls back,
# so a failed first deploy can simply be retried (nothing left behind with the same name). The table is the
# exception (Retain, in infra/template.json): its deletion protection would make that rollback fail.
KEEP = {"DeletionPolicy": "RetainExceptOnCreate", "UpdateReplacePolicy": "Retain"}
NO_VALUE = {"Ref": "AWS::NoValue"}
# X-Ray active tracing is not offered for Lambda in the China partition: trace only elsewhere.
IN_CHINA = "IsChinaPartition"
CONSOLE_DOMAINS = {"aws": "console.aws.amazon.com", "aws-cn": "console.amazonaws.cn"}
ALARM_WEBHOOK_SOURCE = INFRA / "alarm_webhook.py"
INLINE_CODE_LIMIT = 4096  # CloudFormation's Code.ZipFile
ALARM_ACTIONS = {"AlarmActions": [{"Ref": "AlarmTopic"}], "OKActions": [{"Ref": "AlarmTopic"}]}
ARCHITECTURE = "x86_64"  # the managed layer's wheels are built for it (Chalice's default)
API = "APIHandler"  # Chalice's logical ids
REST_API = "RestAPI"
LAYER = "ManagedLayer"
PLACEHOLDER_ROLE = "arn:aws:iam::000000000000:role/replaced-by-infra-stack-ApiHandlerRole"
# Canary releases: what callers invoke is this alias of a published version, never $LATEST; CodeDeploy moves it
# (StageSettings' DeploymentType: all at once in dev, a 10% canary in prod) and moves it back on an alarm.
ALIAS = "live"
DEPLOYMENT_TYPE = {"Fn::FindInMap": ["StageSettings", {"Ref": "Stage"}, "DeploymentType"]}
# The protected KMS keys: table data, log data, backups. Nobody but the break-glass role may disable them or
# schedule their deletion (docs/security.md); kept on stack deletion and on a failed create alike (Retain), so
# CloudFormation itself never calls a denied action.
PROTECTED_KEYS = ("TableKey", "LogKey", "BackupKey")
KEY_DESTRUCTIVE_ACTIONS = ["kms:DisableKey", "kms:ScheduleKeyDeletion"]
KEY_RETAIN = {"DeletionPolicy": "Retain", "UpdateReplacePolicy": "Retain"}
# Regions where CloudFormation has no AWS::Budgets::Budget (cfn-lint's region schemas; a test keeps this list
# equal to them): the budget is skipped there (create it in Billing -> Budgets by hand).
BUDGETS_UNSUPPORTED_REGIONS = (
    "af-south-1", "ap-east-1", "ap-east-2", "ap-northeast-3", "ap-south-2", "ap-southeast-3", "ap-southeast-4",
    "ap-southeast-5", "ap-southeast-6", "ap-southeast-7", "ca-west-1", "eu-central-2", "eu-north-1", "eu-south-1",
    "eu-south-2", "il-central-1", "me-central-1", "mx-central-1", "us-gov-east-1", "us-gov-west-1")
BACKUP_TIMEZONE = TIMEZONE

# Gateway responses in our error shape {"code", "message", "details"}. API Gateway substitutes $context
# variables (no VTL); messageString is already a quoted JSON string.
GATEWAY_RESPONSES: dict[str, tuple[str | None, str, str]] = {
    # type: (status or None to keep API Gateway's, code, message as a JSON string literal or messageString)
    "DEFAULT_4XX": (None, "bad_request", "$context.error.messageString"),
    "DEFAULT_5XX": (None, "gateway_error", "$context.error.messageString"),
    # API Gateway's answer to an unknown path or a method the path does not have (no authorizers here).
    "MISSING_AUTHENTICATION_TOKEN": ("404", "route_not_found", '"no such route or method"'),
    "THROTTLED": ("429", "throttled", '"too many requests; retry with backoff"'),
    "QUOTA_EXCEEDED": ("429", "throttled", '"request quota exceeded"'),
    "REQUEST_TOO_LARGE": ("413", "payload_too_large", '"request body too large"'),
    "UNSUPPORTED_MEDIA_TYPE": ("415", "unsupported_media_type", '"send application/json"'),
    "INTEGRATION_TIMEOUT": ("504", "timeout", '"the request took too long; it may still complete"'),
    "INTEGRATION_FAILURE": ("502", "gateway_error", "$context.error.messageString"),
}
ACCESS_LOG_FORMAT = json.dumps({
    "requestId": "$context.requestId", "extendedRequestId": "$context.extendedRequestId",
    "lambdaRequestId": "$context.integration.requestId", "time": "$context.requestTime",
    "ip": "$context.identity.sourceIp", "userAgent": "$context.identity.userAgent",
    "method": "$context.httpMethod", "route": "$context.resourcePath", "path": "$context.path",
    "status": "$context.status", "responseLength": "$context.responseLength",
    "latencyMs": "$context.responseLatency", "integrationLatencyMs": "$context.integrationLatency",
    "integrationStatus": "$context.integrationStatus", "errorType": "$context.error.responseType",
    "errorMessage": "$context.error.message",
}, separators=(",", ":"))  # no query string: GET /members?phone= must not put phone numbers in the access log


class ManifestError(ValueError):
    """A manifest entry that cannot be deployed as written."""


@dataclass(frozen=True)
class Grant:
    on: str  # "table" or an index name
    actions: tuple[str, ...]


@dataclass(frozen=True)
class MachineStep:
    step: str  # the "step" of the event the function gets
    map: bool  # one invocation per segment of the plan, each repeated until it answers "done": true
    when: str | None = None  # run only when the plan's answer has this flag true

    @property
    def state(self) -> str:
        return "".join(part.capitalize() for part in self.step.split("_")) + ("Map" if self.map else "")


@dataclass(frozen=True)
class MachineSpec:
    steps: tuple[MachineStep, ...]  # the first one plans: it answers {"as_of", "segments", <flags>}
    max_concurrency: int  # the default of the template parameter <Logical>Concurrency
    timeout_hours: int

    @property
    def maps(self) -> bool:
        return any(s.map for s in self.steps)


@dataclass(frozen=True)
class QueueSpec:
    """trigger.sqs: the function consumes a queue of its own (generated with its redrive policy to the DLQ)."""

    batch_size: int
    max_receive_count: int  # deliveries before a message moves to the DLQ
    senders: tuple[str, ...]  # who else may send to it ("api"): gets sqs:SendMessage and the URL in an env var


@dataclass(frozen=True)
class FunctionSpec:
    name: str
    module: str
    handler: str
    description: str
    schedule: str | None  # None: not scheduled (a queue consumer)
    timezone: str
    input: dict[str, Any]
    timeout: int
    memory: int
    reserved_concurrency: int | None
    retry_attempts: int
    max_event_age_seconds: int
    dynamodb: tuple[Grant, ...]
    secret: bool
    metrics: tuple[str, ...]
    success_metric: str | None = None
    finish_alarm_hours: int | None = None
    local_handler: str | None = None  # what the local CLI runs instead of `handler` (not deployed)
    packages: tuple[str, ...] = ()  # pinned requirements only this function needs: its own layer
    machine: MachineSpec | None = None  # run by a Step Functions state machine, not by its schedule directly
    queue: QueueSpec | None = None  # run by an SQS event source mapping on a queue of its own

    @property
    def logical(self) -> str:
        return "".join(part.capitalize() for part in self.name.split("-"))

    @property
    def is_daily(self) -> bool:
        return self.schedule is not None and is_daily_cron(self.schedule)

    @property
    def queue_env(self) -> str:
        """The variable naming its queue's URL (settings: <name>_queue_url)."""
        return "CHAINCRM_" + self.name.replace("-", "_").upper() + "_QUEUE_URL"


@dataclass(frozen=True)
class ApiSpec:
    dynamodb: tuple[Grant, ...]
    secret: bool
    metrics: tuple[str, ...]
    default_rate: float
    default_burst: int
    routes: dict[tuple[str, str], tuple[float, int]] = field(default_factory=dict)  # (METHOD, path) -> limits


# ---- manifests -----------------------------------------------------------------------------------------------
def read_json(path: Path) -> Any:
    return json.loads(path.read_text())


def base_template(infra: Path = INFRA) -> dict[str, Any]:
    return read_json(infra / "template.json")


def table_indexes(template: dict[str, Any]) -> set[str]:
    gsis = template["Resources"]["Table"]["Properties"].get("GlobalSecondaryIndexes", [])
    return {g["IndexName"] for g in gsis}


def scannable_indexes(template: dict[str, Any]) -> set[str]:
    gsis = template["Resources"]["Table"]["Properties"].get("GlobalSecondaryIndexes", [])
    return {g["IndexName"] for g in gsis if g.get("Projection", {}).get("ProjectionType") == SCAN_NEEDS_PROJECTION}


def requirement_name(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_pins(root: Path = ROOT) -> dict[str, str]:
    """requirements.txt's pinned lines by normalised name: {"numpy": "numpy==2.2.6"}."""
    pins = {}
    for line in (root / "requirements.txt").read_text().splitlines():
        m = re.fullmatch(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*==\s*([^\s#;]+)\s*(#.*)?", line)
        if m:
            pins[requirement_name(m.group(1))] = f"{m.group(1)}=={m.group(2)}"
    return pins


def is_daily_cron(expression: str) -> bool:
    """cron(min hour day-of-month month day-of-week year) that fires once a day, every day."""
    m = re.fullmatch(r"cron\((.+)\)", expression.strip())
    if not m:
        return False
    fields = m.group(1).split()
    if len(fields) != 6:
        return False
    minute, hour, dom, month, dow, _ = fields
    return bool(re.fullmatch(r"\d+", minute) and re.fullmatch(r"\d+", hour) and dom in ("*", "?")
                and month == "*" and dow in ("*", "?"))


def _need(entry: dict[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    if key not in entry:
        raise ManifestError(f"{where}: '{key}' is required")
    value = entry[key]
    if not isinstance(value, kind) or isinstance(value, bool) and kind is int:
        raise ManifestError(f"{where}: '{key}' must be {kind}, not {value!r}")
    return value


def _metric_names(values: Any, where: str) -> tuple[str, ...]:
    if not isinstance(values, list) or not all(isinstance(v, str) and re.fullmatch(r"[A-Z][A-Za-z0-9]{2,80}", v)
                                               for v in values):
        raise ManifestError(f"{where}: 'metrics' must be a list of CamelCase metric names")
    return tuple(values)


def _grants(values: Any, indexes: set[str], where: str, scannable: set[str] = frozenset()) -> tuple[Grant, ...]:
    if not isinstance(values, list):
        raise ManifestError(f"{where}: 'dynamodb' must be a list of {{'on', 'actions'}}")
    grants = []
    for g in values:
        on, actions = g.get("on"), g.get("actions")
        if on != "table" and on not in indexes:
            raise ManifestError(f"{where}: dynamodb 'on' must be 'table' or one of the indexes {sorted(indexes)}, "
                                f"not {on!r}")
        allowed = TABLE_ACTIONS if on == "table" else INDEX_ACTIONS
        if not actions or not isinstance(actions, list) or not set(actions) <= allowed:
            raise ManifestError(f"{where}: actions on {on} must be some of {sorted(allowed)} (without 'dynamodb:'),"
                                f" not {actions!r}")
        if "Scan" in actions and on not in scannable:
            raise ManifestError(f"{where}: Scan only of an index built to be scanned ({SCAN_NEEDS_PROJECTION} "
                                f"projection: {sorted(scannable)}), not {on}")
        grants.append(Grant(on, tuple(sorted(set(actions)))))
    if len({g.on for g in grants}) != len(grants):
        raise ManifestError(f"{where}: one 'dynamodb' entry per table/index")
    return tuple(grants)


def handler_defined(module_file: Path, handler: str) -> bool:
    tree = ast.parse(module_file.read_text())
    return any(isinstance(n, ast.FunctionDef) and n.name == handler for n in tree.body)


def _machine(value: Any, where: str) -> MachineSpec:
    """trigger.state_machine: {"steps": [{"step", "map"?, "when"?}...], "max_concurrency", "timeout_hours"}."""
    shape = ("'state_machine' is {'steps': [{'step': 'plan'}, {'step': 'measure', 'map': true, 'when': 'measure'}, "
             "...], 'max_concurrency': 1..100, 'timeout_hours': 1..24}")
    if not isinstance(value, dict) or set(value) - {"steps", "max_concurrency", "timeout_hours"}:
        raise ManifestError(f"{where}: {shape}")
    steps = []
    for item in value.get("steps") or []:
        if not isinstance(item, dict) or set(item) - {"step", "map", "when"}:
            raise ManifestError(f"{where}: each state machine step is {{'step', 'map'?, 'when'?}}, not {item!r}")
        step, is_map, when = item.get("step"), item.get("map", False), item.get("when")
        if not isinstance(step, str) or not re.fullmatch(r"[a-z][a-z_]{0,30}", step) or not isinstance(is_map, bool):
            raise ManifestError(f"{where}: a step's 'step' is a snake_case name, 'map' true or false: {item!r}")
        if when is not None and (not isinstance(when, str) or not re.fullmatch(r"[a-z][a-z_]{0,30}", when)):
            raise ManifestError(f"{where}: a step's 'when' names a boolean of the plan's answer: {item!r}")
        steps.append(MachineStep(step, is_map, when))
    if len(steps) < 2 or steps[0].map or steps[0].when or steps[-1].when:
        raise ManifestError(f"{where}: a state machine has two steps or more; the first plans (no 'map', no 'when') "
                            "and the last always runs (no 'when')")
    if len({s.state for s in steps}) != len(steps):
        raise ManifestError(f"{where}: state machine steps must differ")
    concurrency, hours = value.get("max_concurrency", 10), value.get("timeout_hours", 20)
    if not isinstance(concurrency, int) or isinstance(concurrency, bool) or not 1 <= concurrency <= 100:
        raise ManifestError(f"{where}: {shape}")
    if not isinstance(hours, int) or isinstance(hours, bool) or not 1 <= hours <= 24:
        raise ManifestError(f"{where}: {shape} (a night's run that is still going after a day is stuck)")
    return MachineSpec(tuple(steps), concurrency, hours)


def _packages(values: Any, root: Path, where: str) -> tuple[str, ...]:
    if values is None:
        return ()
    pins = requirement_pins(root)
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise ManifestError(f"{where}: 'packages' is a list of names pinned in requirements.txt")
    missing = [v for v in values if requirement_name(v) not in pins]
    if missing:
        raise ManifestError(f"{where}: 'packages' {missing} must be pinned (name==version) in requirements.txt: the "
                            "layer and the local venv install the same version")
    return tuple(pins[requirement_name(v)] for v in values)


def parse_function(entry: dict[str, Any], indexes: set[str], root: Path = ROOT,
                   scannable: set[str] = frozenset()) -> FunctionSpec:
    where = f"infra/functions.json entry {entry.get('name', '?')!r}"
    name = _need(entry, "name", str, where)
    if not re.fullmatch(r"[a-z][a-z0-9-]{1,30}[a-z0-9]", name):
        raise ManifestError(f"{where}: 'name' must be kebab-case (it names the Lambda <stack>-<name>)")
    module = _need(entry, "module", str, where)
    m = re.fullmatch(r"functions\.([a-z_][a-z0-9_]*)", module)
    if not m or not (root / "functions" / f"{m.group(1)}.py").is_file():
        raise ManifestError(f"{where}: 'module' must name a module functions.<name> that exists")
    handler = _need(entry, "handler", str, where)
    if not handler_defined(root / "functions" / f"{m.group(1)}.py", handler):
        raise ManifestError(f"{where}: {module} has no top-level function {handler!r}")
    local_handler = entry.get("local_handler")
    if local_handler is not None and (not isinstance(local_handler, str)
                                      or not handler_defined(root / "functions" / f"{m.group(1)}.py", local_handler)):
        raise ManifestError(f"{where}: {module} has no top-level function {local_handler!r} ('local_handler')")
    trigger = _need(entry, "trigger", dict, where)
    if set(trigger) == {"sqs"}:
        return _queue_consumer(entry, trigger["sqs"], name, module, handler, local_handler, indexes, root, scannable,
                               where)
    unknown = set(trigger) - {"schedule", "timezone", "input", "state_machine"}
    if unknown or "schedule" not in trigger:
        raise ManifestError(
            f"{where}: only scheduled triggers are generated so far ({{'schedule', 'timezone', 'input'}}, and "
            "'state_machine' for a schedule that starts a Step Functions state machine running the function); "
            f"got {sorted(trigger)}. A DynamoDB-stream or SQS consumer needs support in infra/stack.py first: "
            "explicit MaximumRetryAttempts and MaximumRecordAgeInSeconds, BisectBatchOnFunctionError, "
            "ReportBatchItemFailures and an on-failure destination (streams); ReportBatchItemFailures and a "
            "redrive policy to a DLQ with maxReceiveCount (SQS)")
    schedule = trigger["schedule"]
    if not isinstance(schedule, str) or not re.fullmatch(r"(rate|cron)\(.+\)", schedule):
        raise ManifestError(f"{where}: 'schedule' must be rate(...) or cron(...) (EventBridge Scheduler syntax)")
    if trigger.get("timezone") != TIMEZONE:
        raise ManifestError(f"{where}: schedules run in the brand's business time: 'timezone': '{TIMEZONE}'")
    event = trigger.get("input", {})
    if not isinstance(event, dict):
        raise ManifestError(f"{where}: trigger 'input' is the JSON object the schedule sends")
    timeout = _need(entry, "timeout", int, where)
    memory = _need(entry, "memory", int, where)
    if not 1 <= timeout <= 900 or not 128 <= memory <= 10240:
        raise ManifestError(f"{where}: timeout is 1..900 s, memory 128..10240 MB")
    reserved = entry.get("reserved_concurrency")
    if reserved is not None and (not isinstance(reserved, int) or reserved < 1):
        raise ManifestError(f"{where}: 'reserved_concurrency' is a positive number or null")
    machine = _machine(trigger["state_machine"], where) if "state_machine" in trigger else None
    if machine and "retry" in entry:
        raise ManifestError(f"{where}: 'retry' is for asynchronous invocations; a state machine invokes its function "
                            "synchronously and retries in its definition")
    retry = entry.get("retry", {"attempts": 0 if machine else 2, "max_event_age_seconds": 21600})
    attempts, max_age = retry.get("attempts"), retry.get("max_event_age_seconds")
    if attempts not in (0, 1, 2) or not isinstance(max_age, int) or not 60 <= max_age <= 21600:
        raise ManifestError(f"{where}: 'retry' is {{'attempts': 0..2, 'max_event_age_seconds': 60..21600}} "
                            "(Lambda's limits for asynchronous invocations)")
    metrics = _metric_names(entry.get("metrics"), where)
    success = entry.get("success_metric")
    hours = entry.get("finish_alarm_hours")
    if success is not None and success not in metrics:
        raise ManifestError(f"{where}: 'success_metric' must be one of its 'metrics'")
    if hours is not None and (not isinstance(hours, int) or not 1 <= hours <= 168 or success is None):
        raise ManifestError(f"{where}: 'finish_alarm_hours' is 1..168 (CloudWatch evaluates at most 7 days) and "
                            "needs a 'success_metric' the job emits once per successful run")
    if is_daily_cron(schedule) and hours is None:
        raise ManifestError(f"{where}: a daily job needs 'success_metric' and 'finish_alarm_hours' (the alarm "
                            "that says it did not finish), e.g. 25")
    secret = _need(entry, "secret", bool, where)
    return FunctionSpec(
        name=name, module=module, handler=handler, description=_need(entry, "description", str, where)[:256],
        schedule=schedule, timezone=TIMEZONE, input=event, timeout=timeout, memory=memory,
        reserved_concurrency=reserved, retry_attempts=attempts, max_event_age_seconds=max_age,
        dynamodb=_grants(entry.get("dynamodb"), indexes, where, scannable), secret=secret, metrics=metrics,
        success_metric=success, finish_alarm_hours=hours, local_handler=local_handler,
        packages=_packages(entry.get("packages"), root, where), machine=machine)


def _queue_consumer(entry: dict[str, Any], sqs: Any, name: str, module: str, handler: str, local_handler: str | None,
                    indexes: set[str], root: Path, scannable: set[str], where: str) -> FunctionSpec:
    """trigger.sqs: {"batch_size": 1..10, "max_receive_count": 1..100, "senders": ["api"]?}. The queue, its
    redrive policy to the function's DLQ, the event source mapping (ReportBatchItemFailures) are generated."""
    shape = ("'sqs' is {'batch_size': 1..10, 'max_receive_count': 1..100, 'senders': ['api']} (the queue, its "
             "redrive policy to the function's DLQ and the event source mapping are generated)")
    if not isinstance(sqs, dict) or set(sqs) - {"batch_size", "max_receive_count", "senders"}:
        raise ManifestError(f"{where}: {shape}")
    batch, receives, senders = sqs.get("batch_size", 1), sqs.get("max_receive_count", 5), sqs.get("senders", [])
    for value, top in ((batch, 10), (receives, 100)):
        if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= top:
            raise ManifestError(f"{where}: {shape}")
    if not isinstance(senders, list) or set(senders) - {"api"}:
        raise ManifestError(f"{where}: {shape}")
    if "retry" in entry:
        raise ManifestError(f"{where}: 'retry' is for asynchronous invocations; a queue consumer is retried by SQS "
                            "('max_receive_count')")
    timeout, memory = _need(entry, "timeout", int, where), _need(entry, "memory", int, where)
    if not 1 <= timeout <= 900 or not 128 <= memory <= 10240:
        raise ManifestError(f"{where}: timeout is 1..900 s, memory 128..10240 MB")
    reserved = entry.get("reserved_concurrency")
    if reserved is not None and (not isinstance(reserved, int) or reserved < 1):
        raise ManifestError(f"{where}: 'reserved_concurrency' is a positive number or null")
    metrics = _metric_names(entry.get("metrics"), where)
    return FunctionSpec(
        name=name, module=module, handler=handler, description=_need(entry, "description", str, where)[:256],
        schedule=None, timezone=TIMEZONE, input={}, timeout=timeout, memory=memory, reserved_concurrency=reserved,
        retry_attempts=0, max_event_age_seconds=21600,
        dynamodb=_grants(entry.get("dynamodb"), indexes, where, scannable), secret=_need(entry, "secret", bool, where),
        metrics=metrics, local_handler=local_handler, packages=_packages(entry.get("packages"), root, where),
        queue=QueueSpec(batch, receives, tuple(senders)))


def load_functions(manifest: dict[str, Any] | None = None, infra: Path = INFRA, root: Path = ROOT,
                   template: dict[str, Any] | None = None) -> list[FunctionSpec]:
    manifest = read_json(infra / "functions.json") if manifest is None else manifest
    template = template or base_template(infra)
    indexes, scannable = table_indexes(template), scannable_indexes(template)
    specs = [parse_function(e, indexes, root, scannable) for e in manifest.get("functions", [])]
    for attr in ("name", "module"):
        values = [getattr(s, attr) for s in specs]
        if len(set(values)) != len(values):
            raise ManifestError(f"infra/functions.json: two entries with the same {attr}")
    return specs


def function_modules(root: Path = ROOT) -> set[str]:
    return {f"functions.{p.stem}" for p in (root / "functions").glob("*.py") if p.stem != "__init__"}


def check_manifest_complete(specs: list[FunctionSpec], root: Path = ROOT) -> None:
    missing = sorted(function_modules(root) - {s.module for s in specs})
    if missing:
        raise ManifestError(f"no entry in infra/functions.json for {', '.join(missing)}: every function needs its "
                            "trigger, grants and alarms declared there before it can be deployed")


def load_api(api: dict[str, Any] | None = None, infra: Path = INFRA,
             template: dict[str, Any] | None = None) -> ApiSpec:
    api = read_json(infra / "api.json") if api is None else api
    where = "infra/api.json"
    throttling = _need(api, "throttling", dict, where)
    default = throttling.get("default", {})
    routes: dict[tuple[str, str], tuple[float, int]] = {}
    for key, limits in throttling.get("routes", {}).items():
        m = re.fullmatch(r"(GET|POST|PUT|PATCH|DELETE) (/\S*)", key)
        if not m:
            raise ManifestError(f"{where}: throttling route {key!r} must be 'METHOD /path'")
        routes[(m.group(1), m.group(2))] = (limits["rate"], limits["burst"])
    template = template or base_template(infra)
    return ApiSpec(dynamodb=_grants(api.get("dynamodb"), table_indexes(template), where, scannable_indexes(template)),
                   secret=_need(api, "secret", bool, where), metrics=_metric_names(api.get("metrics"), where),
                   default_rate=default["rate"], default_burst=default["burst"], routes=routes)


def throttling_table(api: ApiSpec) -> str:
    """The limits of infra/api.json as the Markdown table docs/operations.md shows (a test keeps them equal)."""
    rows = ["| requests | rate (per s) | burst |", "|---|---|---|",
            f"| every route not listed below (stage default) | {api.default_rate:g} | {api.default_burst} |"]
    rows += [f"| `{method} {path}` | {rate:g} | {burst} |" for (method, path), (rate, burst) in api.routes.items()]
    return "\n".join(rows)


def dashboard_metrics(api: ApiSpec, specs: list[FunctionSpec]) -> list[str]:
    """Every business metric, in manifest order, once."""
    return list(dict.fromkeys([*api.metrics, *(m for s in specs for m in s.metrics)]))


def chalice_api_stage(root: Path = ROOT) -> str:
    config = read_json(root / ".chalice" / "config.json")
    return config.get("api_gateway_stage") or next(iter(config["stages"].values())).get("api_gateway_stage", "api")


# ---- IAM -------------------------------------------------------------------------------------------------------
def _arn(logical: str) -> dict[str, Any]:
    return {"Fn::GetAtt": [logical, "Arn"]}


def grant_statements(grants: tuple[Grant, ...]) -> list[dict[str, Any]]:
    statements = []
    for g in grants:
        resource = _arn("Table") if g.on == "table" else {"Fn::Sub": "${Table.Arn}/index/" + g.on}
        statements.append({"Sid": "Table" if g.on == "table" else f"Index{g.on.capitalize()}", "Effect": "Allow",
                           "Action": [f"dynamodb:{a}" for a in g.actions], "Resource": resource})
    statements.append({
        # DynamoDB decrypts with the table's key on the caller's behalf; nothing else may use it through us.
        "Sid": "TableKeyViaDynamoDBOnly", "Effect": "Allow", "Action": ["kms:Decrypt", "kms:GenerateDataKey"],
        "Resource": _arn("TableKey"),
        "Condition": {"StringEquals": {"kms:ViaService": {"Fn::Sub": "dynamodb.${AWS::Region}.${AWS::URLSuffix}"}}}})
    return statements


def role_resource(description: str, service: str, statements: list[dict[str, Any]]) -> dict[str, Any]:
    assume: dict[str, Any] = {"Effect": "Allow", "Principal": {"Service": service}, "Action": "sts:AssumeRole"}
    if service != "lambda.amazonaws.com":
        assume["Condition"] = {"StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}}
    return {"Type": "AWS::IAM::Role", "Properties": {
        "Description": description[:1000],
        "AssumeRolePolicyDocument": {"Version": "2012-10-17", "Statement": [assume]},
        "Policies": [{"PolicyName": "least-privilege",
                      "PolicyDocument": {"Version": "2012-10-17", "Statement": statements}}]}}


def lambda_statements(log_group: str, grants: tuple[Grant, ...], secret: bool,
                      dlq: str | None = None) -> list[dict[str, Any]]:
    statements: list[dict[str, Any]] = [
        # Its own log group only (declared with retention; the function may not create groups).
        {"Sid": "OwnLogGroup", "Effect": "Allow", "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
         "Resource": _arn(log_group)},
        *grant_statements(grants)]
    if secret:
        statements.append({"Sid": "KeyBundle", "Effect": "Allow", "Action": "secretsmanager:GetSecretValue",
                           "Resource": {"Ref": "Secret"}})
    if dlq:
        statements.append({"Sid": "OnFailureDestination", "Effect": "Allow", "Action": "sqs:SendMessage",
                           "Resource": _arn(dlq)})
    # X-Ray has no resource-level permissions: these two actions can only be granted on "*".
    # (No cloudwatch:PutMetricData: Powertools writes metrics as EMF log lines, which needs no permission.)
    statements.append({"Sid": "XRayHasNoResourceLevelPermissions", "Effect": "Allow",
                       "Action": ["xray:PutTraceSegments", "xray:PutTelemetryRecords"], "Resource": "*"})
    return statements


# ---- pieces ----------------------------------------------------------------------------------------------------
def log_group(name_sub: str) -> dict[str, Any]:
    """Every log group of the stack: retention by stage, encrypted with the stack's log key (they hold member
    ids for up to a year)."""
    return {"Type": "AWS::Logs::LogGroup", **KEEP,
            "Properties": {"LogGroupName": {"Fn::Sub": name_sub}, "RetentionInDays": RETENTION,
                           "KmsKeyId": _arn("LogKey")}}


def alias_properties(alarms: list[str]) -> dict[str, Any]:
    """SAM properties publishing a version and deploying it through CodeDeploy to the alias `live`, rolled back when
    one of `alarms` goes off. A new version is published when the version's logical id changes: finalize() sets
    AutoPublishCodeSha256 to a digest of the function's properties and its layers' zips (SAM would hash the code
    location alone: a new layer or setting would never reach the alias), and when its description changes:
    VersionDescription names ConfigGeneration, so a restart (docs/operations.md) publishes a version too."""
    return {"AutoPublishAlias": ALIAS,
            "VersionDescription": {"Fn::Sub": "chaincrm, configuration generation ${ConfigGeneration}"},
            "DeploymentPreference": {"Type": DEPLOYMENT_TYPE, "Alarms": [{"Ref": a} for a in alarms],
                                     "Role": _arn("CodeDeployRole")}}


def version_digest(resources: dict[str, Any], logical: str) -> str:
    """What an aliased function's published version is made of, as far as the template says: its properties and
    the content of each layer it names (their zips are named by content)."""
    props = {k: v for k, v in resources[logical]["Properties"].items() if k != "AutoPublishCodeSha256"}
    layers = [resources[layer["Ref"]]["Properties"] for layer in props.get("Layers", [])
              if isinstance(layer, dict) and layer.get("Ref") in resources]
    blob = json.dumps({"function": props, "layers": layers}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def alarm(name: str, description: str, metric: dict[str, Any], *, threshold: float,
          comparison: str = "GreaterThanOrEqualToThreshold", period: int = 300, periods: int = 1,
          missing: str = "notBreaching") -> dict[str, Any]:
    return {"Type": "AWS::CloudWatch::Alarm", "Properties": {
        "AlarmName": {"Fn::Sub": "${AWS::StackName}-" + name}, "AlarmDescription": description, **metric,
        "Period": period, "EvaluationPeriods": periods, "DatapointsToAlarm": periods, "Threshold": threshold,
        "ComparisonOperator": comparison, "TreatMissingData": missing, **ALARM_ACTIONS}}


def lambda_alarms(prefix: str, function: str, label: str) -> dict[str, dict[str, Any]]:
    def metric(name: str) -> dict[str, Any]:
        return {"Namespace": "AWS/Lambda", "MetricName": name, "Statistic": "Sum",
                "Dimensions": [{"Name": "FunctionName", "Value": {"Ref": function}}]}

    return {
        f"{prefix}ErrorsAlarm": alarm(f"{label}-errors", f"{label}: the function failed (exception, timeout or "
                                      "out of memory). Logs: its log group; runbook docs/operations.md",
                                      metric("Errors"), threshold=1),
        f"{prefix}ThrottlesAlarm": alarm(f"{label}-throttles", f"{label}: invocations were throttled "
                                         "(concurrency limit)", metric("Throttles"), threshold=1),
    }


def dlq_alarm(prefix: str, queue: str, label: str) -> dict[str, dict[str, Any]]:
    return {f"{prefix}DlqAlarm": alarm(
        f"{label}-dlq-not-empty", f"{label}: failed invocations are waiting in its dead-letter queue; replay them "
        "(docs/operations.md, 'Replay a dead-letter queue')",
        {"Namespace": "AWS/SQS", "MetricName": "ApproximateNumberOfMessagesVisible", "Statistic": "Maximum",
         "Dimensions": [{"Name": "QueueName", "Value": {"Fn::GetAtt": [queue, "QueueName"]}}]}, threshold=1)}


def api_resources(api: ApiSpec, api_stage: str) -> dict[str, Any]:
    env = {
        "CHAINCRM_TABLE_NAME": {"Ref": "Table"},
        "CHAINCRM_STAGE": {"Ref": "Stage"},
        "POWERTOOLS_SERVICE_NAME": SERVICE,
        "POWERTOOLS_METRICS_NAMESPACE": NAMESPACE,
        "CONFIG_GENERATION": {"Ref": "ConfigGeneration"},
        **{k: {"Fn::Sub": "{{resolve:ssm:" + v + "}}"} for k, v in SSM_PARAMETERS.items()},
    }
    if api.secret:
        env["CHAINCRM_SECRET_ID"] = {"Ref": "Secret"}
    settings = {"LoggingLevel": "OFF", "DataTraceEnabled": False, "MetricsEnabled": False}

    def limits(rate: float, burst: int) -> dict[str, Any]:
        # ApiPaused=true sets every limit, the stage default and each route override alike, to 0: a real pause.
        return {"ThrottlingRateLimit": {"Fn::If": ["ApiIsPaused", 0, rate]},
                "ThrottlingBurstLimit": {"Fn::If": ["ApiIsPaused", 0, burst]}}

    method_settings = [{"ResourcePath": "/*", "HttpMethod": "*", **limits(api.default_rate, api.default_burst),
                        **settings}]
    for (method, path), (rate, burst) in sorted(api.routes.items()):
        method_settings.append({"ResourcePath": "/" + path.replace("/", "~1"), "HttpMethod": method,
                                **limits(rate, burst), **settings})
    responses = {}
    for kind, (status, code, message) in GATEWAY_RESPONSES.items():
        body = '{"code":"' + code + '","message":' + message + ',"details":{"request_id":"$context.requestId"}}'
        responses[kind] = {"responseTemplates": {"application/json": body}}
        if status:
            responses[kind]["statusCode"] = status
    resources: dict[str, Any] = {
        "ApiHandlerLogGroup": log_group("/aws/lambda/${AWS::StackName}-api"),
        "ApiAccessLogGroup": log_group("/chaincrm/${AWS::StackName}/api-access"),
        "ApiHandlerRole": role_resource("chaincrm API Lambda", "lambda.amazonaws.com",
                                        lambda_statements("ApiHandlerLogGroup", api.dynamodb, api.secret)),
        API: {"DependsOn": ["ApiHandlerLogGroup"], "Properties": {
            "FunctionName": {"Fn::Sub": "${AWS::StackName}-api"},
            "Description": "chaincrm HTTP API (Chalice app.py)",
            "Role": _arn("ApiHandlerRole"),
            "Tracing": {"Fn::If": [IN_CHINA, "PassThrough", "Active"]},
            "Environment": {"Variables": env},
            **alias_properties(["Api5xxAlarm", "ApiErrorLogAlarm", "ApiHandlerErrorsAlarm"])}},
        REST_API: {"Properties": {
            "Name": {"Ref": "AWS::StackName"},
            # Any OpenApiVersion stops SAM from creating a second stage named "Stage" beside ours (same function,
            # none of our throttling, logs or alarms). "2.0" is what Chalice's definition body already is.
            "OpenApiVersion": "2.0",
            "TracingEnabled": {"Fn::If": [IN_CHINA, False, True]},
            # With a custom domain (HasApiDomain) the default https://<id>.execute-api... URL answers nothing: the
            # domain, its TLS policy and the WAF in front of it are the only way in.
            "DisableExecuteApiEndpoint": {"Fn::If": ["HasApiDomain", True, False]},
            # Access logs need the account's API Gateway logging role: infra/apigateway-account.json, deployed
            # once per account and region (docs/operations.md), so no stage's stack owns an account setting.
            "AccessLogSetting": {"DestinationArn": _arn("ApiAccessLogGroup"), "Format": ACCESS_LOG_FORMAT},
            "MethodSettings": method_settings,
            # The API's name is its CloudWatch dimension ApiName (dashboard, 5xx alarm): the stack's name, in
            # both places API Gateway may take it from.
            "DefinitionBody": {"info": {"title": {"Ref": "AWS::StackName"}},
                               "x-amazon-apigateway-gateway-responses": responses}}},
        "ApiErrorLogFilter": {"Type": "AWS::Logs::MetricFilter", "Properties": {
            # Our routes answer every unhandled exception with a 500 (so Lambda sees no error): count the
            # ERROR lines they log instead.
            "LogGroupName": {"Ref": "ApiHandlerLogGroup"}, "FilterPattern": '{ $.level = "ERROR" }',
            # Dimensioned by the log line's own stage (a metric with dimensions cannot have a default value).
            "MetricTransformations": [{"MetricNamespace": NAMESPACE, "MetricName": "ApiErrorLogLines",
                                       "MetricValue": "1", "Dimensions": [{"Key": "stage", "Value": "$.stage"}]}]}},
        "ApiErrorLogAlarm": alarm("api-error-logs", "api: a request failed with an unhandled error (a 500: a bug, "
                                  "never bad input). Find it: Logs Insights query 'errors' on the API log group",
                                  {"Namespace": NAMESPACE, "MetricName": "ApiErrorLogLines", "Statistic": "Sum",
                                   "Dimensions": [{"Name": "stage", "Value": {"Ref": "Stage"}}]},
                                  threshold=1),
        "Api5xxAlarm": alarm("api-5xx", "api: API Gateway answered 5xx (timeouts, unavailable dependencies, "
                             "errors); see the access log group",
                             {"Namespace": "AWS/ApiGateway", "MetricName": "5XXError", "Statistic": "Sum",
                              "Dimensions": [{"Name": "ApiName", "Value": {"Ref": "AWS::StackName"}},
                                             {"Name": "Stage", "Value": api_stage}]}, threshold=5),
        **lambda_alarms("ApiHandler", API, "api"),
    }
    return resources


def _machine_name(spec: FunctionSpec) -> str:
    return "${AWS::StackName}-" + spec.name


def state_machine_definition(spec: FunctionSpec) -> dict[str, Any]:
    """The Amazon States Language of a function's state machine (JSONPath). Placeholders, filled by the resource's
    DefinitionSubstitutions: ${LambdaInvoke} (the partition's lambda:invoke integration), ${FunctionArn},
    ${MaxConcurrency} (the <Logical>Concurrency parameter).

    DateGiven/Today -> plan (with the execution input's optional "date") -> per step: a Task with the plan's as_of,
    or a Map over the plan's segments whose every iteration invokes the step for its segment until it answers
    "done": true (the function stops taking pages before its timeout and checkpoints; the next call resumes). A
    step with `when` runs only if the plan's answer has that flag true. The Maps run in Distributed mode: each
    segment is a child execution with its own history, so ~1,000 segments (x2 Maps, each loop ~10 events) stay
    far from a Standard execution's 25,000-event limit, and each Map keeps none of its iterations' results."""
    machine = spec.machine
    assert machine is not None
    retry = [
        {"ErrorEquals": LAMBDA_TRANSIENT_ERRORS, "IntervalSeconds": 2, "MaxAttempts": 6, "BackoffRate": 2},
        # Anything else the function raised (a timeout, DynamoDB unavailable past the SDK's retries): every step
        # resumes from its checkpoint, so trying again is safe; a bug fails after the second retry.
        {"ErrorEquals": ["States.TaskFailed"], "IntervalSeconds": 30, "MaxAttempts": 2, "BackoffRate": 2},
    ]

    def task(payload: dict[str, Any], **fields: Any) -> dict[str, Any]:
        return {"Type": "Task", "Resource": "${LambdaInvoke}",
                "Parameters": {"FunctionName": "${FunctionArn}", "Payload": payload}, "Retry": retry, **fields}

    def entry(i: int) -> str:  # the first state of step i: its Choice when it has a condition
        step = machine.steps[i]
        return step.state.removesuffix("Map") + "Needed" if step.when else step.state

    def then(i: int) -> dict[str, Any]:
        return {"Next": entry(i + 1)} if i + 1 < len(machine.steps) else {"End": True}

    plan = machine.steps[0]
    selector = {"as_of.$": "$.Payload.as_of"}
    if machine.maps:
        selector["segments.$"] = "$.Payload.segments"
        # MaxConcurrencyPath reads it from the state; a substitution can only write text, hence StringToJson.
        selector["concurrency.$"] = "States.StringToJson('${MaxConcurrency}')"
    selector |= {f"{flag}.$": f"$.Payload.{flag}" for flag in sorted({s.when for s in machine.steps if s.when})}
    states: dict[str, Any] = {
        "DateGiven": {"Type": "Choice", "Comment": "a re-run names its day: {\"date\": \"YYYY-MM-DD\"}",
                      "Choices": [{"Variable": "$.date", "IsPresent": True, "Next": plan.state}], "Default": "Today"},
        "Today": {"Type": "Pass", "Result": {"date": None}, "Next": plan.state},
        plan.state: task({"step": plan.step, "date.$": "$.date"}, ResultSelector=selector, **then(0)),
    }
    for i, step in enumerate(machine.steps[1:], start=1):
        if step.when:
            states[entry(i)] = {"Type": "Choice", "Choices": [
                {"Variable": f"$.{step.when}", "BooleanEquals": True, "Next": step.state}],
                "Default": entry(i + 1)}
        last = i + 1 == len(machine.steps)
        if not step.map:
            states[step.state] = task({"step": step.step, "as_of.$": "$.as_of"},
                                      **({"OutputPath": "$.Payload"} if last else {"ResultPath": None}), **then(i))
            continue
        name = step.state.removesuffix("Map")
        work, done, finished = f"{name}Segment", f"{name}SegmentDone", f"{name}SegmentFinished"
        states[step.state] = {
            "Type": "Map", "Label": name, "ItemsPath": "$.segments", "MaxConcurrencyPath": "$.concurrency",
            "ItemProcessor": {
                "ProcessorConfig": {"Mode": "DISTRIBUTED", "ExecutionType": "STANDARD"},
                "StartAt": work,
                "States": {
                    work: task({"step": step.step, "as_of.$": "$.as_of", "segment.$": "$.segment"},
                               ResultSelector={"done.$": "$.Payload.done"}, ResultPath="$.result", Next=done),
                    done: {"Type": "Choice", "Choices": [
                        {"Variable": "$.result.done", "BooleanEquals": True, "Next": finished}], "Default": work},
                    # Each segment's output is only {"done": true}: ~1,000 of them stay far below 256 KB.
                    finished: {"Type": "Pass", "InputPath": "$.result", "End": True},
                }},
            "ResultPath": None,  # the state keeps the plan; the Map's own result (one {"done"} per segment) is dropped
            **then(i)}
    return {"Comment": f"{spec.name}: {spec.description}"[:1000], "StartAt": "DateGiven",
            "TimeoutSeconds": machine.timeout_hours * 3600, "States": states}


def machine_resources(spec: FunctionSpec) -> dict[str, Any]:
    p, name = spec.logical, spec.name
    fn, machine, role = f"{p}Function", f"{p}StateMachine", f"{p}StateMachineRole"
    assert spec.machine is not None
    statements: list[dict[str, Any]] = [
        # The tasks invoke the alias `live` (canary deployments): Lambda checks a qualified invoke against the
        # qualified ARN, so the alias's ARN (its Ref) is the one resource granted, and $LATEST is not invokable.
        {"Sid": "InvokeItsFunctionsAliasOnly", "Effect": "Allow", "Action": "lambda:InvokeFunction",
         "Resource": {"Ref": f"{fn}.Alias"}}]
    if spec.machine.maps:
        # A Distributed Map runs each segment as a child execution of this same machine (by name: a reference to
        # the machine would be a cycle, machine -> role -> machine).
        arn = "arn:${AWS::Partition}:states:${AWS::Region}:${AWS::AccountId}:"
        statements += [
            {"Sid": "DistributedMapStartsChildExecutionsOfItself", "Effect": "Allow",
             "Action": "states:StartExecution", "Resource": {"Fn::Sub": arn + "stateMachine:" + _machine_name(spec)}},
            {"Sid": "DistributedMapWatchesAndStopsThem", "Effect": "Allow",
             "Action": ["states:DescribeExecution", "states:StopExecution"],
             "Resource": {"Fn::Sub": arn + "execution:" + _machine_name(spec) + "/*"}}]
    # FunctionArn is the alias's ARN (<function arn>:live; SAM resolves the Ref), so every task, those of the
    # Distributed Maps' child executions too, goes through the alias and its canary weights.
    substitutions: dict[str, Any] = {"LambdaInvoke": {"Fn::Sub": "arn:${AWS::Partition}:states:::lambda:invoke"},
                                     "FunctionArn": {"Ref": f"{fn}.Alias"}}
    if spec.machine.maps:
        substitutions["MaxConcurrency"] = {"Ref": f"{p}Concurrency"}

    def executions(metric: str, label: str, what: str) -> dict[str, Any]:
        return alarm(f"{name}-executions-{label}", f"{name}: an execution of its state machine {what}. Step Functions "
                     "console -> the machine -> the execution: the failed step, its error and its Lambda's logs; "
                     "re-run it (docs/operations.md, 'The nightly RFM run')",
                     {"Namespace": "AWS/States", "MetricName": metric, "Statistic": "Sum",
                      "Dimensions": [{"Name": "StateMachineArn", "Value": {"Ref": machine}}]}, threshold=1)

    # No CloudWatch Logs logging of the machine: it would need eight log-delivery actions on "*" (logs:
    # PutResourcePolicy among them) in this role. The execution history (90 days) shows each failed step's error,
    # and the function logs to its own group.
    return {
        role: role_resource(f"Step Functions state machine of {name}", "states.amazonaws.com", statements),
        machine: {"Type": "AWS::StepFunctions::StateMachine", "Properties": {
            "StateMachineName": {"Fn::Sub": _machine_name(spec)}, "StateMachineType": "STANDARD",
            "RoleArn": _arn(role),
            "DefinitionString": json.dumps(state_machine_definition(spec), separators=(",", ":"), ensure_ascii=False),
            "DefinitionSubstitutions": substitutions}},
        f"{p}ExecutionsFailedAlarm": executions("ExecutionsFailed", "failed", "failed (a step kept failing past its "
                                                "retries)"),
        f"{p}ExecutionsTimedOutAlarm": executions("ExecutionsTimedOut", "timed-out",
                                                  f"ran longer than {spec.machine.timeout_hours} h and was stopped"),
    }


def machine_parameter(spec: FunctionSpec) -> dict[str, Any]:
    assert spec.machine is not None
    return {"Type": "Number", "Default": spec.machine.max_concurrency, "MinValue": 1, "MaxValue": 100,
            "Description": f"How many segments of a {spec.name} run are worked on at once (its Map states' "
                           "concurrency: one Lambda each, from the account's unreserved concurrency)"}


def packages_layer(spec: FunctionSpec, layer_key: str, runtime: str) -> dict[str, Any]:
    return {"Type": "AWS::Lambda::LayerVersion", "Properties": {
        "LayerName": {"Fn::Sub": "${AWS::StackName}-" + spec.name + "-packages"},
        "Description": f"{', '.join(spec.packages)} for {spec.name} only (manylinux wheels for Lambda's {runtime}, "
                       f"{ARCHITECTURE})"[:256],
        "Content": {"S3Bucket": {"Ref": "ArtifactBucket"}, "S3Key": {"Fn::Sub": "${ArtifactPrefix}" + layer_key}},
        "CompatibleRuntimes": [runtime], "CompatibleArchitectures": [ARCHITECTURE]}}


def function_resources(spec: FunctionSpec, code_key: str, runtime: str,
                       layer_key: str | None = None) -> dict[str, Any]:
    p, name = spec.logical, spec.name
    fn, role, logs, dlq = f"{p}Function", f"{p}Role", f"{p}LogGroup", f"{p}Dlq"
    env = {"CHAINCRM_TABLE_NAME": {"Ref": "Table"}, "CHAINCRM_STAGE": {"Ref": "Stage"},
           "POWERTOOLS_SERVICE_NAME": SERVICE, "POWERTOOLS_METRICS_NAMESPACE": NAMESPACE,
           "CONFIG_GENERATION": {"Ref": "ConfigGeneration"}}
    if spec.secret:
        env["CHAINCRM_SECRET_ID"] = {"Ref": "Secret"}
    if spec.queue:
        env[spec.queue_env] = {"Ref": f"{p}Queue"}  # it sends a job it could not finish back to its queue
    layers: list[Any] = [{"Ref": LAYER}]
    if spec.packages:
        layers.append({"Ref": f"{p}PackagesLayer"})
    # Every function of the manifest is invoked through its alias `live` (canary deployments, rollback by
    # CodeDeploy on its errors alarm): by its schedule, by its state machine's tasks, or by its queue's event
    # source mapping (docs/decisions.md, "Canary for the state machine and the queue consumer").
    function: dict[str, Any] = {
        "FunctionName": {"Fn::Sub": "${AWS::StackName}-" + name},
        # SAM appends the ConfigGeneration (AutoPublishCodeSha256) to an aliased function's description: room for it
        "Description": spec.description[:200],
        "Runtime": runtime, "Architectures": [ARCHITECTURE],
        "Handler": f"{spec.module}.{spec.handler}",
        "CodeUri": {"Bucket": {"Ref": "ArtifactBucket"}, "Key": {"Fn::Sub": "${ArtifactPrefix}" + code_key}},
        "Layers": layers,
        "Role": _arn(role), "Timeout": spec.timeout, "MemorySize": spec.memory,
        "Tracing": {"Fn::If": [IN_CHINA, "PassThrough", "Active"]},
        "Environment": {"Variables": env},
        **alias_properties([f"{p}ErrorsAlarm"]),
    }
    if spec.reserved_concurrency is not None:
        # A parameter, because a new account's concurrency quota may be too low to reserve any (docs/operations.md)
        function["ReservedConcurrentExecutions"] = {"Fn::If": ["ReserveJobConcurrency", spec.reserved_concurrency,
                                                               NO_VALUE]}
    # A scheduled function is invoked asynchronously (retries, then its DLQ as on-failure destination); a state
    # machine's function synchronously by the machine's tasks, and the DLQ is only the schedule's.
    target, target_grant = ((f"{p}StateMachine", {"Sid": "StartThisStateMachine", "Effect": "Allow",
                                                   "Action": "states:StartExecution",
                                                   "Resource": {"Ref": f"{p}StateMachine"}})
                            if spec.machine else
                            (fn, {"Sid": "InvokeThisFunctionsAlias", "Effect": "Allow",
                                  "Action": "lambda:InvokeFunction", "Resource": {"Ref": f"{fn}.Alias"}}))
    if spec.queue:
        return queue_consumer_resources(spec, function)
    resources: dict[str, Any] = {
        logs: log_group("/aws/lambda/${AWS::StackName}-" + name),
        role: role_resource(f"chaincrm function {name}", "lambda.amazonaws.com",
                            lambda_statements(logs, spec.dynamodb, spec.secret, None if spec.machine else dlq)),
        fn: {"Type": "AWS::Serverless::Function", "DependsOn": [logs], "Properties": function},
        dlq: {"Type": "AWS::SQS::Queue", **KEEP, "Properties": {
            "MessageRetentionPeriod": 1209600, "SqsManagedSseEnabled": True}},  # 14 days to replay
        f"{p}SchedulerRole": role_resource(
            f"EventBridge Scheduler {'starting the state machine of' if spec.machine else 'invoking'} {name}",
            "scheduler.amazonaws.com", [
                target_grant,
                {"Sid": "DeadLetterQueue", "Effect": "Allow", "Action": "sqs:SendMessage", "Resource": _arn(dlq)}]),
        f"{p}Schedule": {"Type": "AWS::Scheduler::Schedule", "Properties": {
            "Name": name, "GroupName": {"Ref": "ScheduleGroup"}, "Description": spec.description[:512],
            "ScheduleExpression": spec.schedule, "ScheduleExpressionTimezone": spec.timezone,
            # Off until the operator has filled the secret and says so (SchedulesEnabled), so no job fails,
            # and no alarm fires, before go-live; the same switch pauses every job during a restore.
            "FlexibleTimeWindow": {"Mode": "OFF"}, "State": {"Fn::If": ["SchedulesOn", "ENABLED", "DISABLED"]},
            "Target": {"Arn": {"Ref": target} if spec.machine else {"Ref": f"{fn}.Alias"},
                       "RoleArn": _arn(f"{p}SchedulerRole"),
                       "Input": json.dumps(spec.input, separators=(",", ":")),
                       "RetryPolicy": {"MaximumRetryAttempts": 2,
                                       "MaximumEventAgeInSeconds": spec.max_event_age_seconds},
                       "DeadLetterConfig": {"Arn": _arn(dlq)}}}},
        **lambda_alarms(p, fn, name),
        **dlq_alarm(p, dlq, name),
    }
    if spec.machine:
        resources.update(machine_resources(spec))
    else:
        # SAM puts the asynchronous settings on the alias (the schedule invokes it), after the alias exists.
        function["EventInvokeConfig"] = {
            "MaximumRetryAttempts": spec.retry_attempts, "MaximumEventAgeInSeconds": spec.max_event_age_seconds,
            "DestinationConfig": {"OnFailure": {"Type": "SQS", "Destination": _arn(dlq)}}}
    if spec.packages:
        resources[f"{p}PackagesLayer"] = packages_layer(spec, layer_key or f"{name}-layer.zip", runtime)
    if spec.finish_alarm_hours:
        resources[f"{p}DidNotFinishAlarm"] = alarm(
            f"{name}-did-not-finish",
            f"{name}: no successful run ({spec.success_metric}) in the last {spec.finish_alarm_hours} h. Check its "
            + ("state machine's executions, log group and DLQ; re-run it (docs/operations.md, 'The nightly RFM run')"
               if spec.machine else "log group and DLQ; re-run it (docs/operations.md, 'Re-run a scheduled job')"),
            {"Namespace": NAMESPACE, "MetricName": spec.success_metric, "Dimensions": METRIC_DIMENSIONS,
             "Statistic": "SampleCount"},
            threshold=1, comparison="LessThanThreshold", period=3600, periods=spec.finish_alarm_hours,
            missing="breaching")
        # A job that is not scheduled cannot finish: no notification while the schedules are off.
        resources[f"{p}DidNotFinishAlarm"]["Properties"]["ActionsEnabled"] = {"Fn::If": ["SchedulesOn", True, False]}
    return resources


def queue_consumer_resources(spec: FunctionSpec, function: dict[str, Any]) -> dict[str, Any]:
    """A function run by SQS: its queue (redrive to its DLQ after max_receive_count deliveries), the event source
    mapping reporting batch item failures, and a role that may consume that queue and send to it (a job that
    needs more than one run queues itself again). No schedule and no async configuration: the mapping invokes
    synchronously and SQS retries. The mapping invokes the alias `live` (SAM resolves the Ref to the alias's
    ARN), so a canary's weights apply to the queue's batches too."""
    assert spec.queue is not None
    p, name = spec.logical, spec.name
    fn, role, logs, dlq, queue = f"{p}Function", f"{p}Role", f"{p}LogGroup", f"{p}Dlq", f"{p}Queue"
    statements = lambda_statements(logs, spec.dynamodb, spec.secret)
    statements.insert(-1, {"Sid": "ConsumeItsQueue", "Effect": "Allow", "Resource": _arn(queue), "Action": [
        "sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes", "sqs:ChangeMessageVisibility"]})
    statements.insert(-1, {"Sid": "RequeueUnfinishedJobs", "Effect": "Allow", "Action": "sqs:SendMessage",
                           "Resource": _arn(queue)})
    age = alarm(f"{name}-queue-age", f"{name}: a job has waited in its queue for more than an hour (the consumer "
                "is failing, throttled or disabled); see its log group and DLQ",
                {"Namespace": "AWS/SQS", "MetricName": "ApproximateAgeOfOldestMessage", "Statistic": "Maximum",
                 "Dimensions": [{"Name": "QueueName", "Value": {"Fn::GetAtt": [queue, "QueueName"]}}]},
                threshold=3600)
    return {
        logs: log_group("/aws/lambda/${AWS::StackName}-" + name),
        role: role_resource(f"chaincrm function {name}", "lambda.amazonaws.com", statements),
        fn: {"Type": "AWS::Serverless::Function", "DependsOn": [logs], "Properties": function},
        dlq: {"Type": "AWS::SQS::Queue", **KEEP, "Properties": {
            "MessageRetentionPeriod": 1209600, "SqsManagedSseEnabled": True}},  # 14 days to re-drive
        queue: {"Type": "AWS::SQS::Queue", **KEEP, "Properties": {
            # At least the function's timeout (AWS requires it of a mapping's queue); six times, as AWS advises,
            # so a throttled batch is not redelivered while it is still being retried.
            # Kept as long as its DLQ keeps them: a message's age in the DLQ counts from its first enqueue.
            "VisibilityTimeout": min(43200, 6 * spec.timeout), "MessageRetentionPeriod": 1209600,
            "SqsManagedSseEnabled": True,
            "RedrivePolicy": {"deadLetterTargetArn": _arn(dlq), "maxReceiveCount": spec.queue.max_receive_count}}},
        f"{p}EventSourceMapping": {"Type": "AWS::Lambda::EventSourceMapping", "Properties": {
            "EventSourceArn": _arn(queue), "FunctionName": {"Ref": f"{fn}.Alias"}, "BatchSize": spec.queue.batch_size,
            "FunctionResponseTypes": ["ReportBatchItemFailures"], "Enabled": True}},
        f"{p}QueueAgeAlarm": age,
        **lambda_alarms(p, fn, name),
        **dlq_alarm(p, dlq, name),
    }


def api_sends_to(resources: dict[str, Any], specs: list[FunctionSpec]) -> None:
    """The API may send to the queues that name it a sender: sqs:SendMessage on each, and its URL in the variable
    the settings read."""
    env = resources[API]["Properties"]["Environment"]["Variables"]
    statements = resources["ApiHandlerRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
    for spec in specs:
        if spec.queue and "api" in spec.queue.senders:
            env[spec.queue_env] = {"Ref": f"{spec.logical}Queue"}
            statements.insert(-1, {"Sid": f"SendTo{spec.logical}Queue", "Effect": "Allow", "Action": "sqs:SendMessage",
                                   "Resource": _arn(f"{spec.logical}Queue")})


def alarm_webhook_resources(runtime: str) -> dict[str, Any]:
    """SNS -> a small Lambda -> a WeCom / DingTalk group robot (AlarmWebhookUrl): SNS cannot send SMS in China
    regions, and e-mail alone is read late. Only when the URL is given; the URL lives in a secret, not in the
    function's configuration (anyone holding it can post to the group)."""
    code = ALARM_WEBHOOK_SOURCE.read_text()
    if len(code) >= INLINE_CODE_LIMIT:
        raise ManifestError(f"{ALARM_WEBHOOK_SOURCE.name} is {len(code)} characters: CloudFormation inlines at most "
                            f"{INLINE_CODE_LIMIT}")
    when = {"Condition": "HasAlarmWebhook"}
    statements = [
        {"Sid": "OwnLogGroup", "Effect": "Allow", "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
         "Resource": _arn("AlarmWebhookLogGroup")},
        {"Sid": "WebhookUrl", "Effect": "Allow", "Action": "secretsmanager:GetSecretValue",
         "Resource": {"Ref": "AlarmWebhookSecret"}}]
    errors = alarm("alarm-webhook-errors", "alarm-webhook: an alarm could not be posted to the WeCom/DingTalk robot "
                   "(wrong URL, keyword or signing secret, or the robot is rate limited); see its log group",
                   {"Namespace": "AWS/Lambda", "MetricName": "Errors", "Statistic": "Sum",
                    "Dimensions": [{"Name": "FunctionName", "Value": {"Ref": "AlarmWebhookFunction"}}]}, threshold=1)
    return {
        "AlarmWebhookSecret": {"Type": "AWS::SecretsManager::Secret", **when, "Properties": {
            "Name": {"Fn::Sub": "chaincrm/${Stage}/alarm-webhook"},
            "Description": "The alarm robot's webhook URL and DingTalk signing secret, from the stack's NoEcho "
                           "parameters AlarmWebhookUrl and AlarmWebhookSigningSecret (change them there)",
            "SecretString": {"Fn::Sub": '{"url": "${AlarmWebhookUrl}", "sign": "${AlarmWebhookSigningSecret}"}'}}},
        "AlarmWebhookLogGroup": {**log_group("/aws/lambda/${AWS::StackName}-alarm-webhook"), **when},
        "AlarmWebhookRole": {**role_resource("chaincrm alarm webhook", "lambda.amazonaws.com", statements), **when},
        "AlarmWebhookFunction": {"Type": "AWS::Lambda::Function", **when, "DependsOn": ["AlarmWebhookLogGroup"],
                                 "Properties": {
            "FunctionName": {"Fn::Sub": "${AWS::StackName}-alarm-webhook"},
            "Description": "Posts every alarm of the stack to the WeCom/DingTalk group robot (infra/alarm_webhook.py)",
            "Runtime": runtime, "Architectures": [ARCHITECTURE], "Handler": "index.handler",
            "Code": {"ZipFile": code}, "Role": _arn("AlarmWebhookRole"), "Timeout": 30, "MemorySize": 128,
            "Environment": {"Variables": {"WEBHOOK_SECRET_ID": {"Ref": "AlarmWebhookSecret"},
                                          "CHAINCRM_STAGE": {"Ref": "Stage"}}}}},
        "AlarmWebhookAsyncConfig": {"Type": "AWS::Lambda::EventInvokeConfig", **when, "Properties": {
            "FunctionName": {"Ref": "AlarmWebhookFunction"}, "Qualifier": "$LATEST",
            "MaximumRetryAttempts": 2, "MaximumEventAgeInSeconds": 3600}},
        "AlarmWebhookPermission": {"Type": "AWS::Lambda::Permission", **when, "Properties": {
            "Action": "lambda:InvokeFunction", "FunctionName": {"Ref": "AlarmWebhookFunction"},
            "Principal": "sns.amazonaws.com", "SourceArn": {"Ref": "AlarmTopic"}}},
        "AlarmWebhookSubscription": {"Type": "AWS::SNS::Subscription", **when, "DependsOn": ["AlarmWebhookPermission"],
                                     "Properties": {"TopicArn": {"Ref": "AlarmTopic"}, "Protocol": "lambda",
                                                    "Endpoint": _arn("AlarmWebhookFunction")}},
        "AlarmWebhookErrorsAlarm": {**errors, **when},
    }


def table_throttle_alarms(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Throttles of the table and every index. An alarm's metric math takes at most 10 metrics (the sum and
    a read and a write series per source): past four sources the rest go to a second alarm, and so on."""
    sources: list[tuple[str, list[dict[str, Any]]]] = [("table", [{"Name": "TableName", "Value": {"Ref": "Table"}}])]
    for index in sorted(table_indexes(template)):
        sources.append((index, [{"Name": "TableName", "Value": {"Ref": "Table"}},
                                {"Name": "GlobalSecondaryIndexName", "Value": index}]))
    per_alarm = (10 - 1) // 2
    alarms: dict[str, dict[str, Any]] = {}
    for n, start in enumerate(range(0, len(sources), per_alarm)):
        group = sources[start:start + per_alarm]
        names = ", ".join(name for name, _ in group)
        metrics: list[dict[str, Any]] = [{"Id": "throttles", "Expression": "SUM(FILL(METRICS(), 0))",
                                          "Label": f"throttled requests ({names})", "ReturnData": True}]
        for i, (_, dims) in enumerate(group):
            for kind in ("Read", "Write"):
                metrics.append({"Id": f"{kind.lower()}{i}", "ReturnData": False, "MetricStat": {
                    "Metric": {"Namespace": "AWS/DynamoDB", "MetricName": f"{kind}ThrottleEvents",
                               "Dimensions": dims},
                    "Period": 300, "Stat": "Sum"}})
        suffix = f"-{n + 1}" if n else ""
        alarms[f"TableThrottleAlarm{n + 1 if n else ''}"] = {"Type": "AWS::CloudWatch::Alarm", "Properties": {
            "AlarmName": {"Fn::Sub": "${AWS::StackName}-dynamodb-throttles" + suffix},
            "AlarmDescription": f"DynamoDB throttled requests on {names} (on-demand: traffic doubled past the "
                                "previous peak, or a hot partition)",
            "Metrics": metrics, "EvaluationPeriods": 1, "DatapointsToAlarm": 1, "Threshold": 1,
            "ComparisonOperator": "GreaterThanOrEqualToThreshold", "TreatMissingData": "notBreaching",
            **ALARM_ACTIONS}}
    return alarms


def dashboard(template: dict[str, Any], api: ApiSpec, specs: list[FunctionSpec], api_stage: str,
              alarm_names: list[str]) -> dict[str, Any]:
    """The dashboard body is JSON inside Fn::Sub: ${Logical} and ${AWS::...} are the only placeholders."""
    region = "${AWS::Region}"
    functions = [("api", "${APIHandler}"), *((s.name, "${" + s.logical + "Function}") for s in specs)]
    api_dims = ["ApiName", "${AWS::StackName}", "Stage", api_stage]

    def graph(title: str, metrics: list[list[Any]], x: int, y: int, w: int = 12, h: int = 6, stat: str = "Sum",
              period: int = 300) -> dict[str, Any]:
        return {"type": "metric", "x": x, "y": y, "width": w, "height": h, "properties": {
            "title": title, "region": region, "view": "timeSeries", "stacked": False, "stat": stat,
            "period": period, "metrics": metrics}}

    business = [[NAMESPACE, m, "service", SERVICE, "stage", "${Stage}", {"label": m}]
                for m in dashboard_metrics(api, specs)]
    errors = [["AWS/Lambda", metric, "FunctionName", fn, {"label": f"{label} {metric.lower()}"}]
              for label, fn in functions for metric in ("Errors", "Throttles")]
    durations = [["AWS/Lambda", "Duration", "FunctionName", fn, {"stat": stat, "label": f"{label} {stat}"}]
                 for label, fn in functions for stat in ("p50", "p99")]
    table_dims = [["TableName", "${Table}"]] + [["TableName", "${Table}", "GlobalSecondaryIndexName", i]
                                                 for i in sorted(table_indexes(template))]
    throttles = [["AWS/DynamoDB", f"{kind}ThrottleEvents", *dims] for dims in table_dims for kind in ("Read", "Write")]
    capacity = [["AWS/DynamoDB", "ConsumedReadCapacityUnits", "TableName", "${Table}"],
                ["AWS/DynamoDB", "ConsumedWriteCapacityUnits", "TableName", "${Table}"],
                ["AWS/DynamoDB", "TransactionConflict", "TableName", "${Table}"]]
    dlqs = [["AWS/SQS", "ApproximateNumberOfMessagesVisible", "QueueName", "${" + s.logical + "Dlq.QueueName}",
             {"label": f"{s.name} DLQ"}] for s in specs]
    error_logs = " | ".join([
        " | ".join(["SOURCE '${ApiHandlerLogGroup}'", *("SOURCE '${" + s.logical + "LogGroup}'" for s in specs)]),
        "fields @timestamp, service, level, message, correlation_id, function_request_id, @log",
        "filter level = 'ERROR'", "sort @timestamp desc", "limit 50"])
    widgets = [
        {"type": "text", "x": 0, "y": 0, "width": 24, "height": 2, "properties": {"markdown": (
            "## chaincrm ${Stage} (${AWS::StackName})\nBusiness events, then Lambda, API, DynamoDB and dead-letter "
            "queues. Runbook: docs/operations.md (deploy, roll back, rotate keys, replay a DLQ, re-run a job, "
            "restore the table). Find a request: Logs Insights, saved query *${AWS::StackName}/request-by-id*.")}},
        {"type": "alarm", "x": 0, "y": 2, "width": 24, "height": 3, "properties": {
            "title": "Alarms", "alarms": ["arn:${AWS::Partition}:cloudwatch:${AWS::Region}:${AWS::AccountId}:alarm:"
                                          "${AWS::StackName}-" + n for n in alarm_names]}},
        graph("Business events (sum per 5 min)", business, 0, 5, w=24),
        graph("Lambda errors and throttles", errors, 0, 11),
        graph("Lambda duration (ms)", durations, 12, 11, stat="p99"),
        graph("API requests and errors", [["AWS/ApiGateway", "Count", *api_dims],
                                          ["AWS/ApiGateway", "4XXError", *api_dims],
                                          ["AWS/ApiGateway", "5XXError", *api_dims]], 0, 17),
        graph("API latency (ms)", [["AWS/ApiGateway", "Latency", *api_dims, {"stat": "p50"}],
                                   ["AWS/ApiGateway", "Latency", *api_dims, {"stat": "p99"}],
                                   ["AWS/ApiGateway", "IntegrationLatency", *api_dims, {"stat": "p99"}]], 12, 17,
              stat="p99"),
        graph("DynamoDB throttled requests", throttles, 0, 23),
        graph("DynamoDB capacity and transaction conflicts", capacity, 12, 23),
        graph("Dead-letter queues (messages waiting)", dlqs, 0, 29, stat="Maximum"),
        {"type": "log", "x": 12, "y": 29, "width": 12, "height": 6, "properties": {
            "title": "Latest ERROR log lines", "region": region, "view": "table", "query": error_logs}},
    ]
    machines = [["AWS/States", metric, "StateMachineArn", "${" + s.logical + "StateMachine}",
                 {"label": f"{s.name} {metric.removeprefix('Executions').lower()}"}]
                for s in specs if s.machine
                for metric in ("ExecutionsStarted", "ExecutionsSucceeded", "ExecutionsFailed", "ExecutionsTimedOut")]
    if machines:
        widgets.append(graph("State machine executions (sum per hour)", machines, 0, 35, w=24, period=3600))
    if not dlqs:
        widgets = [w for w in widgets if not w.get("properties", {}).get("title", "").startswith("Dead-letter")]
    return {"Type": "AWS::CloudWatch::Dashboard", "Properties": {
        "DashboardName": {"Ref": "AWS::StackName"},
        "DashboardBody": {"Fn::Sub": json.dumps({"widgets": widgets}, ensure_ascii=False)}}}


def log_queries(specs: list[FunctionSpec]) -> dict[str, Any]:
    groups = [{"Ref": "ApiHandlerLogGroup"}, {"Ref": "ApiAccessLogGroup"},
              *({"Ref": f"{s.logical}LogGroup"} for s in specs)]
    return {
        "RequestByIdQuery": {"Type": "AWS::Logs::QueryDefinition", "Properties": {
            "Name": {"Fn::Sub": "${AWS::StackName}/request-by-id"}, "LogGroupNames": groups,
            "QueryString": "fields @timestamp, @log, level, message, status, route, errorMessage\n"
                           "| filter correlation_id = 'PASTE-X-Request-Id' or requestId = 'PASTE-X-Request-Id'\n"
                           "| sort @timestamp asc"}},
        "ErrorsQuery": {"Type": "AWS::Logs::QueryDefinition", "Properties": {
            "Name": {"Fn::Sub": "${AWS::StackName}/errors"}, "LogGroupNames": groups,
            "QueryString": "fields @timestamp, @log, level, message, correlation_id, function_request_id, status\n"
                           "| filter level = 'ERROR' or status like /^5/\n| sort @timestamp desc\n| limit 100"}},
    }


# ---- go-live, part 2 (issue 17): keys, WAF, domain, canaries, backups, CloudTrail alarms, budget -----------------
def _break_glass_exempt() -> dict[str, Any]:
    """A deny statement's Condition: everyone but the break-glass role when one is named, else everyone."""
    return {"Fn::If": ["HasBreakGlass", {"ArnNotEquals": {"aws:PrincipalArn": {"Ref": "KeyBreakGlassRoleArn"}}},
                       NO_VALUE]}


def key_policy(*extra: dict[str, Any]) -> dict[str, Any]:
    """A protected key's policy: the account's IAM policies decide (as for any key), but disabling the key or
    scheduling its deletion is denied to everyone except the break-glass role. kms:PutKeyPolicy is not denied:
    CloudFormation updates this very policy with the deployer's rights, and KMS refuses a policy its author could
    not change again (lockout check), so denying it would freeze the stack's own key policies. Changing the policy
    is the break-glass path instead (a stack update naming KeyBreakGlassRoleArn), and it raises the key alarm."""
    return {"Version": "2012-10-17", "Statement": [
        {"Sid": "AccountAdmin", "Effect": "Allow",
         "Principal": {"AWS": {"Fn::Sub": "arn:${AWS::Partition}:iam::${AWS::AccountId}:root"}},
         "Action": "kms:*", "Resource": "*"},
        *extra,
        {"Sid": "NobodyButBreakGlassDisablesOrDeletesTheKey", "Effect": "Deny", "Principal": {"AWS": "*"},
         "Action": KEY_DESTRUCTIVE_ACTIONS, "Resource": "*", "Condition": _break_glass_exempt()}]}


def protected_key(description: str, *extra: dict[str, Any]) -> dict[str, Any]:
    return {"Type": "AWS::KMS::Key", **KEY_RETAIN, "Properties": {
        "Description": description, "EnableKeyRotation": True, "PendingWindowInDays": 30,
        "KeyPolicy": key_policy(*extra)}}


def log_key() -> dict[str, Any]:
    """The key of every log group of the stack. CloudWatch Logs uses it for this stack's groups only (the
    encryption context names the log group)."""
    groups = [{"Fn::Sub": "arn:${AWS::Partition}:logs:${AWS::Region}:${AWS::AccountId}:log-group:" + name}
              for name in ("/aws/lambda/${AWS::StackName}-*", "/chaincrm/${AWS::StackName}/*")]
    logs = {"Service": {"Fn::Sub": "logs.${AWS::Region}.${AWS::URLSuffix}"}}
    return protected_key(
        "Encrypts the chaincrm stack's CloudWatch Logs groups (API, functions, access log, trail)",
        {"Sid": "CloudWatchLogsForThisStacksGroups", "Effect": "Allow", "Principal": logs,
         "Action": ["kms:Encrypt", "kms:Decrypt", "kms:ReEncryptFrom", "kms:ReEncryptTo", "kms:GenerateDataKey",
                    "kms:GenerateDataKeyWithoutPlaintext"], "Resource": "*",
         "Condition": {"ArnLike": {"kms:EncryptionContext:aws:logs:arn": groups}}},
        {"Sid": "CloudWatchLogsDescribesIt", "Effect": "Allow", "Principal": logs, "Action": "kms:DescribeKey",
         "Resource": "*", "Condition": {"StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}}})


def codedeploy_role() -> dict[str, Any]:
    """CodeDeploy moves the aliases of this stack's functions and reads their alarms: what AWS's
    AWSCodeDeployRoleForLambda grants on every function, here on ours only (SAM's own role would also name that
    policy with a literal partition)."""
    return role_resource("CodeDeploy shifting the chaincrm functions' live aliases (canary) and rolling them back",
                         "codedeploy.amazonaws.com", [
        {"Sid": "ThisStacksAliases", "Effect": "Allow",
         "Action": ["lambda:GetAlias", "lambda:UpdateAlias", "lambda:GetProvisionedConcurrencyConfig"],
         "Resource": {"Fn::Sub": "arn:${AWS::Partition}:lambda:${AWS::Region}:${AWS::AccountId}:function:"
                                 "${AWS::StackName}-*"}},
        {"Sid": "DescribeAlarmsIsGrantedOnStarOnly", "Effect": "Allow", "Action": "cloudwatch:DescribeAlarms",
         "Resource": "*"}])


WAF_THROTTLED_BODY = json.dumps({"code": "throttled", "message": "too many requests from this address; retry later",
                                 "details": {}}, separators=(",", ":"))


def waf_resources(api_stage: str) -> dict[str, Any]:
    """A regional web ACL on the API stage: per-IP rate-based rules, a tight one scoped down to POST /auth/wechat
    (the only anonymous route that does work: a WeChat code2session call and a token) and a generous one for
    everything. Over its limit an address gets our 429 shape; WafMode=count only counts."""
    when = {"Condition": "WafOn"}
    action = {"Fn::If": ["WafCounts", {"Count": {}}, {"Block": {"CustomResponse": {
        "ResponseCode": 429, "CustomResponseBodyKey": "throttled"}}}]}

    def rule(name: str, priority: int, limit: str, scope: dict[str, Any] | None = None) -> dict[str, Any]:
        rate: dict[str, Any] = {"Limit": {"Ref": limit}, "AggregateKeyType": "IP"}
        if scope:
            rate["ScopeDownStatement"] = scope
        return {"Name": name, "Priority": priority, "Statement": {"RateBasedStatement": rate}, "Action": action,
                "VisibilityConfig": {"SampledRequestsEnabled": True, "CloudWatchMetricsEnabled": True,
                                     "MetricName": name}}

    # The path ends with the route whether the request came through the custom domain (/auth/wechat) or the
    # stage URL (/api/auth/wechat).
    auth = {"AndStatement": {"Statements": [
        {"ByteMatchStatement": {"FieldToMatch": {"Method": {}}, "PositionalConstraint": "EXACTLY",
                                "SearchString": "POST", "TextTransformations": [{"Priority": 0, "Type": "NONE"}]}},
        {"ByteMatchStatement": {"FieldToMatch": {"UriPath": {}}, "PositionalConstraint": "ENDS_WITH",
                                "SearchString": "/auth/wechat",
                                "TextTransformations": [{"Priority": 0, "Type": "URL_DECODE"}]}}]}}
    blocked = alarm("waf-blocked", "waf: the web ACL blocked 100 or more requests in 5 minutes (an address over "
                    "its rate limit: an attack, a broken client retrying, or many members behind one carrier NAT). "
                    "WAF console -> the web ACL -> Sampled requests; raise WafRateLimit if they are legitimate",
                    {"Namespace": "AWS/WAFV2", "MetricName": "BlockedRequests", "Statistic": "Sum",
                     "Dimensions": [{"Name": "WebACL", "Value": {"Ref": "AWS::StackName"}},
                                    {"Name": "Region", "Value": {"Ref": "AWS::Region"}},
                                    {"Name": "Rule", "Value": "ALL"}]}, threshold=100)
    return {
        "WebAcl": {"Type": "AWS::WAFv2::WebACL", **when, "Properties": {
            "Name": {"Ref": "AWS::StackName"}, "Scope": "REGIONAL",
            "Description": "chaincrm API - per-IP rate limits from WafRateLimit and WafAuthRateLimit",
            "DefaultAction": {"Allow": {}},
            "CustomResponseBodies": {"throttled": {"ContentType": "APPLICATION_JSON", "Content": WAF_THROTTLED_BODY}},
            "Rules": [rule("auth-wechat-per-ip", 0, "WafAuthRateLimit", auth),
                      rule("per-ip", 1, "WafRateLimit")],
            "VisibilityConfig": {"SampledRequestsEnabled": True, "CloudWatchMetricsEnabled": True,
                                 "MetricName": "chaincrm-api"}}},
        "WebAclAssociation": {"Type": "AWS::WAFv2::WebACLAssociation", **when, "Properties": {
            # ${RestAPI.Stage}: SAM's stage resource, so the association waits for the stage to exist
            "ResourceArn": {"Fn::Sub": "arn:${AWS::Partition}:apigateway:${AWS::Region}::/restapis/${RestAPI}/stages/"
                                       "${RestAPI.Stage}"},
            "WebACLArn": _arn("WebAcl")}},
        "WafBlockedAlarm": {**blocked, **when},
    }


def domain_resources() -> dict[str, Any]:
    """The API's own domain (HasApiDomain): regional, TLS 1.2, the stage at its root. The DNS record (CNAME to the
    output ApiDomainTarget) is made at the brand's DNS provider."""
    when = {"Condition": "HasApiDomain"}
    return {
        "ApiDomain": {"Type": "AWS::ApiGateway::DomainName", **when, "Properties": {
            "DomainName": {"Ref": "ApiDomainName"}, "RegionalCertificateArn": {"Ref": "ApiCertificateArn"},
            "EndpointConfiguration": {"Types": ["REGIONAL"]}, "SecurityPolicy": "TLS_1_2"}},
        "ApiDomainMapping": {"Type": "AWS::ApiGateway::BasePathMapping", **when, "Properties": {
            "DomainName": {"Ref": "ApiDomain"}, "RestApiId": {"Ref": REST_API}, "Stage": {"Ref": f"{REST_API}.Stage"}}},
    }


def backup_resources() -> dict[str, Any]:
    """AWS Backup beyond PITR's 35 days: a daily backup kept 35 days and a monthly one kept 12 months (cold after a
    month where the partition offers cold storage for DynamoDB), each copied to a second vault (or to a vault in
    another region: BackupCopyVaultArn). Both vaults use the stack's own backup key, refuse deleting or shortening
    recovery points to everyone but the break-glass role, and are kept when the stack goes."""
    copy_to = {"Fn::If": ["HasCrossRegionBackupCopy", {"Ref": "BackupCopyVaultArn"},
                          {"Fn::GetAtt": ["BackupCopyVault", "BackupVaultArn"]}]}
    daily = {"DeleteAfterDays": 35}
    # Cold storage needs DeleteAfterDays >= MoveToColdStorageAfterDays + 90; not offered in the China regions.
    monthly = {"MoveToColdStorageAfterDays": {"Fn::If": [IN_CHINA, NO_VALUE, 30]}, "DeleteAfterDays": 365}

    def vault(name: str) -> dict[str, Any]:
        return {"Type": "AWS::Backup::BackupVault", **KEEP, "Properties": {
            "BackupVaultName": {"Fn::Sub": name}, "EncryptionKeyArn": _arn("BackupKey"),
            "AccessPolicy": {"Version": "2012-10-17", "Statement": [{
                "Sid": "NobodyButBreakGlassDeletesOrShortensRecoveryPoints", "Effect": "Deny",
                "Principal": {"AWS": "*"}, "Resource": "*",
                "Action": ["backup:DeleteRecoveryPoint", "backup:UpdateRecoveryPointLifecycle"],
                "Condition": _break_glass_exempt()}]}}}

    def rule(name: str, cron: str, lifecycle: dict[str, Any]) -> dict[str, Any]:
        return {"RuleName": name, "TargetBackupVault": {"Ref": "BackupVault"}, "ScheduleExpression": cron,
                "ScheduleExpressionTimezone": BACKUP_TIMEZONE, "StartWindowMinutes": 60,
                "CompletionWindowMinutes": 600, "Lifecycle": lifecycle,
                "CopyActions": [{"DestinationBackupVaultArn": copy_to, "Lifecycle": lifecycle}]}

    kms = ["kms:DescribeKey", "kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey",
           "kms:GenerateDataKeyWithoutPlaintext", "kms:ReEncryptFrom", "kms:ReEncryptTo"]
    role = role_resource("AWS Backup backing up and restoring the chaincrm table", "backup.amazonaws.com", [
        {"Sid": "TableAndBackupKeys", "Effect": "Allow", "Action": kms,
         "Resource": [_arn("TableKey"), _arn("BackupKey")]},
        {"Sid": "GrantsForAwsResourcesOnly", "Effect": "Allow", "Action": "kms:CreateGrant",
         "Resource": [_arn("TableKey"), _arn("BackupKey")],
         "Condition": {"Bool": {"kms:GrantIsForAWSResource": "true"}}}])
    role["Properties"]["ManagedPolicyArns"] = [
        {"Fn::Sub": "arn:${AWS::Partition}:iam::aws:policy/service-role/AWSBackupServiceRolePolicyFor" + what}
        for what in ("Backup", "Restores")]
    return {
        "BackupKey": protected_key("Encrypts the chaincrm table's AWS Backup recovery points (both vaults)"),
        "BackupVault": vault("${AWS::StackName}"),
        "BackupCopyVault": vault("${AWS::StackName}-copy"),
        "BackupRole": role,
        "BackupPlan": {"Type": "AWS::Backup::BackupPlan", "Properties": {"BackupPlan": {
            "BackupPlanName": {"Ref": "AWS::StackName"},
            "BackupPlanRule": [rule("daily-35-days", "cron(30 4 * * ? *)", daily),
                               rule("monthly-12-months", "cron(30 4 1 * ? *)", monthly)]}}},
        "BackupSelection": {"Type": "AWS::Backup::BackupSelection", "Properties": {
            "BackupPlanId": {"Ref": "BackupPlan"}, "BackupSelection": {
                "SelectionName": "table", "IamRoleArn": _arn("BackupRole"), "Resources": [_arn("Table")]}}},
    }


# What the CloudTrail alarms watch: (alarm, what it means, event names, how the event names our resources).
CLOUDTRAIL_WATCHES: tuple[tuple[str, str, list[str], list[tuple[str, str]]], ...] = (
    ("key-changed", "a KMS key of the stack (table, logs, backups) was disabled, scheduled for deletion, had its "
     "policy changed or a grant revoked", ["DisableKey", "ScheduleKeyDeletion", "PutKeyPolicy", "RevokeGrant",
                                           "DisableKeyRotation", "CancelKeyDeletion", "EnableKey"],
     [("resources[0].ARN", "${" + k + ".Arn}") for k in PROTECTED_KEYS]),
    ("secret-changed", "a secret of the stage (the key bundle, the robot's URL) was written, deleted, restored, "
     "rotated or had its policy changed (expected after the go-live's key step or a webhook change)",
     ["PutSecretValue", "UpdateSecret", "DeleteSecret", "RestoreSecret", "RotateSecret", "UpdateSecretVersionStage",
      "PutResourcePolicy", "DeleteResourcePolicy"],
     [("requestParameters.secretId", "chaincrm/${Stage}*"),
      ("requestParameters.secretId", "arn:${AWS::Partition}:secretsmanager:${AWS::Region}:${AWS::AccountId}:"
                                      "secret:chaincrm/${Stage}*")]),
    ("table-changed", "the table was deleted or reconfigured (deletion protection, PITR, stream, TTL, resource "
     "policy) or a backup of it deleted (expected during a deploy that changes the table)",
     ["DeleteTable", "UpdateTable", "UpdateContinuousBackups", "DeleteBackup", "UpdateTimeToLive",
      "PutResourcePolicy", "DeleteResourcePolicy", "DisableKinesisStreamingDestination"],
     [("requestParameters.tableName", "chaincrm-${Stage}"), ("requestParameters.tableName", "${Table.Arn}"),
      ("requestParameters.backupArn", "${Table.Arn}/backup/*"), ("requestParameters.resourceArn", "${Table.Arn}*")]),
    ("backups-changed", "the table's backup plan, selection or vaults were changed or deleted, or a recovery "
     "point deleted", ["DeleteBackupPlan", "UpdateBackupPlan", "DeleteBackupSelection", "DeleteBackupVault",
                       "DeleteRecoveryPoint", "UpdateRecoveryPointLifecycle", "PutBackupVaultAccessPolicy",
                       "DeleteBackupVaultAccessPolicy", "PutBackupVaultLockConfiguration"],
     [("requestParameters.backupVaultName", "${AWS::StackName}*"),
      ("requestParameters.backupPlanId", "${BackupPlan}")]),
)


def cloudtrail_filter_pattern(events: list[str], matches: list[tuple[str, str]]) -> str:
    """A CloudWatch Logs JSON filter: one of the event names, about one of our resources (by name or ARN)."""
    names = " || ".join(f'($.eventName = "{event}")' for event in events)
    about = " || ".join(f'($.{field} = "{value}")' for field, value in matches)
    return "{ (" + names + ") && (" + about + ") }"


def cloudtrail_resources() -> dict[str, Any]:
    """Alarms on CloudTrail management events (WatchCloudTrail): metric filters on the account's trail log group
    (CloudTrailLogGroupName), or on the stack's own trail (CreateTrail: a bucket, a log group, a role)."""
    resources: dict[str, Any] = {}
    group = {"Fn::If": ["HasTrailLogGroup", {"Ref": "CloudTrailLogGroupName"}, {"Ref": "TrailLogGroup"}]}
    for name, meaning, events, matches in CLOUDTRAIL_WATCHES:
        logical = "".join(part.capitalize() for part in name.split("-"))
        metric = {"Fn::Sub": "${AWS::StackName}-" + name}
        resources[f"CloudTrail{logical}Filter"] = {"Type": "AWS::Logs::MetricFilter", "Condition": "WatchCloudTrail",
                                                   "Properties": {
            "LogGroupName": group, "FilterPattern": {"Fn::Sub": cloudtrail_filter_pattern(events, matches)},
            "MetricTransformations": [{"MetricNamespace": f"{NAMESPACE}/CloudTrail", "MetricName": metric,
                                       "MetricValue": "1"}]}}
        resources[f"CloudTrail{logical}Alarm"] = {**alarm(
            f"cloudtrail-{name}", f"cloudtrail: {meaning}. CloudTrail -> Event history, filter by event name: who, "
            "from where; if nobody planned it, treat it as an incident (docs/operations.md, 'CloudTrail alarms')",
            {"Namespace": f"{NAMESPACE}/CloudTrail", "MetricName": metric, "Statistic": "Sum"}, threshold=1),
            "Condition": "WatchCloudTrail"}
    when = {"Condition": "CreateTrailHere"}
    trail_arn = "arn:${AWS::Partition}:cloudtrail:${AWS::Region}:${AWS::AccountId}:trail/${AWS::StackName}"
    resources.update({
        "TrailBucket": {"Type": "AWS::S3::Bucket", **when, **KEEP, "Properties": {
            "BucketEncryption": {"ServerSideEncryptionConfiguration": [
                {"ServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]},
            "PublicAccessBlockConfiguration": {"BlockPublicAcls": True, "BlockPublicPolicy": True,
                                               "IgnorePublicAcls": True, "RestrictPublicBuckets": True},
            "OwnershipControls": {"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]},
            "VersioningConfiguration": {"Status": "Enabled"},
            "LifecycleConfiguration": {"Rules": [{"Id": "keep-a-year", "Status": "Enabled", "ExpirationInDays": 400,
                                                  "NoncurrentVersionExpiration": {"NoncurrentDays": 30}}]}}},
        "TrailBucketPolicy": {"Type": "AWS::S3::BucketPolicy", **when, "Properties": {
            "Bucket": {"Ref": "TrailBucket"}, "PolicyDocument": {"Version": "2012-10-17", "Statement": [
                {"Sid": "CloudTrailChecksTheAcl", "Effect": "Allow",
                 "Principal": {"Service": "cloudtrail.amazonaws.com"}, "Action": "s3:GetBucketAcl",
                 "Resource": _arn("TrailBucket"),
                 "Condition": {"StringEquals": {"aws:SourceArn": {"Fn::Sub": trail_arn}}}},
                {"Sid": "CloudTrailWritesThisAccountsLogs", "Effect": "Allow",
                 "Principal": {"Service": "cloudtrail.amazonaws.com"}, "Action": "s3:PutObject",
                 "Resource": {"Fn::Sub": "${TrailBucket.Arn}/AWSLogs/${AWS::AccountId}/*"},
                 "Condition": {"StringEquals": {"aws:SourceArn": {"Fn::Sub": trail_arn}}}},
                {"Sid": "TlsOnly", "Effect": "Deny", "Principal": "*", "Action": "s3:*",
                 "Resource": [_arn("TrailBucket"), {"Fn::Sub": "${TrailBucket.Arn}/*"}],
                 "Condition": {"Bool": {"aws:SecureTransport": "false"}}}]}}},
        "TrailLogGroup": {**log_group("/chaincrm/${AWS::StackName}/cloudtrail"), **when},
        "TrailRole": {**role_resource("CloudTrail delivering the chaincrm trail to its log group",
                                      "cloudtrail.amazonaws.com", [
            {"Sid": "OwnLogGroup", "Effect": "Allow", "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
             "Resource": _arn("TrailLogGroup")}]), **when},
        "Trail": {"Type": "AWS::CloudTrail::Trail", **when, "DependsOn": ["TrailBucketPolicy"], "Properties": {
            "TrailName": {"Ref": "AWS::StackName"}, "IsLogging": True, "S3BucketName": {"Ref": "TrailBucket"},
            "IsMultiRegionTrail": False, "IncludeGlobalServiceEvents": False, "EnableLogFileValidation": True,
            "CloudWatchLogsLogGroupArn": _arn("TrailLogGroup"), "CloudWatchLogsRoleArn": _arn("TrailRole")}},
    })
    return resources


def _region_not_in(regions: tuple[str, ...]) -> dict[str, Any]:
    """Fn::Not of an Fn::Or over the regions (an Fn::Or takes at most 10 conditions: nested in tens)."""
    equals: list[Any] = [{"Fn::Equals": [{"Ref": "AWS::Region"}, r]} for r in regions]
    while len(equals) > 10:
        equals = [{"Fn::Or": equals[i:i + 10]} if len(equals[i:i + 10]) > 1 else equals[i]
                  for i in range(0, len(equals), 10)]
    return {"Fn::Not": [{"Fn::Or": equals} if len(equals) > 1 else equals[0]]}


def budget_resources() -> dict[str, Any]:
    subscribers = {"Fn::If": ["HasAlarmEmail",
                              [{"SubscriptionType": "SNS", "Address": {"Ref": "AlarmTopic"}},
                               {"SubscriptionType": "EMAIL", "Address": {"Ref": "AlarmEmail"}}],
                              [{"SubscriptionType": "SNS", "Address": {"Ref": "AlarmTopic"}}]]}

    def notify(kind: str, percent: int) -> dict[str, Any]:
        return {"Notification": {"NotificationType": kind, "ComparisonOperator": "GREATER_THAN",
                                 "Threshold": percent, "ThresholdType": "PERCENTAGE"}, "Subscribers": subscribers}

    return {"MonthlyCostBudget": {"Type": "AWS::Budgets::Budget", "Condition": "CreateBudget", "Properties": {
        "Budget": {"BudgetName": {"Fn::Sub": "${AWS::StackName}-monthly"}, "BudgetType": "COST",
                   "TimeUnit": "MONTHLY",
                   "BudgetLimit": {"Amount": {"Ref": "MonthlyBudget"},
                                   "Unit": {"Fn::If": [IN_CHINA, "CNY", "USD"]}}},
        "NotificationsWithSubscribers": [notify("ACTUAL", 80), notify("FORECASTED", 100)]}}}


def go_live_resources(template: dict[str, Any], api_stage: str) -> dict[str, Any]:
    """Everything of the go-live's second part that is not a change to an existing resource."""
    conditions = template["Conditions"]
    conditions["BudgetsOfferedHere"] = _region_not_in(BUDGETS_UNSUPPORTED_REGIONS)
    conditions["CreateBudget"] = {"Fn::And": [{"Condition": "HasMonthlyBudget"}, {"Condition": "BudgetsOfferedHere"}]}
    key = template["Resources"]["TableKey"]
    key.update(KEY_RETAIN)
    key["Properties"]["PendingWindowInDays"] = 30
    key["Properties"]["KeyPolicy"] = key_policy()
    return {"LogKey": log_key(), "LogKeyAlias": {"Type": "AWS::KMS::Alias", "Properties": {
                "AliasName": {"Fn::Sub": "alias/chaincrm-${Stage}-logs"}, "TargetKeyId": {"Ref": "LogKey"}}},
            "CodeDeployRole": codedeploy_role(),
            **waf_resources(api_stage), **domain_resources(), **backup_resources(), **cloudtrail_resources(),
            **budget_resources()}


def finalize(template: dict[str, Any]) -> dict[str, Any]:
    """After Chalice: API Gateway invokes the API's alias, not $LATEST (the integration URI of every route and
    the invoke permission); each aliased function's version digest; EndpointURL is the domain's."""
    resources = template["Resources"]
    paths = resources[REST_API]["Properties"]["DefinitionBody"]["paths"]
    rewired = 0
    for operations in paths.values():
        for operation in operations.values():
            integration = operation.get("x-amazon-apigateway-integration") if isinstance(operation, dict) else None
            if not integration:
                continue
            uri = integration["uri"].get("Fn::Sub")
            if not isinstance(uri, str) or "${" + API + ".Arn}" not in uri:
                raise ManifestError(f"unexpected integration URI {uri!r}: it must invoke {API}")
            # The alias's ARN (SAM resolves APIHandler.Alias), given as a variable: cfn-lint knows no .Alias in a Sub
            integration["uri"] = {"Fn::Sub": [uri.replace("${" + API + ".Arn}", "${Invoked}"),
                                              {"Invoked": {"Ref": f"{API}.Alias"}}]}
            rewired += 1
    if not rewired:
        raise ManifestError("no route integration found to point at the API's alias")
    permission = resources[f"{API}InvokePermission"]["Properties"]
    if permission["FunctionName"] != {"Ref": API}:
        raise ManifestError(f"unexpected {API}InvokePermission: {permission['FunctionName']!r}")
    permission["FunctionName"] = {"Ref": f"{API}.Alias"}
    for logical, resource in resources.items():
        if resource.get("Properties", {}).get("AutoPublishAlias"):
            resource["Properties"]["AutoPublishCodeSha256"] = version_digest(resources, logical)
    stage_url = {"Fn::Sub": "https://${" + REST_API + "}.execute-api.${AWS::Region}.${AWS::URLSuffix}/"
                            + chalice_api_stage() + "/"}
    template["Outputs"]["EndpointURL"] = {
        "Description": "The API's base URL: its own domain when ApiDomainName is given (the default URL is off then)",
        "Value": {"Fn::If": ["HasApiDomain", {"Fn::Sub": "https://${ApiDomainName}/"}, stage_url]}}
    return template


def build_merge_template(functions_key: str, runtime: str, infra: Path = INFRA, root: Path = ROOT,
                         manifest: dict[str, Any] | None = None, api_manifest: dict[str, Any] | None = None,
                         layer_keys: dict[str, str] | None = None) -> dict[str, Any]:
    """The template handed to `chalice package --merge-template`: Chalice deep-merges it into its own.
    layer_keys: the zip of each function's own packages layer, by function name (infra/package.py builds them)."""
    template = copy.deepcopy(base_template(infra))
    specs = load_functions(manifest, infra, root, template)
    api = load_api(api_manifest, infra, template)
    api_stage = chalice_api_stage(root)
    resources = template["Resources"]
    resources.update(api_resources(api, api_stage))
    api_sends_to(resources, specs)
    if any(s.schedule for s in specs):
        resources["ScheduleGroup"] = {"Type": "AWS::Scheduler::ScheduleGroup",
                                      "Properties": {"Name": {"Ref": "AWS::StackName"}}}
    outputs = template.setdefault("Outputs", {})
    for spec in specs:
        resources.update(function_resources(spec, functions_key, runtime, (layer_keys or {}).get(spec.name)))
        outputs[f"{spec.logical}FunctionName"] = {"Description": f"Lambda of {spec.name} (run it: Test tab)",
                                                  "Value": {"Ref": f"{spec.logical}Function"}}
        if spec.machine:
            template["Parameters"][f"{spec.logical}Concurrency"] = machine_parameter(spec)
            outputs[f"{spec.logical}StateMachineArn"] = {
                "Description": f"The state machine running {spec.name} (re-run a night: start an execution with "
                               '{"date": "YYYY-MM-DD"})', "Value": {"Ref": f"{spec.logical}StateMachine"}}
        outputs[f"{spec.logical}DlqUrl"] = {"Description": f"Dead-letter queue of {spec.name}",
                                            "Value": {"Ref": f"{spec.logical}Dlq"}}
        if spec.queue:
            outputs[f"{spec.logical}QueueUrl"] = {"Description": f"The queue {spec.name} consumes (re-drive its DLQ "
                                                                 "here)", "Value": {"Ref": f"{spec.logical}Queue"}}
    resources.update(go_live_resources(template, api_stage))
    outputs["ApiDomainTarget"] = {"Condition": "HasApiDomain", "Description": "Point ApiDomainName here (CNAME at "
                                  "the DNS provider)", "Value": {"Fn::GetAtt": ["ApiDomain", "RegionalDomainName"]}}
    outputs["BackupVaultName"] = {"Description": "AWS Backup vault of the table's daily and monthly backups",
                                  "Value": {"Ref": "BackupVault"}}
    resources.update(table_throttle_alarms(template))
    alarm_names = [r["Properties"]["AlarmName"]["Fn::Sub"].removeprefix("${AWS::StackName}-")
                   for r in resources.values() if r.get("Type") == "AWS::CloudWatch::Alarm"]
    resources["Dashboard"] = dashboard(template, api, specs, api_stage, alarm_names)
    resources.update(log_queries(specs))
    resources.update(alarm_webhook_resources(runtime))
    outputs["DashboardUrl"] = {"Description": "The CloudWatch dashboard", "Value": {"Fn::Sub": [
        "https://${AWS::Region}.${Console}/cloudwatch/home?region=${AWS::Region}#dashboards:name=${AWS::StackName}",
        {"Console": {"Fn::If": [IN_CHINA, CONSOLE_DOMAINS["aws-cn"], CONSOLE_DOMAINS["aws"]]}}]}}
    outputs["ApiAccessLogGroup"] = {"Description": "API Gateway access log (one JSON line per request)",
                                    "Value": {"Ref": "ApiAccessLogGroup"}}
    return template
