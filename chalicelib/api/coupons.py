"""/coupon-templates, /coupon-issues, /coupons and a member's coupons and points exchanges."""
from __future__ import annotations

from .. import bootstrap
from ..domain import clock
from ..services import coupon_audience, coupon_counter, coupon_templates, coupon_views, exchanges
from .inputs import (
    CancelInput,
    CouponListQuery,
    CouponLookupQuery,
    ExchangeInput,
    IssueInput,
    RedeemInput,
    TemplateInput,
)
from .responses import (
    CouponCheck,
    CouponPage,
    CouponRedemptionView,
    CouponView,
    ExchangeView,
    IssueProgressView,
    IssueView,
    TemplateList,
    TemplateView,
)
from .routing import Call, Reply, route

TAG = "coupons"


@route("/coupon-templates/{template_id}", "PUT", op="coupons.put_template", tag=TAG, body=TemplateInput,
       response=TemplateView, status=200, also=(201,), errors=(409, 422),
       summary="Create or replace a coupon template (coupons already issued keep their terms)")
def put_coupon_template(call: Call, template_id: str) -> Reply:
    template, issued, left, created = coupon_templates.put_template(template_id, call.body, call.principal,
                                                                    bootstrap.coupons())
    return Reply(TemplateView(**template.model_dump(), issued=issued, left=left), 201 if created else 200)


@route("/coupon-templates", "GET", op="coupons.list_templates", tag=TAG, response=TemplateList,
       summary="Every coupon template with its budget")
def list_coupon_templates(call: Call) -> TemplateList:
    items = coupon_templates.list_templates(call.principal, bootstrap.coupons())
    return TemplateList(items=[TemplateView(**t.model_dump(), issued=issued, left=left) for t, issued, left in items])


@route("/coupon-templates/{template_id}", "GET", op="coupons.read_template", tag=TAG, response=TemplateView,
       errors=(404,), summary="One coupon template with its budget")
def get_coupon_template(call: Call, template_id: str) -> TemplateView:
    template, issued, left = coupon_templates.get_template(template_id, call.principal, bootstrap.coupons())
    return TemplateView(**template.model_dump(), issued=issued, left=left)


@route("/coupon-issues", "POST", op="coupons.issue", tag=TAG, body=IssueInput, response=IssueView, status=201,
       also=(200,), alt=((202, IssueProgressView),), errors=(404, 409),
       summary="Issue a template's coupons to up to 1,000 members (idempotent by issue_id; budget exhausted: 409, "
               "nothing issued; unknown, erased or over-limit members skipped with a reason), or to a segment "
               "audience as a resumable job (202 with its progress; follow it at GET /coupon-issues/{issue_id})")
def issue_coupons(call: Call) -> Reply:
    job, answer, created = coupon_audience.post_issue(call.body, call.principal, bootstrap.coupons(),
                                                      bootstrap.ledger(), bootstrap.stores(),
                                                      bootstrap.audience_queue)
    if job:
        return Reply(IssueProgressView.model_validate(answer), 202)
    return Reply(IssueView.model_validate(answer), 201 if created else 200)


@route("/coupon-issues/{issue_id}", "GET", op="coupons.read_issue", tag=TAG, response=IssueProgressView,
       errors=(404,), summary="A bulk issue's progress: an audience job's status (selecting, issuing, done, "
                              "stopped), members matched, issued and skipped by reason; a member_ids issue's answer")
def get_coupon_issue(call: Call, issue_id: str) -> IssueProgressView:
    return IssueProgressView.model_validate(
        coupon_audience.progress(issue_id, call.principal, bootstrap.coupons(), bootstrap.stores()))


@route("/members/{member_id}/points/exchanges", "POST", op="coupons.exchange", tag=TAG, body=ExchangeInput,
       response=ExchangeView, status=201, also=(200,), errors=(404, 409),
       summary="Exchange points for a coupon: points spent and coupon issued in one transaction (idempotent)")
def exchange_points(call: Call, member_id: str) -> Reply:
    answer, created = exchanges.exchange(member_id, call.body, call.principal, bootstrap.ledger(),
                                         bootstrap.coupons())
    return Reply(ExchangeView.model_validate(answer), 201 if created else 200)


@route("/coupons/{code}", "GET", op="coupons.read", tag=TAG, query=CouponLookupQuery, response=CouponCheck,
       errors=(404, 422), summary="A coupon at the counter: terms, holder, state, and whether it can be used here")
def lookup_coupon(call: Call, code: str) -> CouponCheck:
    q: CouponLookupQuery = call.query
    coupon, phone, refusal, discount = coupon_counter.lookup(
        code, q.store_id, q.order_amount, call.principal, bootstrap.coupons(), bootstrap.stores(), bootstrap.ledger())
    return CouponCheck(**coupon.record(clock.now()).model_dump(), holder_phone=phone,
                       usable=None if q.store_id is None else refusal is None, refusal=refusal, discount=discount)


@route("/coupons/{code}/redeem", "POST", op="coupons.redeem", tag=TAG, body=RedeemInput,
       response=CouponRedemptionView, status=201, also=(200,), errors=(404, 409, 422),
       summary="Redeem a coupon for an order, exactly once (the same order and body again: 200, the same answer)")
def redeem_coupon(call: Call, code: str) -> Reply:
    answer, created = coupon_counter.redeem(code, call.body, call.principal, bootstrap.coupons(), bootstrap.stores(),
                                            bootstrap.ledger())
    return Reply(CouponRedemptionView.model_validate(answer.model_dump()), 201 if created else 200)


@route("/coupons/{code}/redemption/cancel", "POST", op="coupons.cancel", tag=TAG, body=CancelInput,
       response=CouponView, errors=(404, 409),
       summary="Release a coupon redeemed for a sale that was abandoned (posted with it: 409 order_posted)")
def cancel_coupon_redemption(call: Call, code: str) -> CouponView:
    coupon = coupon_counter.cancel(code, call.body.order_id, call.principal, bootstrap.coupons(), bootstrap.stores())
    return CouponView.model_validate(coupon.record(clock.now()).model_dump())


@route("/members/{member_id}/coupons", "GET", op="coupons.member_list", tag=TAG, query=CouponListQuery,
       response=CouponPage, errors=(404, 422), summary="A member's coupons (with those of members merged into them)")
def list_member_coupons(call: Call, member_id: str) -> CouponPage:
    q: CouponListQuery = call.query
    live, items, cursor = coupon_views.member_coupons(member_id, q.state, q.cursor, q.limit, call.principal,
                                                      bootstrap.members(), bootstrap.coupons())
    at = clock.now()
    return CouponPage(member_id=live, items=[CouponView.model_validate(c.record(at).model_dump()) for c in items],
                      next_cursor=cursor)
