"""/members: the central member database."""
from __future__ import annotations

from chalice import Blueprint

from .. import bootstrap
from ..domain import clock
from ..domain.access import Role
from ..domain.errors import DomainError
from ..domain.members import MemberPatch, Registration
from ..observability import logger
from ..services import members as svc
from ..services import orders, program
from .routing import Call, Reply, route
from .schemas import ErasedView, ExportView, MemberList, MemberView, MergeRequest, MergeView, PhoneQuery

bp = Blueprint(__name__)
TAG = "members"

COUNTER = {Role.STAFF, Role.STORE_MANAGER}
REGISTRARS = frozenset({*COUNTER, Role.HQ, Role.INTEGRATION})
READERS = frozenset({Role.MEMBER, *COUNTER, Role.HQ})
SELF_OR_HQ = frozenset({Role.MEMBER, Role.HQ})


@route(bp, "/members", "POST", tag=TAG, roles=REGISTRARS, body=Registration, response=MemberView, status=201,
       also=(200,), errors=(404, 409, 422),
       summary="Register a member (or get the existing member holding that phone: 200)")
def register_member(call: Call) -> Reply:
    member, created = svc.register(call.body, call.principal, bootstrap.members(), bootstrap.stores())
    if attach_guest_orders_safely(member.member_id, call.body.phone):
        member, _ = svc.view(member.member_id, call.principal, bootstrap.members())
    return Reply(MemberView.of(member, call.principal), 201 if created else 200)


def attach_guest_orders_safely(member_id: str, phone: str) -> int:
    """After the registration: credit the phone's recent guest orders. A failure here must not fail the
    registration; the next registration answer for the phone retries it (the attach is idempotent)."""
    try:
        return orders.attach_guest_orders(member_id, phone, bootstrap.members(), bootstrap.ledger())
    except DomainError as err:
        logger.warning("guest order attach deferred", extra={"member_id": member_id, "code": err.code})
        return 0


@route(bp, "/members", "GET", tag=TAG, roles=REGISTRARS, query=PhoneQuery, response=MemberList, errors=(422,),
       summary="Look a member up by phone at the counter")
def find_member(call: Call) -> MemberList:
    found = svc.lookup_by_phone(call.query.phone, call.principal, bootstrap.members())
    return MemberList(items=[MemberView.of(m, call.principal) for m in found], next_cursor=None)


@route(bp, "/members/{member_id}", "GET", tag=TAG, roles=READERS, response=MemberView, errors=(404,),
       summary="The single customer view (an old, merged id answers the survivor with resolved_from)")
def get_member(call: Call, member_id: str) -> MemberView:
    member, resolved_from = svc.view(member_id, call.principal, bootstrap.members())
    return MemberView.of(member, call.principal, resolved_from)


@route(bp, "/members/{member_id}", "PATCH", tag=TAG, roles=READERS, body=MemberPatch, response=MemberView,
       errors=(404, 409, 422), summary="Edit profile fields (phone: HQ only)")
def patch_member(call: Call, member_id: str) -> MemberView:
    member = svc.update(member_id, call.body, call.principal, bootstrap.members())
    return MemberView.of(member, call.principal)


@route(bp, "/members/{member_id}/merge", "POST", tag=TAG, roles={Role.HQ}, body=MergeRequest, response=MergeView,
       errors=(404, 409, 422), summary="Fold a duplicate member into this one (idempotent)")
def merge_member(call: Call, member_id: str) -> MergeView:
    tiers = program.tiers(bootstrap.ledger())
    record = svc.merge(member_id, call.body.source_member_id, call.principal, bootstrap.members(), tiers.index,
                       tiers.tiers[0].tier_id)
    return MergeView(**record.model_dump())


@route(bp, "/members/{member_id}/export", "GET", tag=TAG, roles=SELF_OR_HQ, response=ExportView, errors=(404,),
       summary="Everything held on the member (PIPL access right)")
def export_member(call: Call, member_id: str) -> ExportView:
    member, records = svc.export(member_id, call.principal, bootstrap.members())
    return ExportView(member=MemberView.of(member, call.principal), records=records, exported_at=clock.now())


@route(bp, "/members/{member_id}", "DELETE", tag=TAG, roles=SELF_OR_HQ, response=ErasedView, errors=(404,),
       summary="Erase personal fields (PIPL deletion right); anonymised sales facts stay")
def erase_member(call: Call, member_id: str) -> ErasedView:
    erased_id = svc.erase(member_id, call.principal, bootstrap.members())
    return ErasedView(member_id=erased_id, status="erased")
