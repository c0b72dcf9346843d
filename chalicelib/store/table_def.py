"""The table definition, read from the CloudFormation template in infra/ (the one source of truth).

The local stack and the tests create their table from the same resource that production deploys, and
tests/integration compares DescribeTable of the live local table with it, so they cannot drift.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

TEMPLATE = Path(__file__).resolve().parents[2] / "infra" / "template.json"
TABLE_RESOURCE = "Table"


def table_properties(template_path: Path = TEMPLATE) -> dict[str, Any]:
    return json.loads(template_path.read_text())["Resources"][TABLE_RESOURCE]["Properties"]


def create_table_params(table_name: str, template_path: Path = TEMPLATE) -> dict[str, Any]:
    """CreateTable parameters for DynamoDB Local. Production-only settings (KMS SSE, PITR, deletion
    protection) are left to CloudFormation: DynamoDB Local ignores or cannot honour them."""
    props = table_properties(template_path)
    params: dict[str, Any] = {
        "TableName": table_name,
        "AttributeDefinitions": props["AttributeDefinitions"],
        "KeySchema": props["KeySchema"],
        "BillingMode": props["BillingMode"],
    }
    if props.get("GlobalSecondaryIndexes"):
        params["GlobalSecondaryIndexes"] = [
            {k: gsi[k] for k in ("IndexName", "KeySchema", "Projection")} for gsi in props["GlobalSecondaryIndexes"]
        ]
    stream = props.get("StreamSpecification")
    if stream:
        params["StreamSpecification"] = {"StreamEnabled": True, "StreamViewType": stream["StreamViewType"]}
    return params
