"""HQ issues coupons of a template to up to 1,000 members at once, from the template's budget.

Three steps, each safe to crash after: (1) the plan (who gets which code, who is skipped and why) and the
budget it needs, written together; (2) each coupon with its member's count, one small transaction each, in
parallel; (3) the answer, with the budget of coupons that could not be issued given back. A retry of the
same issue_id finds the plan and does whatever of (2) and (3) is left; it never issues twice."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any

from ..domain import clock
from ..domain.access import Principal, Role
from ..domain.coupons import Coupon, CouponState, IssueInput, Template, Terms, new_code
from ..domain.errors import Conflict, Forbidden, Invalid, NotFound, StaleRead
from ..domain.policy import StoreRef, allow_role, authorize
from ..domain.pool import HQ, level_of
from ..observability import metrics
from .ledger_common import fingerprint, live_members
from .ports import CouponRepository, LedgerRepository, StoreRepository

WORKERS = 16  # parallel transactions of one issue: 1,000 coupons in a few seconds, well inside 25 s


def usable_template(coupons: CouponRepository, template_id: str) -> Template:
    template = coupons.get_template(template_id)
    if template is None:
        raise NotFound("coupon template not found", code="template_not_found", details={"template_id": template_id})
    if not template.active:
        raise Conflict("this coupon template is not active", code="template_inactive",
                       details={"template_id": template_id})
    if template.valid_to is not None and template.valid_to <= clock.now():
        raise Conflict("this template's validity window has ended: its coupons could never be used",
                       code="template_ended", details={"template_id": template_id,
                                                       "valid_to": clock.iso(template.valid_to)})
    return template


def _level(cmd: IssueInput, actor: Principal, stores: StoreRepository | None) -> str:
    """Where the coupons come from: HQ's budget, or the quota of the region or store named (its manager's;
    HQ may issue from any level). A manager must name their quota."""
    if cmd.store_id is not None:
        store = stores.get(cmd.store_id) if stores is not None else None
        if store is None:
            raise Invalid("unknown store", code="unknown_store",
                          details=[{"loc": ["body", "store_id"], "msg": "no such store"}])
        authorize("coupons.issue", actor, store=store)
    elif cmd.region_id is not None:
        authorize("coupons.issue", actor, store=StoreRef("", cmd.region_id))
    else:
        allow_role("coupons.issue", actor)
        if actor.role is not Role.HQ:
            raise Forbidden("managers issue from their store's or region's quota: name it (store_id or region_id)",
                            code="quota_required")
    return level_of(cmd.store_id, cmd.region_id)


def issue(cmd: IssueInput, actor: Principal, coupons: CouponRepository, ledger: LedgerRepository,
          stores: StoreRepository | None = None) -> tuple[dict[str, Any], bool]:
    """The answer (issued codes, skipped members with a reason) and whether this call created it. `stores`
    is read only to issue from a store's quota."""
    level = _level(cmd, actor, stores)
    if cmd.member_ids is None:
        raise Invalid("member_ids is required here (an audience issue is a job: services/coupon_audience)")
    print_ = fingerprint(cmd.model_dump(mode="json", exclude_none=True))
    return _issue(cmd.issue_id, cmd.template_id, cmd.member_ids, level, print_, coupons, ledger, strict=True)


def issue_chunk(chunk_id: str, template_id: str, member_ids: list[str], level: str, coupons: CouponRepository,
                ledger: LedgerRepository) -> dict[str, Any]:
    """One chunk (<= 1,000 members) of an audience job, through the same plan / coupons / answer steps, under
    the job's deterministic chunk id (access was checked when the job was accepted). A plan already written
    under that id is completed as it stands, whatever members this call names: a chunk re-read after a crash
    may find its page changed meanwhile, and what was planned is what is issued, once."""
    print_ = fingerprint({"chunk_id": chunk_id, "template_id": template_id, "level": level})
    return _issue(chunk_id, template_id, member_ids, level, print_, coupons, ledger, strict=False)[0]


def _issue(issue_id: str, template_id: str, member_ids: list[str], level: str, print_: str,
           coupons: CouponRepository, ledger: LedgerRepository, strict: bool) -> tuple[dict[str, Any], bool]:
    for _ in range(3):
        plan = coupons.get_issue(issue_id)
        if plan is not None:
            if strict and plan["fingerprint"] != print_:
                raise Conflict("issue_id already used for a different issue", code="issue_id_reused",
                               details={"issue_id": issue_id})
            if plan["status"] == "done":
                return coupons.issue_answer(issue_id) or {}, False
            return _complete(issue_id, plan, coupons), True
        template = usable_template(coupons, template_id)
        plan = _plan(member_ids, template, print_, ledger, coupons, level)
        try:
            coupons.start_issue(issue_id, plan, template.template_id, plan["limited"], len(plan["planned"]), level)
        except StaleRead:  # a twin wrote its plan first (or the template changed): look again
            continue
        return _complete(issue_id, plan | {"status": "pending"}, coupons), True
    raise Conflict("this issue kept changing under concurrent requests; retry", code="issue_conflict")


def _plan(member_ids: list[str], template: Template, print_: str, ledger: LedgerRepository,
          coupons: CouponRepository, level: str) -> dict[str, Any]:
    now = clock.to_ms(clock.now())
    live = live_members(ledger, list(dict.fromkeys(member_ids)))
    counts = coupons.counts(sorted({m for m, _ in live.values() if m}), template.template_id)
    planned: list[list[str]] = []
    skipped: list[dict[str, str]] = []
    seen: set[str] = set()
    for asked in member_ids:
        member, why = live[asked]
        if member is None:
            skipped.append({"member_id": asked, "reason": why})
        elif member in seen:
            skipped.append({"member_id": asked, "reason": "duplicate"})
        elif template.per_member_limit is not None and counts[member][0] >= template.per_member_limit:
            skipped.append({"member_id": asked, "reason": "limit_reached"})
        else:
            seen.add(member)
            planned.append([asked, member, new_code()])
    valid_from, valid_to = template.window(now)
    return {"fingerprint": print_, "template_id": template.template_id, "template_version": template.version,
            "terms": template.terms().model_dump(mode="json"), "valid_from": clock.iso(valid_from),
            "valid_to": clock.iso(valid_to), "limit": template.per_member_limit,
            "limited": template.budget is not None or level != HQ, "level": level,
            "issued_at": clock.iso(now), "planned": planned,
            "skipped": skipped, "requested": len(member_ids)}


def _complete(issue_id: str, plan: dict[str, Any], coupons: CouponRepository) -> dict[str, Any]:
    terms = Terms.model_validate(plan["terms"])
    issued_at = datetime.fromisoformat(plan["issued_at"])

    def one(row: list[str]) -> tuple[list[str], str]:
        asked, member, code = row
        coupon = Coupon(code=code, template_id=plan["template_id"], member_id=member, terms=terms,
                        valid_from=datetime.fromisoformat(plan["valid_from"]),
                        valid_to=datetime.fromisoformat(plan["valid_to"]), state=CouponState.AVAILABLE,
                        source=f"issue:{issue_id}", issuer=plan.get("level", HQ), issued_at=issued_at)
        outcome = coupons.issue_coupon(coupon, plan["limit"])
        if outcome == "limit":  # reached since the plan was made (another issue, an exchange, a merge)
            outcome = "limit_reached"
        if outcome == "exists":  # issued by an earlier attempt of this issue, or (2^-68) another coupon's code
            found = coupons.get_coupon(code)
            outcome = "issued" if found is not None and found.source == coupon.source else "code_collision"
        return row, outcome

    with ThreadPoolExecutor(max_workers=WORKERS) as pool:
        outcomes = list(pool.map(one, plan["planned"]))
    issued = [{"member_id": row[1], "code": row[2], **({"requested_as": row[0]} if row[0] != row[1] else {})}
              for row, outcome in outcomes if outcome == "issued"]
    skipped = plan["skipped"] + [{"member_id": row[0], "reason": outcome} for row, outcome in outcomes
                                 if outcome != "issued"]
    answer = {"issue_id": issue_id, "template_id": plan["template_id"], "issuer": plan.get("level", HQ),
              "requested": plan["requested"],
              "issued_count": len(issued), "issued": issued, "skipped": skipped,
              "valid_from": plan["valid_from"], "valid_to": plan["valid_to"], "created_at": plan["issued_at"]}
    if coupons.finish_issue(issue_id, answer, plan["template_id"], plan["limited"],
                            len(plan["planned"]) - len(issued), plan.get("level", HQ),
                            clock.business_day(issued_at)):
        metrics.add_metric(name="CouponsIssued", unit="Count", value=len(issued))
        return answer
    return coupons.issue_answer(issue_id) or answer  # a twin finished first: its answer is the answer
