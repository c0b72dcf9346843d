"""/members: the central member database."""
from __future__ import annotations

from .. import bootstrap
from ..domain import clock
from ..services import members as svc
from ..services import merges, privacy
from .inputs import MemberPatch, MergeRequest, PhoneQuery, Registration
from .responses import CouponView, ErasedView, ExportView, HeldOrderView, MemberList, MemberView, MergeView
from .routing import Call, Reply, route

TAG = "members"


@route("/members", "POST", op="members.register", tag=TAG, body=Registration, response=MemberView, status=201,
       also=(200,), errors=(404, 409, 422),
       summary="Register a member (or get the existing member holding that phone: 200). The phone's guest "
               "orders paid in the last 30 days are credited to the member")
def register_member(call: Call) -> Reply:
    member, created = svc.register_member(call.body, call.principal, bootstrap.members(), bootstrap.stores(),
                                          bootstrap.ledger())
    return Reply(MemberView.of(member, call.principal), 201 if created else 200)


@route("/members", "GET", op="members.lookup", tag=TAG, query=PhoneQuery, response=MemberList, errors=(422,),
       summary="Look a member up by phone at the counter")
def find_member(call: Call) -> MemberList:
    found = svc.lookup_by_phone(call.query.phone, call.principal, bootstrap.members())
    return MemberList(items=[MemberView.of(m, call.principal) for m in found], next_cursor=None)


@route("/members/{member_id}", "GET", op="members.view", tag=TAG, response=MemberView, errors=(404,),
       summary="The single customer view (an old, merged id answers the survivor with resolved_from)")
def get_member(call: Call, member_id: str) -> MemberView:
    member, resolved_from = svc.view(member_id, call.principal, bootstrap.members())
    return MemberView.of(member, call.principal, resolved_from)


@route("/members/{member_id}", "PATCH", op="members.update", tag=TAG, body=MemberPatch, response=MemberView,
       errors=(404, 409, 422), summary="Edit profile fields (phone: HQ only)")
def patch_member(call: Call, member_id: str) -> MemberView:
    member = svc.update(member_id, call.body, call.principal, bootstrap.members())
    return MemberView.of(member, call.principal)


@route("/members/{member_id}/merge", "POST", op="members.merge", tag=TAG, body=MergeRequest, response=MergeView,
       errors=(404, 409, 422), summary="Fold a duplicate member into this one (idempotent)")
def merge_member(call: Call, member_id: str) -> MergeView:
    record = merges.merge_members(member_id, call.body.source_member_id, call.principal, bootstrap.members(),
                                  bootstrap.ledger())
    return MergeView.model_validate(record.model_dump())


@route("/members/{member_id}/export", "GET", op="members.export", tag=TAG, response=ExportView, errors=(404,),
       summary="Everything held on the member: profile, records, orders with their refunds, the phone's guest "
               "orders (PIPL access right)")
def export_member(call: Call, member_id: str) -> ExportView:
    held = privacy.export(member_id, call.principal, bootstrap.members(), bootstrap.ledger(), bootstrap.coupons())
    return ExportView(member=MemberView.of(held.member, call.principal), records=held.records,
                      orders=[HeldOrderView.of(h.order, h.refunds) for h in held.orders],
                      guest_orders=[HeldOrderView.of(h.order, h.refunds) for h in held.guest_orders],
                      coupons=[CouponView.model_validate(c.record(clock.now()).model_dump()) for c in held.coupons],
                      exported_at=clock.now())


@route("/members/{member_id}", "DELETE", op="members.erase", tag=TAG, response=ErasedView, errors=(404,),
       summary="Erase personal fields (PIPL deletion right); anonymised sales facts stay")
def erase_member(call: Call, member_id: str) -> ErasedView:
    erased_id = privacy.erase(member_id, call.principal, bootstrap.members())
    return ErasedView(member_id=erased_id, status="erased")
