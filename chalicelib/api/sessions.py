"""WeChat mini-program sign-in and verified-phone binding."""
from __future__ import annotations

from datetime import datetime

from .. import bootstrap
from ..domain.access import Principal, Role
from ..domain.clock import BUSINESS_TZ
from ..services import identity
from .inputs import PhoneBinding, WeChatLogin
from .responses import MemberView, SessionView
from .routing import Call, route

TAG = "sessions"


def _session(result: identity.SignIn) -> SessionView:
    member = None
    if result.member is not None:  # the member sees their own record: full phone
        viewer = Principal(sub="self", role=Role.MEMBER, member_id=result.member.member_id)
        member = MemberView.of(result.member, viewer)
    return SessionView(token=result.token, expires_at=datetime.fromtimestamp(result.expires_at, BUSINESS_TZ),
                       member=member)


@route("/auth/wechat", "POST", op="sessions.wechat_sign_in", tag=TAG, body=WeChatLogin, response=SessionView,
       errors=(422, 503), summary="Exchange a wx.login code for a member token")
def wechat_login(call: Call) -> SessionView:
    return _session(identity.sign_in(call.body.code, bootstrap.wechat(), bootstrap.members(), bootstrap.tokens()))


@route("/members/me/phone", "POST", op="sessions.bind_phone", tag=TAG, body=PhoneBinding, response=SessionView,
       errors=(409, 422, 503), summary="Bind the WeChat-verified phone: joins the existing member or registers one")
def bind_phone(call: Call) -> SessionView:
    body: PhoneBinding = call.body
    return _session(identity.bind_phone(call.principal, body.code, body.store_id,
                                        bool(body.consent and body.consent.marketing), bootstrap.wechat(),
                                        bootstrap.members(), bootstrap.stores(), bootstrap.tokens(),
                                        bootstrap.ledger()))
