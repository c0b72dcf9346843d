"""/members/{id}/points and /tier: the ledger, spending, HQ adjustments, tier progress."""
from __future__ import annotations

from .. import bootstrap
from ..services import adjustments, points_views, redemptions
from .inputs import AdjustmentInput, PageQuery, RedemptionInput
from .responses import (
    AdjustmentView,
    ExpiringView,
    LedgerEntryView,
    LedgerPage,
    NextTier,
    PointsView,
    RedemptionView,
    TierDetail,
    TierView,
)
from .routing import Call, Reply, route

TAG = "points"


@route("/members/{member_id}/points", "GET", op="points.view", tag=TAG, query=PageQuery, response=PointsView,
       errors=(404, 422), summary="Balance, points expiring soon, and the ledger (newest first, paginated)")
def get_points(call: Call, member_id: str) -> PointsView:
    snap = points_views.points_view(member_id, call.principal, bootstrap.ledger(), call.query.cursor,
                                    call.query.limit)
    return PointsView(member_id=snap.member_id, balance=snap.balance, available=snap.available, owed=snap.owed,
                      expiring_soon=[ExpiringView(date=day, points=pts) for day, pts in snap.expiring_soon],
                      ledger=LedgerPage(items=[LedgerEntryView.of(e) for e in snap.entries],
                                        next_cursor=snap.next_cursor))


@route("/members/{member_id}/points/redemptions", "POST", op="points.redeem", tag=TAG, body=RedemptionInput,
       response=RedemptionView, status=201, also=(200,), errors=(404, 409, 422),
       summary="Spend points (idempotent by redemption_id; not enough points: 409, nothing changes)")
def redeem(call: Call, member_id: str) -> Reply:
    b: RedemptionInput = call.body
    done, created = redemptions.redeem(member_id, b.redemption_id, b.points, b.reason, b.store_id, call.principal,
                                       bootstrap.ledger(), bootstrap.stores())
    return Reply(RedemptionView.model_validate(done.model_dump()), 201 if created else 200)


@route("/members/{member_id}/points/redemptions/{redemption_id}/cancel", "POST", op="points.cancel_redemption",
       tag=TAG, response=RedemptionView, errors=(404, 409),
       summary="Cancel a redemption: re-credits the original lots (expired ones stay expired)")
def cancel_redemption(call: Call, member_id: str, redemption_id: str) -> RedemptionView:
    done, _ = redemptions.cancel_redemption(member_id, redemption_id, call.principal, bootstrap.ledger())
    return RedemptionView.model_validate(done.model_dump())


@route("/members/{member_id}/points/adjustments", "POST", op="points.adjust", tag=TAG, body=AdjustmentInput,
       response=AdjustmentView, status=201, also=(200,), errors=(404, 409, 422),
       summary="HQ manual adjustment (audited; idempotent by adjustment_id)")
def adjust(call: Call, member_id: str) -> Reply:
    b: AdjustmentInput = call.body
    done, created = adjustments.adjust(member_id, b.adjustment_id, b.points, b.reason, call.principal,
                                       bootstrap.ledger())
    return Reply(AdjustmentView.model_validate(done.model_dump()), 201 if created else 200)


@route("/members/{member_id}/tier", "GET", op="points.tier", tag=TAG, response=TierView, errors=(404,),
       summary="Current tier, its benefits and the progress to the next one")
def get_tier(call: Call, member_id: str) -> TierView:
    t = points_views.tier_view(member_id, call.principal, bootstrap.ledger())
    nxt = NextTier(tier_id=t.next_tier.tier_id, name=t.next_tier.name, threshold=t.next_tier.threshold,
                   missing=t.missing or 0) if t.next_tier else None
    return TierView(member_id=t.member_id, tier=TierDetail.model_validate(t.tier.model_dump()), basis=t.basis,
                    progress=t.progress, since=t.since, next_tier=nxt, message=t.message)
