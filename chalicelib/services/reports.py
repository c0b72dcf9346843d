"""Store and HQ reports. Additive figures (sales, orders, refunds, coupons, hours, new members) are sums of the
store day rollups the writes themselves keep (domain/rollups.py), so any from/to adds up and no request reads
an order; distinct-member figures (segments, repurchase, best members, churn list) come from the nightly job."""
from __future__ import annotations

from collections.abc import Callable
from datetime import date, timedelta
from typing import Any

from ..domain import clock
from ..domain import rollups as calc
from ..domain.access import Principal, Role
from ..domain.errors import Invalid, NotFound, Unauthorized
from ..domain.policy import allow_role, authorize, in_store_scope
from ..domain.segments import ALL_SEGMENTS
from ..domain.stores import Store
from .ports import MemberRepository, RfmRepository, RollupRepository, StoreRepository

GROUPS = ("region", "city", "store", "store_type", "day")
DEFAULT_DAYS = 30


def resolve_range(first: date | None, last: date | None, where: str = "query") -> tuple[date, date]:
    """Default: the 30 business days up to yesterday (the morning's question); `to` alone: the 30 days to it.
    `where`: the part of the request the range came in (query or body), for the error's location."""
    last = last or clock.business_day(clock.now()) - timedelta(days=1)
    first = first or last - timedelta(days=DEFAULT_DAYS - 1)
    if first > last:
        raise Invalid("from is after to", code="validation_error",
                      details=[{"loc": [where, "from"], "msg": "must be on or before to"}])
    if (last - first).days + 1 > calc.MAX_DAYS:
        raise Invalid(f"a report covers at most {calc.MAX_DAYS} days", code="range_too_long",
                      details={"max_days": calc.MAX_DAYS, "days": (last - first).days + 1})
    return first, last


def _store(stores: StoreRepository, store_id: str) -> Store:
    store = stores.get(store_id)
    if store is None:
        raise NotFound("no such store", code="store_not_found", details={"store_id": store_id})
    return store


def _mask(name: str | None) -> str | None:
    """A report is read on a shop screen: the first character of the name is enough to recognise a regular."""
    return (name[0] + "*" * min(2, len(name) - 1)) if name else None


def store_report(actor: Principal, store_id: str, first: date | None, last: date | None, *, stores: StoreRepository,
                 rollups: RollupRepository, rfm: RfmRepository, members: MemberRepository) -> dict[str, Any]:
    first, last = resolve_range(first, last)
    store = _store(stores, store_id)
    authorize("reports.store", actor, store=store)
    items = rollups.days(store_id, first, last)
    total = calc.totals(items)
    daily = []
    for day, t in calc.by_day(items, first, last).items():
        k = t.kpis()
        daily.append({"day": day.isoformat(), **{f: k[f] for f in ("sales_fen", "refunds_fen", "net_sales_fen",
                                                                    "orders", "member_orders", "new_members")}})
    night = _night(rfm, store_id)
    listed = [row["member_id"] for row in (night or {}).get("top", []) + (night or {}).get("churn", [])]
    labels = members.labels(listed) if listed else {}

    def labelled(row: dict[str, Any]) -> dict[str, Any]:
        name, phone = labels.get(row["member_id"], (None, None))
        return {**row, "name": _mask(name), "phone_masked": phone}

    return {
        "store": {"store_id": store.store_id, "name": store.name, "region_id": store.region_id, "city": store.city,
                  "store_type": store.store_type.value},
        "from": first.isoformat(), "to": last.isoformat(), "days": (last - first).days + 1,
        "generated_at": clock.iso(clock.now()),
        "kpis": total.kpis(), "daily": daily, "hours": total.hours(),
        "segments": None if night is None else {"as_of": night["as_of"], "counts": night["segments"],
                                                "change": night["change"], "members": night["members"]},
        "repurchase": None if night is None else night["repurchase"],
        "top_members": [labelled({k: row[k] for k in ("member_id", "monetary", "frequency", "recency_days",
                                                      "segment", "tier")}) for row in (night or {}).get("top", [])],
        "churn": [labelled(row) for row in (night or {}).get("churn", [])],
    }


def _night(rfm: RfmRepository, store_id: str) -> dict[str, Any] | None:
    """The store's latest finished night, with each segment's change since the night before (None: no night
    has run yet; a night in which the store had no members counts zeros)."""
    as_of = rfm.latest()
    if as_of is None:
        return None
    body = rfm.night(as_of, "STORE", store_id) or {
        "as_of": as_of.isoformat(), "segments": dict.fromkeys(ALL_SEGMENTS, 0), "members": 0,
        "repurchase": {"buyers": 0, "repeat_buyers": 0, "rate_permille": 0}}
    before = rfm.night(as_of - timedelta(days=1), "STORE", store_id)
    change = None if before is None else {
        s: body["segments"].get(s, 0) - before["segments"].get(s, 0) for s in ALL_SEGMENTS}
    counts = {s: body["segments"].get(s, 0) for s in ALL_SEGMENTS}
    return {**body, "segments": counts, "change": change}


# ---- HQ and region analytics ---------------------------------------------------------------------------------
def _all_stores(stores: StoreRepository) -> list[Store]:
    found, cursor = [], None
    while True:
        page, cursor = stores.list(cursor, 100)
        found += page
        if not cursor:
            return found


def _group(store: Store | None, group_by: str) -> tuple[str, str]:
    """(key, label) of a store's row; None is the day rows of new members with no home store (HQ only)."""
    if store is None:
        return calc.NO_STORE, "no home store"
    if group_by == "region":
        return store.region_id, store.region_id
    if group_by == "city":
        return store.city, store.city
    if group_by == "store_type":
        return store.store_type.value, store.store_type.value
    return store.store_id, store.name


def kpis(actor: Principal, first: date | None, last: date | None, group_by: str, *, stores: StoreRepository,
         rollups: RollupRepository) -> dict[str, Any]:
    """The KPIs side by side. HQ: every store; a region manager: the stores of their region only, whatever the
    grouping (a city or store type that spans regions shows only their part)."""
    first, last = resolve_range(first, last)
    allow_role("analytics.kpis", actor)
    in_scope = [s for s in _all_stores(stores) if in_store_scope(actor, s.store_id, s.region_id)]
    ids: list[str] = [s.store_id for s in in_scope] + ([calc.NO_STORE] if actor.role is Role.HQ else [])
    by_id: dict[str, Store | None] = {s.store_id: s for s in in_scope}
    items = rollups.many(ids, first, last)
    groups: dict[str, tuple[str, calc.Totals]] = {}
    total = calc.Totals()
    for store_id, rows in items.items():
        if store_id == calc.NO_STORE and not rows:
            continue  # no registrations without a home store: no row for them
        total.add_all(rows)
        if group_by == "day":
            for day, t in calc.by_day(rows, first, last).items():
                key = day.isoformat()
                groups.setdefault(key, (key, calc.Totals()))[1].add(t.counts)
            continue
        key, label = _group(by_id.get(store_id), group_by)
        groups.setdefault(key, (label, calc.Totals()))[1].add_all(rows)
    if group_by == "day":
        for day in calc.days(first, last):
            groups.setdefault(day.isoformat(), (day.isoformat(), calc.Totals()))
        ordered = sorted(groups.items())
    else:
        ordered = sorted(groups.items(), key=lambda kv: (-kv[1][1].kpis()["net_sales_fen"], kv[0]))
    return {"from": first.isoformat(), "to": last.isoformat(), "group_by": group_by,
            "scope": "brand" if actor.role is Role.HQ else f"region {actor.region_id}",
            "stores": len(in_scope),
            "rows": [{"key": key, "label": label, "kpis": t.kpis()} for key, (label, t) in ordered],
            "total": total.kpis(), "generated_at": clock.iso(clock.now())}


# ---- signed links to the pages ------------------------------------------------------------------------------
def link_claims(actor: Principal, page: str, params: dict[str, Any]) -> dict[str, Any]:
    """What a report link carries: the page and its parameters, and the caller as they are now (the page is
    authorised again with it when opened, by the same rules as the JSON report)."""
    return {"page": page, **params, "sub": actor.sub, "role": actor.role.value,
            "store_ids": sorted(actor.store_ids), "region_id": actor.region_id}


def principal_of(claims: dict[str, Any]) -> Principal:
    return Principal(sub=str(claims["sub"]), role=Role(claims["role"]), store_ids=frozenset(claims["store_ids"]),
                     region_id=claims.get("region_id"))


def store_link(actor: Principal, store_id: str, first: date | None, last: date | None, stores: StoreRepository,
               sign: Callable[[dict[str, Any]], tuple[str, int]]) -> tuple[str, int]:
    first, last = resolve_range(first, last, "body")
    authorize("reports.store_link", actor, store=_store(stores, store_id))
    return sign(link_claims(actor, "store", {"store_id": store_id, "from": first.isoformat(),
                                             "to": last.isoformat()}))


def analytics_link(actor: Principal, first: date | None, last: date | None, group_by: str,
                   sign: Callable[[dict[str, Any]], tuple[str, int]]) -> tuple[str, int]:
    first, last = resolve_range(first, last, "body")
    allow_role("analytics.report_link", actor)
    return sign(link_claims(actor, "analytics", {"from": first.isoformat(), "to": last.isoformat(),
                                                 "group_by": group_by}))


def _link_for(claims: dict[str, Any], page: str) -> Principal:
    if claims.get("page") != page:
        raise Unauthorized("this link is for another page", code="invalid_link")
    return principal_of(claims)


def store_page(claims: dict[str, Any], store_id: str, **repos: Any) -> dict[str, Any]:
    """The store report a verified link names, for the scope it carries (checked again now: a link made
    before a store moved region opens only what its caller may still see under the same rules)."""
    actor = _link_for(claims, "store")
    if claims.get("store_id") != store_id:
        raise NotFound("this link is for another store", code="store_not_found", details={"store_id": store_id})
    return store_report(actor, store_id, date.fromisoformat(claims["from"]), date.fromisoformat(claims["to"]),
                        **repos)


def analytics_page(claims: dict[str, Any], **repos: Any) -> dict[str, Any]:
    actor = _link_for(claims, "analytics")
    return kpis(actor, date.fromisoformat(claims["from"]), date.fromisoformat(claims["to"]), claims["group_by"],
                **repos)
