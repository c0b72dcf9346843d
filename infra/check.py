"""Checks of the built template the way CloudFormation will see it, for one region (`make package REGION=...`
runs them; tests/infra/test_partition_and_stages.py too). Dev tooling: uses the SAM translator and cfn-lint.

    python -m infra.check [--region cn-north-1] [dist/template.json]

1. The SAM transform, done locally with the SAM translator (the same library CloudFormation runs), must give
   exactly one API Gateway stage: ours (SAM adds a stage named "Stage" unless OpenApiVersion is set).
2. cfn-lint finds no error or warning in the template, before and after the transform, for that region.
3. Nothing in it names a partition or domain of its own: ARNs use ${AWS::Partition}, service endpoints
   ${AWS::URLSuffix}, console links depend on the partition. (Service principals such as lambda.amazonaws.com
   are the same in every partition and are allowed.)
"""
from __future__ import annotations

import copy
import json
import re
import sys
from pathlib import Path
from typing import Any

from . import stack

DIST_TEMPLATE = stack.ROOT / "dist" / "template.json"
DEFAULT_REGION = "ap-east-1"
CHINA_REGIONS = ("cn-north-1", "cn-northwest-1")
# A literal partition in an ARN, or an AWS domain of one partition (amazonaws.com, amazonaws.com.cn, the consoles).
_LITERAL_ARN = re.compile(r"arn:aws(-cn|-us-gov)?:")
_DOMAIN = re.compile(r"[a-z0-9-]+(\.[A-Za-z0-9${}:-]+)*\.(amazonaws\.com(\.cn)?|amazonaws\.cn|aws\.amazon\.com)\b")
SERVICE_PRINCIPAL = re.compile(r"[a-z0-9-]+\.amazonaws\.com")
# Where a partition's own value is the point: the table of console domains the template chooses from.
ALLOWED_LITERALS = set(stack.CONSOLE_DOMAINS.values())


def partition(region: str) -> str:
    return "aws-cn" if region.startswith("cn-") else "aws"


def translate(template: dict[str, Any], region: str = DEFAULT_REGION) -> dict[str, Any]:
    """The SAM transform, as CloudFormation would apply it in `region` (no AWS call: no managed policies used)."""
    import logging
    import os

    from samtranslator.parser.parser import Parser
    from samtranslator.translator.translator import Translator

    previous = os.environ.get("AWS_DEFAULT_REGION")
    os.environ["AWS_DEFAULT_REGION"] = region  # the translator reads the region (and so the partition) from it
    logging.getLogger("samtranslator").setLevel(logging.ERROR)  # not its notes on feature toggles it does not use
    try:
        return Translator(managed_policy_map={}, sam_parser=Parser()).translate(
            sam_template=copy.deepcopy(template), parameter_values={"AWS::Region": region})
    finally:
        if previous is None:
            os.environ.pop("AWS_DEFAULT_REGION", None)
        else:
            os.environ["AWS_DEFAULT_REGION"] = previous


def api_stages(translated: dict[str, Any]) -> list[str]:
    """Every stage the translated template creates: Stage resources and Deployments that name a stage."""
    stages = []
    for name, r in translated["Resources"].items():
        if r["Type"] == "AWS::ApiGateway::Stage":
            stages.append(str(r["Properties"].get("StageName")))
        elif r["Type"] == "AWS::ApiGateway::Deployment" and "StageName" in r.get("Properties", {}):
            stages.append(f"{r['Properties']['StageName']} (created by {name})")
    return stages


def _strings(value: Any, path: str = "") -> list[tuple[str, str]]:
    if isinstance(value, str):
        return [(path, value)]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in _strings(v, f"{path}/{k}")]
    if isinstance(value, list):
        return [s for i, v in enumerate(value) for s in _strings(v, f"{path}/{i}")]
    return []


def partition_problems(template: dict[str, Any]) -> list[str]:
    """Strings that only work in one partition: literal ARNs and AWS domains that are not service principals."""
    problems = []
    for path, text in _strings(template.get("Resources", {}), "Resources") + _strings(template.get("Outputs", {}),
                                                                                      "Outputs"):
        if _LITERAL_ARN.search(text) and "/Code/ZipFile" not in path:
            problems.append(f"{path}: literal partition in {text[:120]!r} (use ${{AWS::Partition}})")
        for m in _DOMAIN.finditer(text):
            domain = m.group(0)
            if domain in ALLOWED_LITERALS or "/Code/ZipFile" in path:
                continue
            if SERVICE_PRINCIPAL.fullmatch(domain) and re.search(r"/Principal(/Service(/\d+)?)?$", path):
                continue
            problems.append(f"{path}: domain {domain!r} exists in one partition only (use ${{AWS::URLSuffix}})")
    return problems


def _sams_own(match: Any) -> bool:
    """W1020 on an aliased function's code key in the translated template: SAM resolves the parameters of
    CodeUri (${ArtifactPrefix}) to hash it into the version's logical id, leaving an Fn::Sub with nothing left
    to substitute. Our template has the variable; CloudFormation gets the deploy's own value."""
    path = [str(p) for p in getattr(match, "path", [])]
    return match.rule.id == "W1020" and path[-3:-1] == ["Code", "S3Key"]


def lint(template: dict[str, Any], region: str) -> list[str]:
    from cfnlint.api import ManualArgs, lint

    matches = lint(json.dumps(template), config=ManualArgs(regions=[region]))
    return [str(m) for m in matches if m.rule.id[0] in "EW" and not _sams_own(m)]  # I (informational) are advice


def check(template: dict[str, Any], region: str) -> list[str]:
    translated = translate(template, region)
    problems = []
    stages = api_stages(translated)
    if len(stages) != 1:
        problems.append(f"the translated template creates {len(stages)} API stages, not 1: {stages}")
    problems += [f"cfn-lint ({region}): {m}" for m in lint(template, region)]
    problems += [f"cfn-lint translated ({region}): {m}" for m in lint(translated, region)]
    problems += partition_problems(template) + partition_problems(translated)
    return problems


def main(argv: list[str]) -> int:
    region = DEFAULT_REGION
    if "--region" in argv:
        region = argv[argv.index("--region") + 1]
        argv = [a for i, a in enumerate(argv) if a != "--region" and (i == 0 or argv[i - 1] != "--region")]
    path = Path(argv[0]) if argv else DIST_TEMPLATE
    problems = check(json.loads(path.read_text()), region)
    for p in problems:
        print(f"check: {p}", file=sys.stderr)
    if not problems:
        print(f"{path}: one API stage, lint clean for {region} ({partition(region)}), no partition-specific names")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
