"""The live local table is created from infra/template.json; this checks they cannot drift."""
import uuid

from chalicelib.store.table_def import create_table_params, table_properties


def _keys(schema):
    return [(k["AttributeName"], k["KeyType"]) for k in schema]


def test_live_table_matches_template(stack):
    live = stack.client("dynamodb").describe_table(TableName=stack.table_name)["Table"]
    props = table_properties()
    assert _keys(live["KeySchema"]) == _keys(props["KeySchema"])
    assert sorted((a["AttributeName"], a["AttributeType"]) for a in live["AttributeDefinitions"]) == \
        sorted((a["AttributeName"], a["AttributeType"]) for a in props["AttributeDefinitions"])
    live_gsis = {g["IndexName"]: (_keys(g["KeySchema"]), g["Projection"]["ProjectionType"])
                 for g in live.get("GlobalSecondaryIndexes", [])}
    want_gsis = {g["IndexName"]: (_keys(g["KeySchema"]), g["Projection"]["ProjectionType"])
                 for g in props["GlobalSecondaryIndexes"]}
    assert live_gsis == want_gsis
    assert "StreamSpecification" not in live  # local tables go without (chalicelib/store/table_def.py says why)
    assert live["BillingModeSummary"]["BillingMode"] == props["BillingMode"]


def test_the_template_stream_is_accepted_by_dynamodb_local(stack):
    ddb = stack.client("dynamodb")
    name = f"chaincrm-stream-{uuid.uuid4().hex[:8]}"
    ddb.create_table(**create_table_params(name, stream=True))
    try:
        live = ddb.describe_table(TableName=name)["Table"]
        view = table_properties()["StreamSpecification"]["StreamViewType"]
        assert live["StreamSpecification"] == {"StreamEnabled": True, "StreamViewType": view}
        assert live["LatestStreamArn"]
    finally:
        ddb.delete_table(TableName=name)


def test_template_has_production_protections():
    props = table_properties()
    assert props["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    assert props["DeletionProtectionEnabled"] is True
    assert props["SSESpecification"]["SSEType"] == "KMS"
