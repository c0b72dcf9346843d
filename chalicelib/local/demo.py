"""A small demo brand: two regions, six stores (one the online mall), a handful of members."""
from __future__ import annotations

from ..domain.access import Principal, Role
from ..domain.coupons import IssueInput, TemplateInput
from ..domain.members import Registration
from ..domain.stores import StoreInput

HOURS = {d: {"open": "10:00", "close": "22:00"} for d in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")}

STORES = {
    "sh-001": dict(name="上海南京西路店", region_id="east", city="上海", store_type="flagship", opened_on="2019-05-01"),
    "sh-002": dict(name="上海徐家汇店", region_id="east", city="上海", store_type="standard", opened_on="2021-09-18"),
    "hz-001": dict(name="杭州湖滨店", region_id="east", city="杭州", store_type="standard", opened_on="2022-03-12"),
    "gz-001": dict(name="广州天河店", region_id="south", city="广州", store_type="standard", opened_on="2020-11-11"),
    "sz-001": dict(name="深圳万象城店", region_id="south", city="深圳", store_type="kiosk", opened_on="2023-06-01"),
    "mall": dict(name="官方商城", region_id="online", city="上海", store_type="online"),
}

MEMBERS = [
    dict(phone="13800000001", name="王小明", gender="male", birthday="1990-08-08", channel="store", store_id="sh-001"),
    dict(phone="13800000002", name="李娜", gender="female", birthday="1995-02-14", channel="store", store_id="sh-002"),
    dict(phone="13800000003", name="张伟", channel="mall", store_id="mall"),
    dict(phone="13900000004", name="陈静 🌸", gender="female", channel="store", store_id="gz-001"),
    dict(phone="13900000005", channel="app", store_id="sz-001"),
]

TEMPLATES = {
    "welcome-5": dict(name="新会员无门槛5元", kind="cash", value=500, valid_days=30, per_member_limit=1,
                      stackable=True),
    "spend-200-30": dict(name="满200减30", kind="threshold", value=3_000, min_spend=20_000, valid_days=14,
                         budget=1_000),
    "tea-85": dict(name="奶茶85折", kind="discount", pct=85, cap=2_000, valid_days=7, points_price=300,
                   store_scope="regions", region_ids=["east"]),
    "cake-gift": dict(name="生日小蛋糕", kind="gift", gift={"name": "小蛋糕", "cost": 800}, valid_days=30,
                      points_price=500),
}

SEEDER = Principal(sub="seed", role=Role.HQ)


def seed() -> dict[str, int]:
    from .. import bootstrap
    from ..services import coupon_issues, coupon_templates, members, stores

    for store_id, fields in STORES.items():
        hours = HOURS if fields["store_type"] != "online" else {}
        stores.put_store(store_id, StoreInput.model_validate({**fields, "business_hours": hours}), SEEDER,
                         bootstrap.stores())
    created, member_ids = 0, []
    for m in MEMBERS:
        member, new = members.register(Registration.model_validate({**m, "consent": {"marketing": True}}), SEEDER,
                                       bootstrap.members(), bootstrap.stores())
        created += int(new)
        member_ids.append(member.member_id)
    for template_id, terms in TEMPLATES.items():
        coupon_templates.put_template(template_id, TemplateInput.model_validate(terms), SEEDER, bootstrap.coupons())
    issued, _ = coupon_issues.issue(IssueInput(issue_id="demo-welcome", template_id="welcome-5", member_ids=member_ids),
                                    SEEDER, bootstrap.coupons(), bootstrap.ledger(), bootstrap.stores())
    return {"stores": len(STORES), "members_created": created, "coupon_templates": len(TEMPLATES),
            "welcome_coupons": issued["issued_count"]}
