"""/members/{id}/points and /tier: the ledger, spending, HQ adjustments, tier progress."""
from __future__ import annotations

from typing import Any

from chalice import Blueprint

from .. import bootstrap
from ..domain.access import Role
from ..domain.ledger import LedgerEntry
from ..services import points as svc
from .ledger_schemas import AdjustmentInput, AdjustmentView, PointsView, RedemptionInput, RedemptionView, TierView
from .routing import Call, Reply, route
from .schemas import PageQuery

bp = Blueprint(__name__)
TAG = "points"
READERS = frozenset({Role.MEMBER, Role.STAFF, Role.STORE_MANAGER, Role.HQ})
SPENDERS = frozenset({Role.MEMBER, Role.STAFF, Role.STORE_MANAGER})
CANCELLERS = frozenset({Role.MEMBER, Role.STAFF, Role.STORE_MANAGER, Role.HQ})


@route(bp, "/members/{member_id}/points", "GET", tag=TAG, roles=READERS, query=PageQuery, response=PointsView,
       errors=(404, 422), summary="Balance, points expiring soon, and the ledger (newest first, paginated)")
def get_points(call: Call, member_id: str) -> PointsView:
    view = svc.points_view(member_id, call.principal, bootstrap.ledger(), call.query.cursor, call.query.limit)
    view["ledger"]["items"] = [_entry(e) for e in view["ledger"]["items"]]
    return PointsView.model_validate(view)


def _entry(e: LedgerEntry) -> dict[str, Any]:
    lot = {"expires_on": e.lot.expires_on, "original": e.lot.original, "remaining": e.lot.remaining,
           "status": e.lot.status} if e.lot else None
    return {"entry_id": e.entry_id, "at": e.at, "kind": e.kind, "points": e.points, "balance_after": e.balance_after,
            "ref": e.ref, "detail": e.detail, "lot": lot}


@route(bp, "/members/{member_id}/points/redemptions", "POST", tag=TAG, roles=SPENDERS, body=RedemptionInput,
       response=RedemptionView, status=201, also=(200,), errors=(404, 409, 422),
       summary="Spend points (idempotent by redemption_id; not enough points: 409, nothing changes)")
def redeem(call: Call, member_id: str) -> Reply:
    b: RedemptionInput = call.body
    answer, created = svc.redeem(member_id, b.redemption_id, b.points, b.reason, b.store_id, call.principal,
                                 bootstrap.ledger(), bootstrap.stores())
    return Reply(RedemptionView.model_validate(answer), 201 if created else 200)


@route(bp, "/members/{member_id}/points/redemptions/{redemption_id}/cancel", "POST", tag=TAG, roles=CANCELLERS,
       response=RedemptionView, errors=(404, 409),
       summary="Cancel a redemption: re-credits the original lots (expired ones stay expired)")
def cancel_redemption(call: Call, member_id: str, redemption_id: str) -> RedemptionView:
    answer, _ = svc.cancel_redemption(member_id, redemption_id, call.principal, bootstrap.ledger())
    return RedemptionView.model_validate(answer)


@route(bp, "/members/{member_id}/points/adjustments", "POST", tag=TAG, roles={Role.HQ}, body=AdjustmentInput,
       response=AdjustmentView, status=201, also=(200,), errors=(404, 409, 422),
       summary="HQ manual adjustment (audited; idempotent by adjustment_id)")
def adjust(call: Call, member_id: str) -> Reply:
    b: AdjustmentInput = call.body
    answer, created = svc.adjust(member_id, b.adjustment_id, b.points, b.reason, call.principal, bootstrap.ledger())
    return Reply(AdjustmentView.model_validate(answer), 201 if created else 200)


@route(bp, "/members/{member_id}/tier", "GET", tag=TAG, roles=READERS, response=TierView, errors=(404,),
       summary="Current tier, its benefits and the progress to the next one")
def get_tier(call: Call, member_id: str) -> TierView:
    view = svc.tier_view(member_id, call.principal, bootstrap.ledger())
    view["tier"] = view["tier"].model_dump()
    return TierView.model_validate(view)
