"""/tiers and /points/rules: the loyalty program's configuration (HQ edits; everyone may read)."""
from __future__ import annotations

from .. import bootstrap
from ..services import program as svc
from .inputs import PointsRules, TierProgram
from .routing import Call, route

TAG = "program"


@route("/tiers", "GET", op="program.tiers", tag=TAG, response=TierProgram, summary="The tiers, thresholds and benefits")
def get_tiers(call: Call) -> TierProgram:
    return svc.tiers(bootstrap.ledger())


@route("/tiers", "PUT", op="program.put_tiers", tag=TAG, body=TierProgram, response=TierProgram, errors=(422,),
       summary="Replace the tiers (nobody is demoted before the next re-evaluation)")
def put_tiers(call: Call) -> TierProgram:
    return svc.put_tiers(call.body, call.principal, bootstrap.ledger())


@route("/points/rules", "GET", op="program.rules", tag=TAG, response=PointsRules,
       summary="Earn rate, expiry and promotions")
def get_rules(call: Call) -> PointsRules:
    return svc.rules(bootstrap.ledger())


@route("/points/rules", "PUT", op="program.put_rules", tag=TAG, body=PointsRules, response=PointsRules,
       errors=(422,), summary="Replace the earn rate, expiry rule and promotions")
def put_rules(call: Call) -> PointsRules:
    return svc.put_rules(call.body, call.principal, bootstrap.ledger())
