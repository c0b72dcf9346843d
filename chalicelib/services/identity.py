"""Member sign-in from the WeChat mini-program, and binding the WeChat-verified phone.

A member never types their phone: it comes only from WeChat's phone-number API, so nobody can claim
someone else's membership. Answers are the same whether the phone was new or known.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..domain import clock
from ..domain.access import Principal
from ..domain.errors import Conflict, Invalid, NotFound, PhoneTaken, Unauthorized
from ..domain.ids import new_id
from ..domain.members import AuditEntry, Channel, Consent, Member
from ..domain.phone import normalize_phone
from ..domain.policy import authorize
from ..observability import metrics
from .guest_orders import attach_after_registration
from .members import resolve
from .ports import LedgerRepository, MemberRepository, StoreRepository, TokenIssuer, WeChat


@dataclass(frozen=True)
class SignIn:
    token: str
    expires_at: int
    member: Member | None


def sign_in(code: str, wechat: WeChat, members: MemberRepository, tokens: TokenIssuer) -> SignIn:
    openid = wechat.openid_for_login_code(code)
    openid_hash, member_id = members.ensure_openid(openid)
    member = _bound_member(members, openid_hash, member_id)
    token, exp = tokens.mint_member_token(openid_hash=openid_hash, member_id=member.member_id if member else None)
    return SignIn(token=token, expires_at=exp, member=member)


def _bound_member(members: MemberRepository, openid_hash: str, member_id: str | None) -> Member | None:
    """The live member a login is bound to, or None. A login still naming a member that no longer exists or
    was erased (left by erasures before they reached every login) is released: the person is new again,
    never an error at sign-in."""
    if not member_id:
        return None
    try:
        return resolve(members, member_id)[0]
    except NotFound:
        members.release_openid(openid_hash, member_id)
        return None


def bind_phone(actor: Principal, code: str, store_id: str | None, marketing_consent: bool, wechat: WeChat,
               members: MemberRepository, stores: StoreRepository, tokens: TokenIssuer,
               ledger: LedgerRepository) -> SignIn:
    """Bind the signed-in WeChat user to the member holding their verified phone, registering one if none;
    then credit the phone's recent guest orders."""
    authorize("sessions.bind_phone", actor)
    if not actor.openid_hash:  # a member token minted by the mini-program's sign-in, not a console one
        raise Unauthorized("sign in with WeChat first", code="wechat_login_required")
    openid, bound_id = members.openid_by_hash(actor.openid_hash)
    if openid is None:
        raise Unauthorized("sign in with WeChat again", code="wechat_login_required")
    country, number = wechat.phone_for_code(code)
    if country not in ("86", "+86"):
        raise Invalid("only mainland China numbers can be members", code="unsupported_phone_region",
                      details=[{"loc": ["body", "code"], "msg": "phone is not a +86 number"}])
    phone = normalize_phone(number)
    entry = AuditEntry(actor=actor.sub, role=actor.role.value, action="member.phone_verified", fields=["phone"],
                       at=clock.now())
    holder_id = members.member_for_phone_marker(phone)
    bound = _bound_member(members, actor.openid_hash, bound_id)
    if bound is not None:
        member = bound
        if member.phone != phone:
            if holder_id and holder_id != member.member_id:
                raise Conflict("this phone belongs to another membership; ask the store to merge them",
                               code="phone_bound_elsewhere")
            members.change_phone(member, phone, entry)
    elif holder_id:
        member, _ = resolve(members, holder_id)
        members.bind_openid(member.member_id, openid, entry)
    else:
        store = stores.get(store_id) if store_id else None
        if store_id and store is None:
            raise Invalid("unknown store", code="unknown_store",
                          details=[{"loc": ["body", "store_id"], "msg": "no such store"}])
        now = clock.now()
        member = Member(member_id=new_id(), phone=phone, openid=openid, home_store_id=store_id,
                        registration_channel=Channel.MINIPROGRAM, channels=frozenset({Channel.MINIPROGRAM}),
                        stores_visited=frozenset({store_id}) if store_id else frozenset(),
                        consent=Consent(marketing=marketing_consent, updated_at=now), registered_at=now,
                        updated_at=now)
        try:
            members.create(member, entry.model_copy(update={"action": "member.registered"}))
            metrics.add_metric(name="MemberRegistered", unit="Count", value=1)
        except PhoneTaken as taken:  # registered at a counter a moment ago: bind to that member
            member, _ = resolve(members, taken.member_id)
            members.bind_openid(member.member_id, openid, entry)
    member, _ = resolve(members, member.member_id)
    if member.phone and attach_after_registration(member.member_id, member.phone, members, ledger):
        member = members.get(member.member_id) or member
    token, exp = tokens.mint_member_token(openid_hash=actor.openid_hash, member_id=member.member_id)
    return SignIn(token=token, expires_at=exp, member=member)
