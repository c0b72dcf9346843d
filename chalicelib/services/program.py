"""The loyalty program's configuration (earn rules, tiers): read on every order, edited by HQ."""
from __future__ import annotations

from ..domain.access import Principal
from ..domain.program import DEFAULT_TIERS, PointsRules, TierProgram
from ..observability import audit as audit_line
from .ports import LedgerRepository

RULES = "POINTS_RULES"
TIERS = "TIERS"


def rules(ledger: LedgerRepository) -> PointsRules:
    body = ledger.load_config(RULES)
    return PointsRules.model_validate(body) if body else PointsRules()


def tiers(ledger: LedgerRepository) -> TierProgram:
    body = ledger.load_config(TIERS)
    return TierProgram.model_validate(body) if body else DEFAULT_TIERS


def put_rules(new: PointsRules, actor: Principal, ledger: LedgerRepository) -> PointsRules:
    ledger.save_config(RULES, new.model_dump(mode="json"), actor.sub)
    audit_line("program.rules_changed", actor=actor.sub, role=actor.role.value)
    return new


def put_tiers(new: TierProgram, actor: Principal, ledger: LedgerRepository) -> TierProgram:
    """Saving thresholds demotes nobody now: members keep their tier until the next re-evaluation."""
    ledger.save_config(TIERS, new.model_dump(mode="json"), actor.sub)
    audit_line("program.tiers_changed", actor=actor.sub, role=actor.role.value)
    return new
