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


def test_demo_year_loads_once_and_the_reports_add_it_up(fresh_table):
    """The year of trade `make run` loads: the reports show exactly the generated sales and refunds (summed
    here from the generated list), the nightly job finds its members, and a second load writes nothing."""
    from datetime import timedelta

    from chalicelib import bootstrap
    from chalicelib.domain import clock
    from chalicelib.domain.access import Principal, Role
    from chalicelib.local import demo_history
    from chalicelib.local.demo import seed
    from chalicelib.services import reports
    from functions.rfm import run_locally

    seed()
    today = clock.business_day(clock.now())
    loaded = demo_history.load(today)
    year = demo_history.generate(today)
    assert loaded["history_orders"] == len(year.sales) > 10_000
    assert demo_history.load(today) == {"history": "already loaded"}
    hq = Principal(sub="t", role=Role.HQ)
    first, last = today - timedelta(days=demo_history.DAYS), today - timedelta(days=1)
    kpis = reports.kpis(hq, first, last, "store", stores=bootstrap.stores(), rollups=bootstrap.rollups())
    sh = next(r["kpis"] for r in kpis["rows"] if r["key"] == "sh-001")
    mine = [s for s in year.sales if s.store_id == "sh-001"]
    assert sh["sales_fen"] == sum(s.amount for s in mine) and sh["orders"] == len(mine)
    assert sh["refunds_fen"] == sum(s.refunded for s in mine if s.refunded_at and s.refunded_at.date() <= last)
    assert sh["new_members"] == sum(1 for m in year.members if m.home_store_id == "sh-001"
                                    and clock.business_day(m.registered_at) >= first)
    night = run_locally({"segments": 2}, workers=2)
    assert night["classified"] >= len({s.member_id for s in year.sales if s.member_id})
    report = reports.store_report(hq, "sh-001", None, None, stores=bootstrap.stores(), rollups=bootstrap.rollups(),
                                  rfm=bootstrap.rfm(), members=bootstrap.members())
    assert report["kpis"]["orders"] > 0 and report["top_members"] and report["churn"]
    assert sum(report["hours"][11:14]) > sum(report["hours"][:7])  # lunch is busier than the night
