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


def create_table_params(table_name: str, template_path: Path = TEMPLATE, *, stream: bool = False) -> dict[str, Any]:
    """CreateTable parameters for DynamoDB Local. Production-only settings (KMS SSE, PITR, deletion
    protection) are left to CloudFormation: DynamoDB Local ignores or cannot honour them.

    The stream too, unless asked for: nothing local reads it, and DynamoDB Local keeps every stream record
    of every table in its one in-memory database, so each write gets slower as they pile up (measured: 300
    small transactions took 4.8 s on a fresh instance and 36 s after 12,000 puts to another table with a
    stream; without streams 2.9-3.8 s throughout). tests/integration/test_table_matches_template.py
    creates one table with it, so the template's stream setting is still checked against DynamoDB Local."""
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
    spec = props.get("StreamSpecification")
    if stream and spec:
        params["StreamSpecification"] = {"StreamEnabled": True, "StreamViewType": spec["StreamViewType"]}
    return params
