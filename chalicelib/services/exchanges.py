"""A member exchanges points for a coupon: the points spent (soonest-expiring lots first) and the coupon
issued in one transaction, so neither happens without the other."""
from __future__ import annotations

from typing import Any

from ..domain import clock
from ..domain.access import Principal
from ..domain.coupons import Coupon, CouponState, ExchangeInput, new_code
from ..domain.errors import Conflict, StaleRead
from ..domain.ids import new_id
from ..domain.ledger import Change, Document, LedgerEntry
from ..domain.policy import authorize
from ..observability import metrics
from .coupon_issues import usable_template
from .ledger_common import fingerprint, idempotent, live_member, replay_at_live_member, spend
from .ports import CouponRepository, LedgerRepository

# Items besides the lots: state, entry, document, coupon, member count, budget, 2 day stats (at most 100).
MAX_LOTS = 90


def exchange(member_id: str, cmd: ExchangeInput, actor: Principal, ledger: LedgerRepository,
             coupons: CouponRepository) -> tuple[dict[str, Any], bool]:
    authorize("coupons.exchange", actor, member_id=member_id)
    print_ = fingerprint(cmd.model_dump(mode="json"))

    def attempt() -> dict[str, Any]:
        _, state = live_member(ledger, member_id)
        mid = state.member_id
        replay_at_live_member(ledger, "exchange", member_id, mid, cmd.exchange_id, print_)
        template = usable_template(coupons, cmd.template_id)
        price = template.points_price
        if price is None:
            raise Conflict("this coupon cannot be exchanged for points", code="not_exchangeable",
                           details={"template_id": cmd.template_id})
        count, merged = coupons.counts([mid], template.template_id)[mid]
        if merged:
            raise StaleRead()  # merged away since it was read: the survivor exchanges
        if template.per_member_limit is not None and count >= template.per_member_limit:
            raise Conflict("this member already holds as many of these coupons as allowed", code="limit_reached",
                           details={"per_member_limit": template.per_member_limit})
        budget = coupons.budget(template.template_id)
        if budget.left is not None and budget.left < 1:
            raise Conflict("the template's budget is used up", code="budget_exhausted", details={"left": 0})
        now = clock.to_ms(clock.now())
        taken = spend(ledger, state, price, now, MAX_LOTS, "exchange")
        spent, updated, takes = taken.state, taken.updated, taken.takes
        valid_from, valid_to = template.window(now)
        coupon = Coupon(code=new_code(), template_id=template.template_id, member_id=mid, terms=template.terms(),
                        valid_from=valid_from, valid_to=valid_to, state=CouponState.AVAILABLE,
                        source=f"exchange:{cmd.exchange_id}", issued_at=now)
        answer = {"exchange_id": cmd.exchange_id, "member_id": mid, "template_id": template.template_id,
                  "points": price, "lots": takes, "balance": spent.balance, "created_at": clock.iso(now),
                  "coupon": coupon.record(now).model_dump(mode="json")}
        ledger.apply(Change(
            member_id=mid, state=spent, expected_version=state.version, updated_lots=updated,
            entries=[LedgerEntry(entry_id=new_id(), member_id=mid, at=now, kind="exchange", points=-price,
                                 balance_after=spent.balance, ref=cmd.exchange_id,
                                 detail={"template_id": template.template_id, "code": coupon.code, "lots": takes})],
            documents=[Document(kind="exchange", owner=mid, doc_id=cmd.exchange_id,
                                body={"fingerprint": print_, "answer": answer})],
            coupon_issues=[(coupon, template.per_member_limit)],
            budget_takes=[(template.template_id, template.budget is not None, 1)]))
        return answer

    answer, created = idempotent(ledger, "exchange", member_id, cmd.exchange_id, print_, attempt)
    if created:
        metrics.add_metric(name="PointsExchanged", unit="Count", value=answer["points"])
    return answer, created
