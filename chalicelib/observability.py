"""The one Logger and Metrics of the service (Powertools). Constructing them reads no required environment."""
from __future__ import annotations

import os

from aws_lambda_powertools import Logger, Metrics

SERVICE = "chaincrm"
# dev and prod may share an account: every metric and log line says which stage it comes from.
STAGE = os.environ.get("CHAINCRM_STAGE", "local")

logger = Logger(service=SERVICE, stage=STAGE)
# A separate service name so audit lines can be routed and retained apart (filter: service = chaincrm-audit).
audit_logger = Logger(service=f"{SERVICE}-audit", stage=STAGE)
# Appended per request once the caller is known (api/routing.py); removed when the request ends, or a warm
# container would log them on the next request's lines, whoever sent it.
CALLER_LOG_KEYS = ("caller_sub", "caller_role")
metrics = Metrics(namespace="ChainCRM", service=SERVICE)
metrics.set_default_dimensions(stage=STAGE)


def audit(action: str, *, actor: str, role: str, member_id: str | None = None, **fields: object) -> None:
    """A structured audit line: who did what to whom. Never pass phone numbers, names or tokens here."""
    audit_logger.info(action, extra={"audit": True, "action": action, "actor": actor, "role": role,
                                     "member_id": member_id, "detail": fields})
