"""A small demo brand: two regions, six stores (one the online mall), a handful of members."""
from __future__ import annotations

from ..domain.access import Principal, Role
from ..domain.coupons import IssueInput, TemplateInput
from ..domain.kb import ArticleInput
from ..domain.members import Registration
from ..domain.stores import StoreInput
from ..domain.tickets import QueueInput, RoutingRule, TicketInput

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

# Service: an HQ complaints desk that takes refunds, the stores' own queues for the rest, two articles.
QUEUES = {"hq-complaints": dict(kind="hq", name="总部客诉组")}
RULES = [
    dict(name="退款到总部", types=["refund"], queue_id="hq-complaints", assignment="least_open", priority="high"),
    dict(name="投诉留在门店", types=["complaint"], queue_id="{store}", assignment="round_robin"),
]
ARTICLES = {
    "refund-steps": dict(category="refund", title="退款流程", tags=["退款", "POS"],
                         body="顾客持小票到任一门店退款；整单退款时优惠券自动退回（在有效期内）。部分退款不退券。"),
    "opening-hours": dict(category="store", title="营业时间与节假日", tags=["营业时间"],
                          body="门店一般10:00至22:00营业；法定节假日与调休以总部日历为准。"),
}
TICKETS = [
    dict(ticket_id="demo-t1", channel="store", type="complaint", subject="奶茶太甜",
         description="点了三分糖，喝起来是全糖", store_id="sh-001", member=0),
    dict(ticket_id="demo-t2", channel="hotline", type="refund", subject="外卖少送一杯",
         description="顾客来电：外卖订单少了一杯，要求退款", store_id="gz-001", member=3),
]


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
    opened = _service(member_ids)
    return {"stores": len(STORES), "members_created": created, "coupon_templates": len(TEMPLATES),
            "welcome_coupons": issued["issued_count"], "tickets_opened": opened}


def _service(member_ids: list[str]) -> int:
    """Queues, routing rules and articles (again: the same content, no new version), then two tickets."""
    from .. import bootstrap
    from ..services import kb, ticket_queues, tickets

    for queue_id, fields in QUEUES.items():
        ticket_queues.put_queue(queue_id, QueueInput.model_validate(fields), SEEDER, bootstrap.tickets(),
                                bootstrap.stores())
    rules = [RoutingRule.model_validate(r) for r in RULES]
    current, _ = ticket_queues.get_rules(SEEDER, bootstrap.tickets())
    if current != rules:
        ticket_queues.put_rules(rules, None, SEEDER, bootstrap.tickets(), bootstrap.stores())
    for article_id, fields in ARTICLES.items():
        kb.put_article(article_id, ArticleInput.model_validate(fields), SEEDER, bootstrap.kb())
    opened = 0
    for t in TICKETS:
        body = {k: v for k, v in t.items() if k != "member"}
        _, new = tickets.open_ticket(TicketInput.model_validate({**body, "member_id": member_ids[t["member"]]}),
                                     SEEDER, bootstrap.tickets(), bootstrap.ledger(), bootstrap.stores(),
                                     bootstrap.calendars())
        opened += int(new)
    return opened
