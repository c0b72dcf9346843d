"""HQ's coupon templates: the terms future coupons are issued with, and each template's budget."""
from __future__ import annotations

from ..domain import clock
from ..domain.access import Principal
from ..domain.coupons import Template, TemplateInput
from ..domain.errors import Conflict, NotFound
from ..domain.policy import authorize
from .ledger_common import optimistic
from .ports import CouponRepository


def put_template(template_id: str, cmd: TemplateInput, actor: Principal,
                 coupons: CouponRepository) -> tuple[Template, int, int | None, bool]:
    """Create or replace a template (coupons already issued keep their terms). The budget may not go below
    the coupons already issued from it. Returns the template, issued, left, created."""
    authorize("coupons.put_template", actor)

    def attempt() -> tuple[Template, int, int | None, bool]:
        current = coupons.get_template(template_id)
        budget = coupons.budget(template_id)
        issued = budget.issued
        if cmd.budget is not None and cmd.budget < issued + budget.allocated:
            raise Conflict("the budget cannot go below what was issued from it and allocated to regions and stores",
                           code="budget_below_issued",
                           details={"issued": issued, "allocated": budget.allocated, "budget": cmd.budget})
        version = current.version if current else 0
        template = Template(**cmd.model_dump(), template_id=template_id, version=version + 1,
                            updated_at=clock.to_ms(clock.now()), updated_by=actor.sub)
        coupons.put_template(template, version, budget)
        left = None if cmd.budget is None else cmd.budget - issued - budget.allocated
        return template, issued, left, current is None

    return optimistic(attempt)


def get_template(template_id: str, actor: Principal, coupons: CouponRepository) -> tuple[Template, int, int | None]:
    authorize("coupons.read_template", actor)
    template = coupons.get_template(template_id)
    if template is None:
        raise NotFound("coupon template not found", code="template_not_found", details={"template_id": template_id})
    budget = coupons.budget(template_id)
    return template, budget.issued, budget.left


def list_templates(actor: Principal, coupons: CouponRepository) -> list[tuple[Template, int, int | None]]:
    """Every template with its budget (a brand keeps tens of templates: one GetItem each)."""
    authorize("coupons.list_templates", actor)
    out = []
    for template in sorted(coupons.list_templates(), key=lambda t: t.template_id):
        budget = coupons.budget(template.template_id)
        out.append((template, budget.issued, budget.left))
    return out
