"""`make run`'s demo brand loads on an empty table and loads again without doubling anything."""
from __future__ import annotations


def test_demo_seed_is_idempotent_and_gives_coupons(fresh_table):
    from chalicelib import bootstrap
    from chalicelib.local.demo import MEMBERS, TEMPLATES, seed

    first = seed()
    assert first == {"stores": 6, "members_created": len(MEMBERS), "coupon_templates": len(TEMPLATES),
                     "welcome_coupons": len(MEMBERS)}
    again = seed()
    assert again["members_created"] == 0 and again["welcome_coupons"] == len(MEMBERS)  # the same issue replayed
    assert bootstrap.coupons().budget("welcome-5").issued == len(MEMBERS)
