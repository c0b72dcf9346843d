"""The local stack: DynamoDB Local + moto's server (Secrets Manager, SQS) + a fake
WeChat, wired to the app through the standard AWS endpoint variables, so production code has no local branch.
"""
from __future__ import annotations

import base64
import json
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .dynamodb_local import ROOT, DynamoDBLocal, free_port
from .fake_wechat import FakeWeChat

LOCAL_DIR = ROOT / ".local"
SECRETS_FILE = LOCAL_DIR / "secrets.json"
STACK_ENV_FILE = LOCAL_DIR / "stack.env.json"
REGION = "ap-east-1"
SECRET_ID = "chaincrm/local"
WECHAT_APPID = "wx-local-app"
AUDIENCE_QUEUE = "chaincrm-coupon-audience"


def new_secret_bundle() -> dict[str, str]:
    def key() -> str:
        return base64.b64encode(secrets.token_bytes(32)).decode()

    return {"member_signing": key(), "local_idp": key(), "pii_hmac": key(), "pii_enc": key(),
            "wechat_app_secret": secrets.token_hex(16)}


def local_secret_bundle() -> dict[str, str]:
    """The developer's local keys: generated once, kept in git-ignored .local/ so tokens survive restarts."""
    if SECRETS_FILE.exists():
        return json.loads(SECRETS_FILE.read_text())
    LOCAL_DIR.mkdir(exist_ok=True)
    bundle = new_secret_bundle()
    SECRETS_FILE.write_text(json.dumps(bundle, indent=2))
    SECRETS_FILE.chmod(0o600)
    return bundle


@dataclass
class LocalStack:
    bundle: dict[str, str]
    table_name: str = "chaincrm-local"
    db_path: Path | None = None
    ddb_port: int | None = None
    moto_port: int | None = None
    wechat_port: int = 0
    ddb_log: Path | None = None
    env: dict[str, str] = field(default_factory=dict)
    _ddb: DynamoDBLocal | None = None
    _moto: Any = None
    wechat: FakeWeChat | None = None

    def start(self) -> LocalStack:
        import logging

        from moto.server import ThreadedMotoServer  # local-only; ~3 s to import

        logging.getLogger("werkzeug").setLevel(logging.ERROR)

        self._ddb = DynamoDBLocal(self.ddb_port, self.db_path, self.ddb_log).start()
        self.moto_port = self.moto_port or free_port()
        self._moto = ThreadedMotoServer(ip_address="127.0.0.1", port=self.moto_port, verbose=False)
        self._moto.start()
        self.wechat = FakeWeChat(WECHAT_APPID, self.bundle["wechat_app_secret"], self.wechat_port).start()
        self.env = {
            "AWS_ENDPOINT_URL_DYNAMODB": self._ddb.endpoint,
            "AWS_ENDPOINT_URL_SECRETS_MANAGER": f"http://127.0.0.1:{self.moto_port}",
            "AWS_ENDPOINT_URL_SQS": f"http://127.0.0.1:{self.moto_port}",
            "AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local", "AWS_DEFAULT_REGION": REGION,
            "AWS_REGION": REGION,
            "CHAINCRM_TABLE_NAME": self.table_name, "CHAINCRM_SECRET_ID": SECRET_ID,
            "CHAINCRM_WECHAT_API_BASE": self.wechat.base_url, "CHAINCRM_WECHAT_APPID": WECHAT_APPID,
            "POWERTOOLS_METRICS_NAMESPACE": "ChainCRM", "POWERTOOLS_SERVICE_NAME": "chaincrm",
        }
        os.environ.update(self.env)
        self.put_secret()
        self.env["CHAINCRM_COUPON_AUDIENCE_QUEUE_URL"] = self.create_queues()
        os.environ.update(self.env)
        self.ensure_table(self.table_name)
        return self

    def stop(self) -> None:
        if self.wechat:
            self.wechat.stop()
        if self._moto:
            self._moto.stop()
        if self._ddb:
            self._ddb.stop()

    def client(self, service: str) -> Any:
        import boto3

        return boto3.client(service, region_name=REGION)

    def put_secret(self) -> None:
        sm = self.client("secretsmanager")
        try:
            sm.create_secret(Name=SECRET_ID, SecretString=json.dumps(self.bundle))
        except sm.exceptions.ResourceExistsException:
            sm.put_secret_value(SecretId=SECRET_ID, SecretString=json.dumps(self.bundle))

    def create_queues(self) -> str:
        """The coupon audience job queue in moto's SQS, with its DLQ as on AWS (infra/stack.py): its URL."""
        sqs = self.client("sqs")
        dlq = sqs.create_queue(QueueName=AUDIENCE_QUEUE + "-dlq")["QueueUrl"]
        dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        return sqs.create_queue(QueueName=AUDIENCE_QUEUE, Attributes={
            "VisibilityTimeout": "60",
            "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "5"})})["QueueUrl"]

    def ensure_table(self, name: str) -> bool:
        """Create the table from infra/template.json if it does not exist; True if created."""
        from ..store.table_def import create_table_params

        ddb = self.client("dynamodb")
        if name in ddb.list_tables()["TableNames"]:
            return False
        ddb.create_table(**create_table_params(name))
        ddb.get_waiter("table_exists").wait(TableName=name, WaiterConfig={"Delay": 0.2, "MaxAttempts": 50})
        return True
