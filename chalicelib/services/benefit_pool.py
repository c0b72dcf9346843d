"""The HQ benefit pool: quotas of a template's budget allocated to regions and stores, what each level has
left, and the coupon numbers (per-day stats by issuing level, the monthly cross-store settlement), all read
from counters written with the issues, orders and refunds themselves: never a scan of coupons or orders."""
from __future__ import annotations

from collections.abc import Iterator
from datetime import date

from ..domain import clock
from ..domain.access import Principal, Role
from ..domain.errors import Conflict, DocumentExists, Forbidden, Invalid, NotFound
from ..domain.policy import StoreRef, allow_role, authorize
from ..domain.pool import (
    HQ,
    STAT_SHARDS,
    Allocation,
    AllocationInput,
    DayStats,
    PoolLine,
    SettlementRow,
    level_parts,
    region_level,
    store_level,
)
from ..domain.stores import Store
from ..observability import audit as audit_line
from .ledger_common import fingerprint, optimistic
from .ports import CouponRepository, StoreRepository

MAX_STATS_DAYS = 366
STORE_PAGE = 200


def _stores(stores: StoreRepository) -> Iterator[Store]:
    cursor = None
    while True:
        page, cursor = stores.list(cursor, STORE_PAGE)
        yield from page
        if not cursor:
            return


def _region_stores(stores: StoreRepository, region_id: str) -> list[str]:
    return sorted(s.store_id for s in _stores(stores) if s.region_id == region_id)


def allocate(cmd: AllocationInput, actor: Principal, coupons: CouponRepository,
             stores: StoreRepository) -> tuple[Allocation, bool]:
    """HQ: from the budget to a region or a store. A region manager: from their region's allocation to one of
    its stores. Negative: unissued quota back to whoever gave it. Idempotent by allocation_id."""
    allow_role("pool.allocate", actor)
    if cmd.scope == "region":
        if actor.role is not Role.HQ:
            raise Forbidden("only HQ allocates to regions; region managers allocate to their stores",
                            code="allocation_not_allowed")
        if cmd.scope_id not in {s.region_id for s in _stores(stores)}:
            raise Invalid("no store is in this region", code="unknown_region",
                          details=[{"loc": ["body", "scope_id"], "msg": "no such region"}])
        source, target = HQ, region_level(cmd.scope_id)
    else:
        store = stores.get(cmd.scope_id)
        if store is None:
            raise Invalid("unknown store", code="unknown_store",
                          details=[{"loc": ["body", "scope_id"], "msg": "no such store"}])
        authorize("pool.allocate", actor, store=store)
        source = HQ if actor.role is Role.HQ else region_level(store.region_id)
        target = store_level(store.store_id)
    print_ = fingerprint(cmd.model_dump(mode="json"))

    def replay() -> Allocation | None:
        done = coupons.get_allocation(cmd.allocation_id)
        if done is None:
            return None
        if done["fingerprint"] != print_:
            raise Conflict("allocation_id already used for a different allocation", code="allocation_id_reused",
                           details={"allocation_id": cmd.allocation_id})
        return Allocation.model_validate(done["answer"])

    previous = replay()
    if previous is not None:
        return previous, False
    template = coupons.get_template(cmd.template_id)
    if template is None:
        raise NotFound("coupon template not found", code="template_not_found",
                       details={"template_id": cmd.template_id})
    answer = Allocation(allocation_id=cmd.allocation_id, template_id=cmd.template_id, source=source, target=target,
                        quantity=cmd.quantity, by=actor.sub, created_at=clock.to_ms(clock.now()))

    tries = [template]

    def attempt() -> None:
        # Whether HQ's budget is limited, as read; a retry (the template edited meanwhile) reads it again.
        current = tries[-1] if len(tries) == 1 else coupons.get_template(cmd.template_id) or template
        tries.append(current)
        limited = source != HQ or current.budget is not None
        coupons.allocate(cmd.allocation_id, {"fingerprint": print_, "answer": answer.model_dump(mode="json")},
                         cmd.template_id, source, limited, target, cmd.quantity)

    try:
        optimistic(attempt)
    except DocumentExists:
        again = replay()
        if again is None:
            raise
        return again, False
    audit_line("pool.allocate", actor=actor.sub, role=actor.role.value, template_id=cmd.template_id,
               source=source, target=target, quantity=cmd.quantity)
    return answer, True


def _scope(operation: str, actor: Principal, store_id: str | None, region_id: str | None,
           stores: StoreRepository) -> str:
    """The level a read is about: the store or region named (in the caller's scope), a region manager's own
    region by default, HQ's whole brand when HQ names none."""
    if store_id is not None and region_id is not None:
        raise Invalid("give store_id or region_id, not both", code="validation_error",
                      details=[{"loc": ["query", "store_id"], "msg": "one of store_id, region_id"}])
    if store_id is not None:
        store = stores.get(store_id)
        authorize(operation, actor, store=store or StoreRef(store_id))
        return store_level(store_id)
    if region_id is None and actor.role is Role.REGION_MANAGER:
        region_id = actor.region_id
    if region_id is not None:
        authorize(operation, actor, store=StoreRef("", region_id))
        return region_level(region_id)
    allow_role(operation, actor)
    if actor.role is not Role.HQ:
        raise Invalid("name your store (store_id)", code="validation_error",
                      details=[{"loc": ["query", "store_id"], "msg": "required for store roles"}])
    return HQ


def pool(store_id: str | None, region_id: str | None, actor: Principal, coupons: CouponRepository,
         stores: StoreRepository) -> tuple[str, list[PoolLine]]:
    """Per template at the level: received, passed on, issued, left."""
    level = _scope("pool.read", actor, store_id, region_id, stores)
    lines = []
    for template_id, b in sorted(coupons.pool(level), key=lambda row: row[0]):
        kind, _ = level_parts(level)
        received = b.limit if kind == "hq" else (b.allocated if kind == "region" else b.from_hq + b.from_region)
        out = b.allocated if kind == "hq" else (b.sub_allocated if kind == "region" else 0)
        lines.append(PoolLine(template_id=template_id, level=level, received=received, allocated_out=out,
                              issued=b.issued, left=b.left))
    return level, lines


def stats(template_id: str, store_id: str | None, region_id: str | None, first: date, last: date,
          actor: Principal, coupons: CouponRepository, stores: StoreRepository) -> tuple[str, list[DayStats]]:
    """A template's numbers by day for coupons issued from a level: a store's quota; a region's (its own
    quota and its stores'); or, for HQ naming none, the whole brand (the brand-wide shards)."""
    if last < first or (last - first).days >= MAX_STATS_DAYS:
        raise Invalid("from must not be after to, and the range at most 366 days", code="validation_error",
                      details=[{"loc": ["query", "to"], "msg": "range"}])
    level = _scope("coupons.stats", actor, store_id, region_id, stores)
    if coupons.get_template(template_id) is None:
        raise NotFound("coupon template not found", code="template_not_found", details={"template_id": template_id})
    kind, ident = level_parts(level)
    if kind == "hq":
        levels = [f"ALL#{n}" for n in range(STAT_SHARDS)]
    elif kind == "region":
        levels = [level] + [store_level(s) for s in _region_stores(stores, ident or "")]
    else:
        levels = [level]
    days: dict[date, dict[str, int]] = {}
    for row in coupons.stats(template_id, levels, first, last):
        day = date.fromisoformat(row["day"])
        acc = days.setdefault(day, {})
        for name in ("issued", "redeemed", "discount", "gift_cost", "sales"):
            acc[name] = acc.get(name, 0) + row.get(name, 0)
    # a day whose only redemption was wholly refunded nets to zero: not listed
    return level, [DayStats(day=d, **days[d]) for d in sorted(days) if any(days[d].values())]


def settlement(month: str, store_id: str | None, actor: Principal, coupons: CouponRepository,
               stores: StoreRepository) -> tuple[str, list[SettlementRow]]:
    """Per (template, issuing level, redeeming store): count, discount and gift cost of the month's coupons
    used on posted orders (less those whose order was wholly refunded, in the month they were counted)."""
    level = _scope("coupons.settlement", actor, store_id, None, stores)
    kind, ident = level_parts(level)
    region_stores = set(_region_stores(stores, ident or "")) if kind == "region" else set()

    def concerns(issuer: str, redeemer: str) -> bool:
        if kind == "hq":
            return True
        if kind == "store":
            return issuer == level or redeemer == ident
        issuer_kind, issuer_id = level_parts(issuer)
        return issuer == level or redeemer in region_stores or (issuer_kind == "store" and issuer_id in region_stores)

    totals: dict[tuple[str, str, str], dict[str, int]] = {}
    for row in coupons.settlement(month):
        if not concerns(row["issuer"], row["redeemer"]):
            continue
        acc = totals.setdefault((row["template_id"], row["issuer"], row["redeemer"]), {})
        for name in ("count", "discount", "gift_cost"):
            acc[name] = acc.get(name, 0) + row.get(name, 0)
    rows = [SettlementRow(template_id=t, issuer=i, redeeming_store_id=r, **v) for (t, i, r), v in sorted(totals.items())
            if any(v.values())]
    return level, rows
