"""Composition root: builds clients, repositories and adapters lazily, once per container, for api/ and
functions/ alike. Nothing here runs at import: boto3 is imported on first use (it costs ~400 ms of cold
start to create a client, which a request that fails auth should not pay)."""
from __future__ import annotations

from functools import lru_cache
from typing import Any

from .settings import Settings, get_settings, reset_settings


def settings() -> Settings:
    return get_settings()


# One call, all its attempts included, must give up well inside the API Lambda's 25 s (.chalice/config.json):
# otherwise API Gateway answers 504/502 before our code can answer 503. Worst case, for N attempts:
# N x (connect + read timeout) + the standard mode's backoffs (at most 2^i s before attempt i+1)
# = 3 x (1 + 4) + 1 + 2 = 18 s. tests/unit/test_boto_time_budget.py holds it below the function's timeout.
BOTO_MAX_ATTEMPTS = 3
BOTO_CONNECT_TIMEOUT = 1
BOTO_READ_TIMEOUT = 4


def _boto_config() -> Any:
    from botocore.config import Config

    # Fail fast inside a Lambda's time budget; standard retries back off on throttling.
    return Config(retries={"mode": "standard", "max_attempts": BOTO_MAX_ATTEMPTS},
                  connect_timeout=BOTO_CONNECT_TIMEOUT, read_timeout=BOTO_READ_TIMEOUT, max_pool_connections=64)


@lru_cache(maxsize=1)
def dynamodb_client() -> Any:
    import boto3

    return boto3.client("dynamodb", config=_boto_config())


@lru_cache(maxsize=1)
def secrets() -> Any:
    import boto3

    from .adapters.secrets import load_secret_bundle

    return load_secret_bundle(boto3.client("secretsmanager", config=_boto_config()), settings().secret_id)


@lru_cache(maxsize=1)
def db() -> Any:
    from .store.db import Db

    return Db(dynamodb_client(), settings().table_name)


@lru_cache(maxsize=1)
def members() -> Any:
    from .store.members import DynamoMemberRepository
    from .store.pii import PiiProtector

    bundle = secrets()
    return DynamoMemberRepository(db(), PiiProtector(bundle.key("pii_hmac"), bundle.key("pii_enc")))


@lru_cache(maxsize=1)
def stores() -> Any:
    from .store.stores import DynamoStoreRepository

    return DynamoStoreRepository(db())


@lru_cache(maxsize=1)
def ledger() -> Any:
    from .store.ledger import DynamoLedgerRepository

    return DynamoLedgerRepository(db())


@lru_cache(maxsize=1)
def tickets() -> Any:
    from .store.tickets import DynamoTicketRepository

    return DynamoTicketRepository(db())


@lru_cache(maxsize=1)
def coupons() -> Any:
    from .store.coupons import DynamoCouponRepository

    return DynamoCouponRepository(db())


@lru_cache(maxsize=1)
def tags() -> Any:
    from .store.tags import DynamoTagRepository

    return DynamoTagRepository(db())


@lru_cache(maxsize=1)
def tokens() -> Any:
    from .adapters.tokens import TokenService

    s = settings()
    return TokenService(s.issuers, lambda name: secrets().keys(name), s.member_token_issuer,
                        s.member_token_ttl_seconds)


@lru_cache(maxsize=1)
def wechat() -> Any:
    from .adapters.wechat import WeChatClient

    s = settings()
    return WeChatClient(s.wechat_api_base, s.wechat_appid, secrets().text("wechat_app_secret"),
                        s.wechat_timeout_seconds)


def reset() -> None:
    """Forget everything built (tests and the local launcher change the environment)."""
    reset_settings()
    for getter in (dynamodb_client, secrets, db, members, stores, ledger, coupons, tickets, tokens, wechat,
                   calendars, tags, sqs_client):
        getter.cache_clear()


@lru_cache(maxsize=1)
def sqs_client() -> Any:
    import boto3

    return boto3.client("sqs", config=_boto_config())


def audience_queue() -> Any:
    """The queue of segment-audience coupon issue jobs (not cached: a thin wrapper over the cached client)."""
    from .adapters.queue import SqsJobQueue

    return SqsJobQueue(sqs_client(), settings().coupon_audience_queue_url)


def audience_reader() -> Any:
    """The member index's audience pages (not cached: a thin wrapper over the cached `db()`)."""
    from .store.rfm import DynamoAudienceReader

    return DynamoAudienceReader(db())


def rfm() -> Any:
    """The nightly segmentation's repository (not cached: a thin wrapper over the cached `db()`)."""
    from .store.rfm import DynamoRfmRepository

    return DynamoRfmRepository(db())


def kb() -> Any:
    """The knowledge base's repository. Not cached itself (so `reset` needs no entry): a thin wrapper over the
    cached `db()`, built per call for the cost of one object."""
    from .store.kb import DynamoKbRepository

    return DynamoKbRepository(db())


@lru_cache(maxsize=1)
def calendars() -> Any:
    """The calendar repository: cached, because it holds the per-container cache of calendar reads."""
    from .store.calendars import DynamoCalendarRepository

    return DynamoCalendarRepository(db())


def rollups() -> Any:
    """The store day rollups (not cached: a thin wrapper over the cached `db()`)."""
    from .store.rollups import DynamoRollupRepository

    return DynamoRollupRepository(db())


def links() -> Any:
    """Report-link signing (not cached: the secret bundle it reads is)."""
    from .adapters.links import LinkSigner

    return LinkSigner(lambda: secrets().keys("member_signing"))
