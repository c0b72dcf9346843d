"""WeChat mini-program sign-in and verified-phone binding."""
from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from chalice import Blueprint

from .. import bootstrap
from ..domain.access import Principal, Role
from ..domain.clock import BUSINESS_TZ
from ..services import identity
from .members import attach_guest_orders_safely
from .routing import Call, route
from .schemas import MemberView, PhoneBinding, SessionView, WeChatLogin

bp = Blueprint(__name__)
TAG = "sessions"


def _session(result: identity.SignIn) -> SessionView:
    member = None
    if result.member is not None:  # the member sees their own record: full phone
        viewer = Principal(sub="self", role=Role.MEMBER, member_id=result.member.member_id)
        member = MemberView.of(result.member, viewer)
    return SessionView(token=result.token, expires_at=datetime.fromtimestamp(result.expires_at, BUSINESS_TZ),
                       member=member)


@route(bp, "/auth/wechat", "POST", tag=TAG, public=True, body=WeChatLogin, response=SessionView, errors=(422, 503),
       summary="Exchange a wx.login code for a member token")
def wechat_login(call: Call) -> SessionView:
    result = identity.sign_in(call.body.code, bootstrap.wechat(), bootstrap.members(), bootstrap.tokens())
    return _session(result)


@route(bp, "/members/me/phone", "POST", tag=TAG, roles={Role.MEMBER}, body=PhoneBinding, response=SessionView,
       errors=(409, 422, 503), summary="Bind the WeChat-verified phone: joins the existing member or registers one")
def bind_phone(call: Call) -> SessionView:
    body: PhoneBinding = call.body
    result = identity.bind_phone(call.principal, body.code, body.store_id,
                                 bool(body.consent and body.consent.marketing), bootstrap.wechat(),
                                 bootstrap.members(), bootstrap.stores(), bootstrap.tokens())
    if result.member is not None and result.member.phone and \
            attach_guest_orders_safely(result.member.member_id, result.member.phone):
        result = replace(result, member=bootstrap.members().get(result.member.member_id))
    return _session(result)
