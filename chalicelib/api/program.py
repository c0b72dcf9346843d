"""/tiers and /points/rules: the loyalty program's configuration (HQ edits; everyone may read)."""
from __future__ import annotations

from chalice import Blueprint

from .. import bootstrap
from ..domain.access import Role
from ..domain.program import PointsRules, TierProgram
from ..services import program as svc
from .routing import Call, route

bp = Blueprint(__name__)
TAG = "program"


@route(bp, "/tiers", "GET", tag=TAG, response=TierProgram, summary="The tiers, thresholds and benefits")
def get_tiers(call: Call) -> TierProgram:
    return svc.tiers(bootstrap.ledger())


@route(bp, "/tiers", "PUT", tag=TAG, roles={Role.HQ}, body=TierProgram, response=TierProgram, errors=(422,),
       summary="Replace the tiers (nobody is demoted before the next re-evaluation)")
def put_tiers(call: Call) -> TierProgram:
    return svc.put_tiers(call.body, call.principal, bootstrap.ledger())


@route(bp, "/points/rules", "GET", tag=TAG, response=PointsRules, summary="Earn rate, expiry and promotions")
def get_rules(call: Call) -> PointsRules:
    return svc.rules(bootstrap.ledger())


@route(bp, "/points/rules", "PUT", tag=TAG, roles={Role.HQ}, body=PointsRules, response=PointsRules, errors=(422,),
       summary="Replace the earn rate, expiry rule and promotions")
def put_rules(call: Call) -> PointsRules:
    return svc.put_rules(call.body, call.principal, bootstrap.ledger())
