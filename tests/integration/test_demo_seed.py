"""`make run`'s demo brand loads on an empty table and loads again without doubling anything."""
from __future__ import annotations


def test_demo_seed_is_idempotent_and_gives_coupons(fresh_table):
    from chalicelib import bootstrap
    from chalicelib.local.demo import MEMBERS, TEMPLATES, TICKETS, seed

    first = seed()
    assert first == {"stores": 6, "members_created": len(MEMBERS), "coupon_templates": len(TEMPLATES),
                     "welcome_coupons": len(MEMBERS), "tickets_opened": len(TICKETS)}
    again = seed()
    assert again["members_created"] == 0 and again["welcome_coupons"] == len(MEMBERS)  # the same issue replayed
    assert again["tickets_opened"] == 0  # replayed by ticket_id
    assert bootstrap.coupons().budget("welcome-5").issued == len(MEMBERS)
    refund = bootstrap.tickets().get("demo-t2")[0]
    assert (refund.queue_id, refund.priority.value, refund.routed_by) == ("hq-complaints", "high", "退款到总部")
    assert bootstrap.tickets().get("demo-t1")[0].queue_id == "store-sh-001"
    assert bootstrap.tickets().routing_rules()[1] == 1  # the rules saved once, not once per seed
