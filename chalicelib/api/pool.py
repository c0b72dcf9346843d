"""/benefit-pool: quotas of coupon budgets for regions and stores; a template's numbers; the settlement."""
from __future__ import annotations

from .. import bootstrap
from ..services import benefit_pool
from .inputs import AllocationInput, PoolQuery, SettlementQuery, StatsQuery
from .responses import AllocationView, PoolView, SettlementView, StatsView
from .routing import Call, Reply, route

TAG = "benefit-pool"


@route("/benefit-pool/allocations", "POST", op="pool.allocate", tag=TAG, body=AllocationInput,
       response=AllocationView, status=201, also=(200,), errors=(404, 409, 422),
       summary="Allocate part of a template's budget to a region or store, or return unissued quota (negative "
               "quantity); idempotent by allocation_id")
def allocate_quota(call: Call) -> Reply:
    done, created = benefit_pool.allocate(call.body, call.principal, bootstrap.coupons(), bootstrap.stores())
    return Reply(AllocationView.model_validate(done.model_dump()), 201 if created else 200)


@route("/benefit-pool", "GET", op="pool.read", tag=TAG, query=PoolQuery, response=PoolView, errors=(422,),
       summary="Per template at a level (HQ, a region, a store): received, passed on, issued and left")
def read_pool(call: Call) -> PoolView:
    q: PoolQuery = call.query
    level, lines = benefit_pool.pool(q.store_id, q.region_id, call.principal, bootstrap.coupons(), bootstrap.stores())
    return PoolView(level=level, items=lines)


@route("/coupon-templates/{template_id}/stats", "GET", op="coupons.stats", tag="coupons", query=StatsQuery,
       response=StatsView, errors=(404, 422),
       summary="A template's numbers by day (issued, redeemed, discount, gift cost, sales of the orders), for the "
               "coupons a store, a region or the whole brand issued")
def template_stats(call: Call, template_id: str) -> StatsView:
    q: StatsQuery = call.query
    level, days = benefit_pool.stats(template_id, q.store_id, q.region_id, q.from_, q.to, call.principal,
                                     bootstrap.coupons(), bootstrap.stores())
    issued, redeemed = sum(d.issued for d in days), sum(d.redeemed for d in days)
    return StatsView(template_id=template_id, level=level, first_day=q.from_, last_day=q.to, issued=issued,
                     redeemed=redeemed,
                     redemption_rate_bp=redeemed * 10_000 // issued if issued > 0 else 0,
                     discount=sum(d.discount for d in days), gift_cost=sum(d.gift_cost for d in days),
                     sales=sum(d.sales for d in days), days=days)


@route("/coupons/settlement", "GET", op="coupons.settlement", tag="coupons", query=SettlementQuery,
       response=SettlementView, errors=(422,),
       summary="A month's coupon settlement per (template, issuer, redeeming store): count, discounts, gift costs")
def coupon_settlement(call: Call) -> SettlementView:
    q: SettlementQuery = call.query
    level, rows = benefit_pool.settlement(q.month, q.store_id, call.principal, bootstrap.coupons(),
                                          bootstrap.stores())
    return SettlementView(month=q.month, level=level, rows=rows, count=sum(r.count for r in rows),
                          discount=sum(r.discount for r in rows), gift_cost=sum(r.gift_cost for r in rows))
