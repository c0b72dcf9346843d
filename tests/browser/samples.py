"""Sample answers of the report routes, shaped exactly as the JSON they serve: a full month of a busy store,
an empty range of a new one, and an analytics answer per grouping. Seeded, so every run draws the same."""
from __future__ import annotations

import random
from datetime import date, timedelta
from typing import Any

from chalicelib.domain.segments import ALL_SEGMENTS

HOSTILE = "<script>alert(1)</script>"  # the page must show this as text, never run it
SURNAMES = "张王李赵刘陈杨黄周吴"
TIERS = ("silver", "gold", "platinum", None)


def _kpis(sales: int, refunds_fen: int, orders: int, member_orders: int, new_members: int, rng: random.Random
          ) -> dict[str, int]:
    issued = rng.randint(0, 400) if orders else 0
    redeemed = min(issued, orders, rng.randint(0, 200))
    return {"sales_fen": sales, "refunds_fen": refunds_fen, "net_sales_fen": sales - refunds_fen, "orders": orders,
            "member_orders": member_orders, "guest_orders": orders - member_orders, "refunds": refunds_fen // 5000,
            "average_ticket_fen": (sales - refunds_fen) // orders if orders else 0,
            "member_share_permille": member_orders * 1000 // orders if orders else 0, "new_members": new_members,
            "coupons_issued": issued, "coupons_redeemed": redeemed, "coupon_orders": redeemed,
            "discount_fen": redeemed * 1000, "coupon_redemption_permille": redeemed * 1000 // issued if issued else 0,
            "points_issued": sales // 100, "points_reversed": refunds_fen // 100}


def full_store_report() -> dict[str, Any]:
    rng = random.Random(16)
    start = date(2026, 11, 1)
    daily = []
    for i in range(30):
        orders = rng.randint(0, 90) if i != 10 else 0  # a closed day
        sales = sum(rng.randint(1500, 30000) for _ in range(orders))
        refunds = rng.choice((0, 0, 0, 4000, 12000)) if i != 10 else 8000  # the closed day only refunds
        member_orders = orders * rng.randint(40, 80) // 100
        daily.append({"day": (start + timedelta(days=i)).isoformat(), "sales_fen": sales, "refunds_fen": refunds,
                      "net_sales_fen": sales - refunds, "orders": orders, "member_orders": member_orders,
                      "new_members": rng.randint(0, 6)})
    totals = {k: sum(d[k] for d in daily) for k in ("sales_fen", "refunds_fen", "orders", "member_orders",
                                                    "new_members")}
    kpis = _kpis(totals["sales_fen"], totals["refunds_fen"], totals["orders"], totals["member_orders"],
                 totals["new_members"], rng)
    hours = [0] * 24
    for _ in range(kpis["orders"]):
        hours[min(23, max(7, int(rng.gauss(13, 3.5))))] += 1
    counts = {s: rng.randint(0, 900) for s in ALL_SEGMENTS}
    change = {s: rng.randint(-40, 40) for s in ALL_SEGMENTS}
    change[ALL_SEGMENTS[0]] = -17  # at least one fall and one rise, whatever the seed draws
    change[ALL_SEGMENTS[1]] = 9
    top = []
    for i in range(50):
        top.append({"member_id": f"M{i:025d}", "name": f"{SURNAMES[i % 10]}*" if i != 3 else HOSTILE,
                    "phone_masked": f"138****{i:04d}" if i % 7 else None, "monetary": 900_000 - i * 15_013,
                    "frequency": 30 - i // 2, "recency_days": i % 13, "segment": ALL_SEGMENTS[i % 8],
                    "tier": TIERS[i % 4]})
    churn = [{"member_id": f"C{i:025d}", "name": f"{SURNAMES[i]}*" if i else None,
              "phone_masked": f"139****{i:04d}", "monetary": 50_000 - i * 3_000, "lifetime_spend": 800_000 - i * 7_000,
              "usual_gap_days": f"{12 + i}.5", "days_since_purchase": 40 + i * 3, "tier": TIERS[i % 4]}
             for i in range(8)]
    return {"store": {"store_id": "S1", "name": "静安寺旗舰店 " + HOSTILE, "region_id": "R1", "city": "上海",
                      "store_type": "standard"},
            "from": "2026-11-01", "to": "2026-11-30", "days": 30, "generated_at": "2026-12-01T08:00:00+08:00",
            "kpis": kpis, "daily": daily, "hours": hours,
            "segments": {"as_of": "2026-11-30", "counts": counts, "change": change, "members": sum(counts.values())},
            "repurchase": {"buyers": 1200, "repeat_buyers": 378, "rate_permille": 315},
            "top_members": top, "churn": churn}


def empty_store_report() -> dict[str, Any]:
    """A store opened yesterday: no orders, no nightly run yet, nothing to list."""
    days = [(date(2026, 11, 1) + timedelta(days=i)).isoformat() for i in range(7)]
    zero = dict.fromkeys(("sales_fen", "refunds_fen", "net_sales_fen", "orders", "member_orders", "guest_orders",
                          "refunds", "average_ticket_fen", "member_share_permille", "new_members",
                          "coupons_issued", "coupons_redeemed", "coupon_orders", "discount_fen",
                          "coupon_redemption_permille", "points_issued", "points_reversed"), 0)
    return {"store": {"store_id": "S9", "name": "New store", "region_id": "R1", "city": "杭州",
                      "store_type": "kiosk"},
            "from": days[0], "to": days[-1], "days": 7, "generated_at": "2026-11-08T08:00:00+08:00",
            "kpis": zero, "daily": [{"day": d, "sales_fen": 0, "refunds_fen": 0, "net_sales_fen": 0, "orders": 0,
                                     "member_orders": 0, "new_members": 0} for d in days],
            "hours": [0] * 24, "segments": None, "repurchase": None, "top_members": [], "churn": []}


def analytics(group_by: str = "region") -> dict[str, Any]:
    rng = random.Random(group_by)
    if group_by == "day":
        keys = [((date(2026, 11, 1) + timedelta(days=i)).isoformat(), None) for i in range(30)]
        keys.reverse()  # arrives newest first: the chart must still read in day order
    else:
        keys = [("R1", "East China 华东"), ("R2", "South China 华南"), ("R3", HOSTILE), ("R4", "West 西部")]
    rows = []
    for key, label in keys:
        orders = rng.randint(0, 3000)
        sales = orders * rng.randint(3000, 9000)
        rows.append({"key": key, "label": label or key,
                     "kpis": _kpis(sales, rng.randint(0, sales // 20), orders, orders * 3 // 5,
                                   rng.randint(0, 80), rng)})
    rows[-1]["kpis"] = _kpis(0, 0, 0, 0, 0, rng)  # a place with nothing this month
    total = {k: sum(r["kpis"][k] for r in rows) for k in rows[0]["kpis"]}
    total["average_ticket_fen"] = total["net_sales_fen"] // total["orders"]
    total["member_share_permille"] = total["member_orders"] * 1000 // total["orders"]
    total["coupon_redemption_permille"] = total["coupons_redeemed"] * 1000 // max(total["coupons_issued"], 1)
    return {"from": "2026-11-01", "to": "2026-11-30", "group_by": group_by, "scope": "brand", "rows": rows,
            "total": total, "generated_at": "2026-12-01T08:00:00+08:00"}


def empty_analytics() -> dict[str, Any]:
    zero = empty_store_report()["kpis"]
    return {"from": "2026-11-01", "to": "2026-11-30", "group_by": "store", "scope": "region R9", "rows": [],
            "total": zero, "generated_at": "2026-12-01T08:00:00+08:00"}


# The figure names the pages promise (chalicelib/api/report_html.py), stated again from the JSON alone: what a
# page shows must equal what its JSON says, figure by figure.
def store_figures(report: dict[str, Any]) -> dict[str, str]:
    f = {f"kpis.{k}": str(v) for k, v in report["kpis"].items()}
    if any(d["net_sales_fen"] or d["orders"] for d in report["daily"]):
        f |= {f"daily.{d['day']}.net_sales_fen": str(d["net_sales_fen"]) for d in report["daily"]}
    if any(report["hours"]):
        f |= {f"hours.{h}": str(n) for h, n in enumerate(report["hours"])}
    seg = report["segments"]
    if seg is not None:
        f |= {f"segments.counts.{s}": str(n) for s, n in seg["counts"].items()}
        f |= {f"segments.change.{s}": str(n) for s, n in (seg["change"] or {}).items()}
        f |= {"segments.members": str(seg["members"]), "segments.as_of": seg["as_of"]}
    k = report["kpis"]
    if (k["coupons_issued"] or k["coupons_redeemed"] or k["coupon_orders"]) and k["orders"]:
        f["funnel.coupon_order_share_permille"] = str(k["coupon_orders"] * 1000 // k["orders"])
    if report["repurchase"] is not None:
        f |= {f"repurchase.{k}": str(v) for k, v in report["repurchase"].items()}
    for i, m in enumerate(report["top_members"]):
        f |= {f"top_members.{i}.{k}": str(m[k]) for k in ("member_id", "monetary", "frequency", "recency_days")}
    for i, m in enumerate(report["churn"]):
        f |= {f"churn.{i}.{k}": str(m[k]) for k in ("member_id", "monetary", "lifetime_spend", "usual_gap_days",
                                                     "days_since_purchase")}
    f |= {"store.name": report["store"]["name"], "store.store_id": report["store"]["store_id"],
          "from": report["from"], "to": report["to"], "days": str(report["days"]),
          "generated_at": report["generated_at"]}
    return f


ANALYTICS_KPIS = ("orders", "net_sales_fen", "average_ticket_fen", "member_share_permille", "new_members",
                  "coupon_redemption_permille")


def analytics_figures(answer: dict[str, Any]) -> dict[str, str]:
    f = {f"total.{k}": str(answer["total"][k]) for k in ANALYTICS_KPIS}
    for r in answer["rows"]:
        f |= {f"rows.{r['key']}.{k}": str(r["kpis"][k]) for k in ANALYTICS_KPIS}
        f[f"chart.{r['key']}.net_sales_fen"] = str(r["kpis"]["net_sales_fen"])
    f |= {k: answer[k] for k in ("from", "to", "group_by", "scope", "generated_at")}
    return f
