import pytest

from chalicelib.domain.access import Principal, Role, require_role, require_self, require_store
from chalicelib.domain.errors import Forbidden


def p(role, **kw):
    return Principal(sub="x", role=Role(role), **kw)


def test_member_may_only_touch_own_record():
    require_self(p("member", member_id="A"), "A")
    with pytest.raises(Forbidden):
        require_self(p("member", member_id="A"), "B")
    with pytest.raises(Forbidden):
        require_self(p("member"), "B")  # a member token not yet bound to a member
    require_self(p("staff", store_ids=frozenset({"s1"})), "B")  # staff: other checks decide


@pytest.mark.parametrize("principal,store,region,allowed", [
    (p("staff", store_ids=frozenset({"s1"})), "s1", "east", True),
    (p("staff", store_ids=frozenset({"s1"})), "s2", "east", False),
    (p("store_manager", store_ids=frozenset({"s1"})), "s2", "east", False),
    (p("integration", store_ids=frozenset({"mall"})), "mall", "online", True),
    (p("integration", store_ids=frozenset({"mall"})), "s1", "east", False),
    (p("region_manager", region_id="east"), "s1", "east", True),
    (p("region_manager", region_id="east"), "g1", "south", False),
    (p("region_manager"), "s1", None, False),  # no region claim: nothing, not everything
    (p("hq"), "anything", None, True),
    (p("member", member_id="A"), "s1", "east", False),
])
def test_store_scope(principal, store, region, allowed):
    if allowed:
        require_store(principal, store, region)
    else:
        with pytest.raises(Forbidden):
            require_store(principal, store, region)


def test_role_gate():
    require_role(p("hq"), {Role.HQ})
    with pytest.raises(Forbidden):
        require_role(p("staff"), {Role.HQ})
