"""Coupons under concurrency and crashes, against DynamoDB Local: a code redeemed once whatever the crowd at the
counter, a budget never overdrawn, points never overspent between an exchange and a redemption, refunds and
cancels giving a coupon back once, and a bulk issue that dies half-way completed by its retry without a coupon
twice. Races run over real HTTP (the local server), every call released together by a barrier; after each the
coupon auditor (testkit.audit.audit_coupons) reads the raw items and checks the books."""
from __future__ import annotations

import copy
import re
import threading
import uuid
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import requests

from chalicelib import bootstrap
from chalicelib.domain import coupons as coupon_rules
from chalicelib.domain.access import Principal, Role
from chalicelib.domain.coupons import ExchangeInput, IssueInput, RedeemInput
from chalicelib.domain.members import Registration
from chalicelib.domain.orders import RefundInput
from chalicelib.services import coupon_counter, coupon_issues, exchanges, refunds
from chalicelib.services import members as member_service
from chalicelib.store.coupons import DynamoCouponRepository
from testkit.audit import audit_coupons, audit_member, decode_item
from testkit.concurrency import at_once
from testkit.faults import FaultInjector
from testkit.ledger import order
from testkit.support import auth, registration, unique_phone

THREADS = 16
ROUNDS = 3  # a race that passed once may not have raced: each runs a few times
HQ = Principal(sub="hq-test", role=Role.HQ)
STAFF = Principal(sub="staff-test", role=Role.STAFF, store_ids=frozenset({"sh-001"}))
CODE = re.compile(rf"^[{coupon_rules.CODE_ALPHABET}]{{{coupon_rules.CODE_LENGTH}}}$")


# ---- helpers ----------------------------------------------------------------------------------------------
def _post(live, path: str, body: Any, token: str) -> tuple[int, Any]:
    """One HTTP call as a POS makes it: a 503 (contention, a timeout: the API asks for a retry) is retried with
    the same body; anything else is the answer."""
    with requests.Session() as session:
        for _ in range(30):
            resp = session.post(live.url + path, json=body, headers=auth(token), timeout=60)
            if resp.status_code != 503:
                return resp.status_code, resp.json()
    raise AssertionError(f"still 503 after 30 tries: {resp.text}")


def _tid() -> str:
    return f"t-{uuid.uuid4().hex[:10]}"


def _template(api, tokens, **extra: Any) -> str:
    t = _tid()
    body = {"name": "立减5元", "kind": "cash", "value": 500, "min_spend": 0, "valid_days": 7, **extra}
    status, view = api.put(f"/coupon-templates/{t}", body, tokens.hq())
    assert status == 201, view
    return t


def _member(api, tokens) -> str:
    status, body = api.post("/members", registration(), tokens.staff(stores=["sh-001"]))
    assert status == 201, body
    return body["member_id"]


def _issue(api, tokens, template_id: str, member_ids: list[str], issue_id: str | None = None) -> dict[str, Any]:
    status, answer = api.post("/coupon-issues", {"issue_id": issue_id or f"i-{uuid.uuid4().hex[:10]}",
                                                 "template_id": template_id, "member_ids": member_ids}, tokens.hq())
    assert status == 201, answer
    return answer


def _one_coupon(api, tokens, **template: Any) -> tuple[str, str, str]:
    """(template, member, code): a member holding one cash coupon of 5 yuan off."""
    t, m = _template(api, tokens, **template), _member(api, tokens)
    return t, m, _issue(api, tokens, t, [m])["issued"][0]["code"]


def _redeem_body(member_id: str, order_id: str | None = None, amount: int = 10_000) -> dict[str, Any]:
    return {"member_id": member_id, "store_id": "sh-001", "order_id": order_id or f"o-{uuid.uuid4().hex[:12]}",
            "order_amount": amount}


def _coupon_item(stack, code: str) -> dict[str, Any]:
    raw = stack.client("dynamodb").get_item(TableName=bootstrap.settings().table_name, ConsistentRead=True,
                                            Key={"pk": {"S": f"COUPON#{code}"}, "sk": {"S": "COUPON"}})["Item"]
    return decode_item(raw)


def _basket(stack, order_id: str) -> list[str]:
    raw = stack.client("dynamodb").get_item(TableName=bootstrap.settings().table_name, ConsistentRead=True,
                                            Key={"pk": {"S": f"ORDER#{order_id}"}, "sk": {"S": "COUPONS"}}).get("Item")
    return [c["code"] for c in decode_item(raw)["coupons"]] if raw else []


def _posted_with(member_id: str, code: str, redeemed: dict[str, Any], discount: int) -> dict[str, Any]:
    """The order the POS posts after redeeming `code` for it: the paid amount and the coupon it carries."""
    body = order(member_id, amount=redeemed["order_amount"] - discount)
    body["order_id"] = redeemed["order_id"]
    body["coupons"] = [{"code": code, "discount": discount}]
    return body


# ---- 1, 2: one code at the counter ------------------------------------------------------------------------
def test_one_code_for_sixteen_orders_is_redeemed_once(live, api, tokens, stack):
    staff = tokens.staff(stores=["sh-001"])
    templates = []
    for _ in range(ROUNDS):
        t, m, code = _one_coupon(api, tokens)
        templates.append(t)
        bodies = [_redeem_body(m) for _ in range(THREADS)]
        answers = at_once([lambda b=b: _post(live, f"/coupons/{code}/redeem", b, staff) for b in bodies])

        assert sorted(s for s, _ in answers) == [201] + [409] * (THREADS - 1), answers
        (won,) = [i for i, (s, _) in enumerate(answers) if s == 201]
        assert answers[won][1]["discount"] == 500 and answers[won][1]["amount_after"] == 9_500
        assert {a["code"] for s, a in answers if s == 409} == {"already_redeemed"}
        item = _coupon_item(stack, code)
        assert (item["state"], item["redeemed_order"], item["version"]) == ("used", bodies[won]["order_id"], 2)
        assert [_basket(stack, b["order_id"]) for b in bodies] == [[code] if i == won else []
                                                                  for i in range(THREADS)]
    report = audit_coupons(templates)
    assert (report["coupons"], report.get("used")) == (ROUNDS, ROUNDS)


def test_one_code_retried_sixteen_times_for_one_order_answers_one_redemption(live, api, tokens, stack):
    staff = tokens.staff(stores=["sh-001"])
    templates = []
    for _ in range(ROUNDS):
        t, m, code = _one_coupon(api, tokens)
        templates.append(t)
        body = _redeem_body(m)
        answers = at_once([lambda: _post(live, f"/coupons/{code}/redeem", body, staff)] * THREADS)

        answered = answers
        assert sorted(s for s, _ in answered) == [200] * (len(answered) - 1) + [201], answers
        assert all(a == answered[0][1] for _, a in answered), "a replay answered something else than the first"
        assert answered[0][1]["discount"] == 500 and answered[0][1]["order_id"] == body["order_id"]
        assert _coupon_item(stack, code)["version"] == 2  # written once: issued (1), redeemed (2)
        assert _basket(stack, body["order_id"]) == [code]
    audit_coupons(templates)


def test_sixteen_coupons_that_do_not_stack_race_for_one_order(live, api, tokens, stack):
    """The order's basket is the other contended item: of 16 coupons redeemed for one order at once, one is
    held, the rest are refused not_stackable (or already in the basket's race), none half-held."""
    staff = tokens.staff(stores=["sh-001"])
    t, m = _template(api, tokens), _member(api, tokens)
    codes = [_issue(api, tokens, t, [m])["issued"][0]["code"] for _ in range(THREADS)]
    body = _redeem_body(m)
    answers = at_once([lambda c=c: _post(live, f"/coupons/{c}/redeem", body, staff) for c in codes])

    assert sorted(s for s, _ in answers) == [201] + [409] * (THREADS - 1), answers
    assert {a["code"] for s, a in answers if s == 409} == {"not_stackable"}
    (won,) = [codes[i] for i, (s, _) in enumerate(answers) if s == 201]
    assert _basket(stack, body["order_id"]) == [won]
    report = audit_coupons([t])
    assert (report.get("used"), report.get("available")) == (1, THREADS - 1)


# ---- 3: the budget --------------------------------------------------------------------------------------
def test_sixteen_issues_share_a_budget_of_ten(live, api, tokens):
    hq = tokens.hq()
    for _ in range(ROUNDS):
        t = _template(api, tokens, budget=10)
        members = [_member(api, tokens) for _ in range(THREADS)]
        bodies = [{"issue_id": f"i-{uuid.uuid4().hex[:10]}", "template_id": t, "member_ids": [m]} for m in members]
        answers = at_once([lambda b=b: _post(live, "/coupon-issues", b, hq) for b in bodies])

        assert sorted(s for s, _ in answers) == [201] * 10 + [409] * 6, answers
        refused = [a for s, a in answers if s == 409]
        assert {a["code"] for a in refused} == {"budget_exhausted"}
        assert all(a["details"] == {"left": 0, "requested": 1} for a in refused), refused
        assert all(a["issued_count"] == 1 for s, a in answers if s == 201)
        view = api.get(f"/coupon-templates/{t}", hq)[1]
        assert (view["issued"], view["left"]) == (10, 0)
        # a refused issue retried is refused again: no plan was kept for it, no budget taken
        loser = next(b for b, (s, _) in zip(bodies, answers, strict=True) if s == 409)
        status, again = api.post("/coupon-issues", loser, hq)
        assert (status, again["code"]) == (409, "budget_exhausted")
        report = audit_coupons([t])
        assert report["coupons"] == 10


# ---- 4: points: an exchange against a redemption ----------------------------------------------------------
def test_an_exchange_racing_a_points_redemption_never_overdraws(live, api, tokens):
    staff = tokens.staff(stores=["sh-001"])
    t = _template(api, tokens, points_price=100)
    outcomes = Counter()
    for _ in range(ROUNDS + 2):
        m = _member(api, tokens)
        assert api.post("/orders", order(m, amount=15_000), staff)[0] == 201  # 150 points: one of the two fits
        exchange = lambda m=m: _post(live, f"/members/{m}/points/exchanges",  # noqa: E731
                                     {"exchange_id": f"x-{uuid.uuid4().hex[:8]}", "template_id": t}, tokens.member(m))
        redemption = lambda m=m: _post(live, f"/members/{m}/points/redemptions",  # noqa: E731
                                       {"redemption_id": f"r-{uuid.uuid4().hex[:8]}", "points": 100, "reason": "兑换",
                                        "store_id": "sh-001"}, staff)
        (xs, xa), (rs, ra) = at_once([exchange, redemption])

        assert sorted([xs, rs]) == [201, 409], (xa, ra)
        refused = xa if xs == 409 else ra
        assert refused["code"] == "insufficient_points", refused
        outcomes["exchange" if xs == 201 else "redemption"] += 1
        report = audit_member(m)
        assert (report["balance"], report["available"], report["owed"]) == (50, 50, 0)
        status, page = api.get(f"/members/{m}/coupons", tokens.member(m))
        assert [c["code"] for c in page["items"]] == ([xa["coupon"]["code"]] if xs == 201 else [])
    report = audit_coupons([t])
    assert report["coupons"] == outcomes["exchange"]


def test_a_crowd_of_exchanges_and_redemptions_spends_exactly_what_was_answered(live, api, tokens):
    """8 exchanges (100 points, budget 3) and 8 redemptions (70 points) on a member holding 500 points, all at
    once: every 2xx is paid for, nothing else is; the balance never goes below zero."""
    staff = tokens.staff(stores=["sh-001"])
    t = _template(api, tokens, points_price=100, budget=3)
    m = _member(api, tokens)
    assert api.post("/orders", order(m, amount=50_000), staff)[0] == 201
    calls = [lambda: _post(live, f"/members/{m}/points/exchanges",
                           {"exchange_id": f"x-{uuid.uuid4().hex[:8]}", "template_id": t}, tokens.member(m))] * 8
    calls += [lambda: _post(live, f"/members/{m}/points/redemptions",
                            {"redemption_id": f"r-{uuid.uuid4().hex[:8]}", "points": 70, "reason": "兑换",
                             "store_id": "sh-001"}, staff)] * 8
    answers = at_once(calls)
    exchanged = [a for s, a in answers[:8] if s == 201]
    redeemed = [a for s, a in answers[8:] if s == 201]
    for s, a in answers:
        assert s in (201, 409), a
        if s == 409:
            assert a["code"] in ("insufficient_points", "budget_exhausted"), a
    assert len(exchanged) <= 3
    report = audit_member(m)
    assert report["balance"] == 500 - 100 * len(exchanged) - 70 * len(redeemed) >= 0
    # nothing refused that fitted: the balance only goes down, so a refusal for want of points bounds the end
    short = {("x" if i < 8 else "r") for i, (s, a) in enumerate(answers) if s == 409
             and a["code"] == "insufficient_points"}
    assert ("r" not in short or report["balance"] < 70) and ("x" not in short or report["balance"] < 100), answers
    coupons = audit_coupons([t])
    assert coupons["coupons"] == len(exchanged)
    assert api.get(f"/coupon-templates/{t}", tokens.hq())[1]["issued"] == len(exchanged)


# ---- 5: refunds, cancels and redeem replays -------------------------------------------------------------
def _redeemed_and_posted(live, api, tokens, staff) -> tuple[str, str, str, dict[str, Any]]:
    t, m, code = _one_coupon(api, tokens)
    body = _redeem_body(m)
    status, redeemed = api.post(f"/coupons/{code}/redeem", body, staff)
    assert status == 201, redeemed
    status, receipt = api.post("/orders", _posted_with(m, code, body, 500), staff)
    assert status == 201, receipt
    return t, code, body["order_id"], body


def test_identical_whole_refunds_at_once_restore_the_coupon_once(live, api, tokens, stack):
    staff = tokens.staff(stores=["sh-001"])
    templates = []
    for _ in range(ROUNDS):
        t, code, order_id, _ = _redeemed_and_posted(live, api, tokens, staff)
        templates.append(t)
        refund = {"refund_id": f"r-{uuid.uuid4().hex[:8]}", "amount": 9_500}
        answers = at_once([lambda: _post(live, f"/orders/{order_id}/refunds", refund, staff)] * THREADS)

        answered = answers
        assert sorted(s for s, _ in answered) == [200] * (len(answered) - 1) + [201], answers
        assert all(a == answered[0][1] for _, a in answered)
        assert answered[0][1]["coupons_restored"] == [code]
        item = _coupon_item(stack, code)
        assert (item["state"], item["version"], item["released_orders"]) == ("available", 3, f'["{order_id}"]')
    audit_coupons(templates)


def test_different_whole_refunds_at_once_restore_the_coupon_once(live, api, tokens, stack):
    staff = tokens.staff(stores=["sh-001"])
    templates = []
    for _ in range(ROUNDS):
        t, code, order_id, _ = _redeemed_and_posted(live, api, tokens, staff)
        templates.append(t)
        answers = at_once([lambda: _post(live, f"/orders/{order_id}/refunds",
                                          {"refund_id": f"r-{uuid.uuid4().hex[:8]}", "amount": 9_500}, staff)] * 8)

        assert sorted(s for s, _ in answers) == [201] + [422] * 7, answers
        assert {a["code"] for s, a in answers if s == 422} == {"refund_exceeds_order"}
        assert [a["coupons_restored"] for s, a in answers if s == 201] == [[code]]
        item = _coupon_item(stack, code)
        assert (item["state"], item["version"]) == ("available", 3)
    audit_coupons(templates)


def test_a_redeem_replayed_after_the_whole_refund_does_not_consume_the_restored_coupon(live, api, tokens, stack):
    staff = tokens.staff(stores=["sh-001"])
    t, code, order_id, redeem = _redeemed_and_posted(live, api, tokens, staff)
    assert api.post(f"/orders/{order_id}/refunds", {"refund_id": "r1", "amount": 9_500}, staff)[0] == 201
    answers = at_once([lambda: _post(live, f"/coupons/{code}/redeem", redeem, staff)] * 8)
    assert {(s, a["code"]) for s, a in answers} == {(409, "order_posted")}, answers
    assert (_coupon_item(stack, code)["state"], _coupon_item(stack, code)["version"]) == ("available", 3)
    audit_coupons([t])


def test_concurrent_cancels_release_the_coupon_once(live, api, tokens, stack):
    staff = tokens.staff(stores=["sh-001"])
    templates = []
    for _ in range(ROUNDS):
        t, m, code = _one_coupon(api, tokens)
        templates.append(t)
        body = _redeem_body(m)
        assert api.post(f"/coupons/{code}/redeem", body, staff)[0] == 201
        cancel = {"order_id": body["order_id"]}
        answers = at_once([lambda: _post(live, f"/coupons/{code}/redemption/cancel", cancel, staff)] * THREADS)

        assert all(s == 200 for s, _ in answers), answers
        assert all(a == answers[0][1] for _, a in answers) and answers[0][1]["state"] == "available"
        item = _coupon_item(stack, code)
        assert (item["version"], item["released_orders"]) == (3, f'["{body["order_id"]}"]')
        assert _basket(stack, body["order_id"]) == []
    audit_coupons(templates)


def test_a_redeem_replay_racing_its_cancel_leaves_the_coupon_held_once_or_released(live, api, tokens, stack):
    """The POS retries a redeem whose answer was slow while the cashier cancels it: in whatever order they land,
    the coupon ends held for the order (its basket lists it once) or released (the basket lists nothing), never
    half of each; and every cancel answers 200, every replay 200 (the first answer) or 201 (held again)."""
    staff = tokens.staff(stores=["sh-001"])
    templates = []
    for _ in range(ROUNDS + 2):
        t, m, code = _one_coupon(api, tokens)
        templates.append(t)
        body = _redeem_body(m)
        status, first = api.post(f"/coupons/{code}/redeem", body, staff)
        assert status == 201
        cancel = lambda: _post(live, f"/coupons/{code}/redemption/cancel", {"order_id": body["order_id"]}, staff)  # noqa: E731
        replay = lambda: _post(live, f"/coupons/{code}/redeem", body, staff)  # noqa: E731
        answers = at_once([cancel, replay] * 4)

        assert all(s == 200 for s, _ in answers[0::2]), answers
        assert all(s in (200, 201) and a["discount"] == 500 for s, a in answers[1::2]), answers
        item = _coupon_item(stack, code)
        held = _basket(stack, body["order_id"])
        assert (item["state"], held) in [("used", [code]), ("available", [])], (item, held)
    audit_coupons(templates)


def test_a_redeem_replay_after_its_cancel_holds_the_coupon_again_once(live, api, tokens, stack):
    """What a late replay of a cancelled redemption does: it is the same request as a cashier scanning the code
    again for the same sale (the body carries nothing to tell them apart), so it holds the coupon again, once:
    16 such replays at once make one new hold (201) and 15 replays of it (200)."""
    staff = tokens.staff(stores=["sh-001"])
    t, m, code = _one_coupon(api, tokens)
    body = _redeem_body(m)
    status, first = api.post(f"/coupons/{code}/redeem", body, staff)
    assert status == 201
    assert api.post(f"/coupons/{code}/redemption/cancel", {"order_id": body["order_id"]}, staff)[0] == 200
    answers = at_once([lambda: _post(live, f"/coupons/{code}/redeem", body, staff)] * THREADS)
    answered = answers
    assert sorted(s for s, _ in answered) == [200] * (len(answered) - 1) + [201], answers
    assert all(a == answered[0][1] for _, a in answered) and answered[0][1]["redeemed_at"] > first["redeemed_at"]
    item = _coupon_item(stack, code)
    assert (item["state"], item["version"]) == ("used", 4)  # issued, redeemed, released, redeemed again
    assert _basket(stack, body["order_id"]) == [code]
    audit_coupons([t])


def test_posting_racing_a_cancel_either_posts_with_the_coupon_or_releases_it(live, api, tokens, stack):
    staff = tokens.staff(stores=["sh-001"])
    templates = []
    for _ in range(ROUNDS + 2):
        t, m, code = _one_coupon(api, tokens)
        templates.append(t)
        body = _redeem_body(m)
        assert api.post(f"/coupons/{code}/redeem", body, staff)[0] == 201
        (ps, pa), (cs, ca) = at_once([
            lambda: _post(live, "/orders", _posted_with(m, code, body, 500), staff),
            lambda: _post(live, f"/coupons/{code}/redemption/cancel", {"order_id": body["order_id"]}, staff)])
        item = _coupon_item(stack, code)
        if ps == 201:
            assert (cs, ca["code"], item["state"]) == (409, "order_posted", "used"), (pa, ca)
        else:
            assert (ps, pa["code"], cs, item["state"]) == (422, "coupons_not_redeemed", 200, "available"), (pa, ca)
    audit_coupons(templates)


# ---- 6: a bulk issue that dies half-way -----------------------------------------------------------------
def _registered(n: int) -> list[str]:
    """n members registered through the service (as the counter does), 8 at a time."""
    clerk = Principal(sub="clerk", role=Role.STAFF, store_ids=frozenset({"sh-001"}))

    def one(_: int) -> str:
        cmd = Registration(phone=unique_phone(), channel="store", store_id="sh-001", consent={"marketing": True})
        member, created = member_service.register(cmd, clerk, bootstrap.members(), bootstrap.stores())
        assert created
        return member.member_id

    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(one, range(n)))


class Crash(Exception):
    pass


def _crash_after(monkeypatch, n: int, *, applied: bool) -> None:
    """DynamoCouponRepository.issue_coupon dies from its (n+1)-th call on: before writing, or (`applied`) after
    its write landed (the answer lost, as when the Lambda times out)."""
    original = DynamoCouponRepository.issue_coupon
    calls, lock = [0], threading.Lock()

    def dying(self, coupon, limit):
        with lock:
            calls[0] += 1
            mine = calls[0]
        if mine <= n:
            return original(self, coupon, limit)
        if applied and mine == n + 1:
            original(self, coupon, limit)
        raise Crash(f"issue_coupon call {mine}")

    monkeypatch.setattr(DynamoCouponRepository, "issue_coupon", dying)


@pytest.mark.parametrize("applied", [False, True], ids=["before_write", "after_write"])
def test_a_bulk_issue_that_crashed_half_way_is_completed_by_its_retry(api, tokens, monkeypatch, applied):
    t = _template(api, tokens, budget=100, per_member_limit=1)
    members = _registered(40)
    cmd = IssueInput(issue_id=f"i-{uuid.uuid4().hex[:10]}", template_id=t, member_ids=members)
    _crash_after(monkeypatch, 15, applied=applied)
    with pytest.raises(Crash):
        coupon_issues.issue(cmd, HQ, bootstrap.coupons(), bootstrap.ledger())
    monkeypatch.undo()

    # the crash left a plan: its budget (40) taken, 15 (16) coupons written; the auditor counts the plan in ...
    mid = audit_coupons([t], allow_pending=True)
    assert (mid["pending_issues"], mid["coupons"]) == (1, 16 if applied else 15)
    assert api.get(f"/coupon-templates/{t}", tokens.hq())[1]["issued"] == 40
    with pytest.raises(AssertionError, match="still pending"):  # ... and calls it a finding if never retried
        audit_coupons([t])
    # meanwhile 3 members not yet served get this template's coupon from another issue (per_member_limit 1)
    unserved = [m for m in members if not bootstrap.coupons().member_coupons([m], None, None, 10)[0]]
    assert len(unserved) == 40 - mid["coupons"]
    later = unserved[:3]
    other = _issue(api, tokens, t, later)
    assert other["issued_count"] == 3

    answer, created = coupon_issues.issue(cmd, HQ, bootstrap.coupons(), bootstrap.ledger())
    assert created  # this call finished the issue
    assert answer["issued_count"] == 37 and len(answer["issued"]) == 37
    assert sorted(s["member_id"] for s in answer["skipped"]) == sorted(later)
    assert {s["reason"] for s in answer["skipped"]} == {"limit_reached"}
    listed = [r["member_id"] for r in answer["issued"]] + [s["member_id"] for s in answer["skipped"]]
    assert sorted(listed) == sorted(members)  # every member exactly once
    assert len({r["code"] for r in answer["issued"]}) == 37
    view = api.get(f"/coupon-templates/{t}", tokens.hq())[1]
    assert (view["issued"], view["left"]) == (40, 60)  # 37 + the other issue's 3; the plan's 3 given back
    report = audit_coupons([t])
    assert (report["coupons"], report["pending_issues"]) == (40, 0)

    # the retry of the finished issue replays its answer; the same id with another body is refused
    assert coupon_issues.issue(cmd, HQ, bootstrap.coupons(), bootstrap.ledger()) == (answer, False)
    status, body = api.post("/coupon-issues", {"issue_id": cmd.issue_id, "template_id": t,
                                               "member_ids": members[:39]}, tokens.hq())
    assert (status, body["code"]) == (409, "issue_id_reused")
    assert audit_coupons([t])["coupons"] == 40


def test_a_bulk_issue_that_crashed_before_its_answer_is_answered_by_its_retry(api, tokens, monkeypatch):
    t = _template(api, tokens, budget=30)
    members = _registered(20)
    cmd = IssueInput(issue_id=f"i-{uuid.uuid4().hex[:10]}", template_id=t, member_ids=members + members[:2])

    def dead(*_: Any, **__: Any) -> bool:
        raise Crash("finish_issue")

    monkeypatch.setattr(DynamoCouponRepository, "finish_issue", dead)
    with pytest.raises(Crash):
        coupon_issues.issue(cmd, HQ, bootstrap.coupons(), bootstrap.ledger())
    monkeypatch.undo()
    assert audit_coupons([t], allow_pending=True)["coupons"] == 20

    answer, created = coupon_issues.issue(cmd, HQ, bootstrap.coupons(), bootstrap.ledger())
    assert created and answer["issued_count"] == 20 and answer["requested"] == 22
    assert [(s["member_id"], s["reason"]) for s in answer["skipped"]] == [(m, "duplicate") for m in members[:2]]
    assert api.get(f"/coupon-templates/{t}", tokens.hq())[1]["left"] == 10
    assert audit_coupons([t])["coupons"] == 20


def test_concurrent_twins_of_a_bulk_issue_make_one_issue(live, api, tokens):
    """The same bulk issue sent 6 times at once (budget to spare): one plan, each coupon once, the same answer
    (twins that find the plan pending complete it side by side; see BUG 3 for a budget with nothing to spare)."""
    t = _template(api, tokens, budget=1_000)
    members = _registered(40)
    body = {"issue_id": f"i-{uuid.uuid4().hex[:10]}", "template_id": t, "member_ids": members}
    answers = at_once([lambda: _post(live, "/coupon-issues", body, tokens.hq())] * 6)
    assert all(s in (200, 201) for s, _ in answers), answers
    assert all(a == answers[0][1] for _, a in answers)
    assert answers[0][1]["issued_count"] == 40
    assert audit_coupons([t])["coupons"] == 40
    assert api.get(f"/coupon-templates/{t}", tokens.hq())[1]["issued"] == 40


def test_bulk_issues_converge_under_injected_faults(api, tokens):
    """Throttling, transaction conflicts and writes applied with their answer lost, on every call of the app's
    DynamoDB client: issues retried with the same body (on 503, as the API asks) all finish, each once."""
    hq = tokens.hq()
    t = _template(api, tokens, budget=500, per_member_limit=2)
    members = _registered(45)
    bodies = [{"issue_id": f"i-{uuid.uuid4().hex[:10]}", "template_id": t, "member_ids": members[i * 15:i * 15 + 30]}
              for i in range(2)] + [{"issue_id": f"i-{uuid.uuid4().hex[:10]}", "template_id": t,
                                     "member_ids": members[10:40]}]
    answers = []
    with FaultInjector(bootstrap.dynamodb_client(), throttle=0.03, conflict=0.1, lost_ack=0.15, seed=5) as faults:
        for body in bodies:
            for _ in range(60):
                status, answer = api.post("/coupon-issues", body, hq)
                if status != 503:
                    break
            assert status in (200, 201), answer
            answers.append(answer)
    assert faults.injected["lost_ack"] >= 3 and faults.injected["conflict"] >= 3, faults.injected
    for body, answer in zip(bodies, answers, strict=True):
        listed = [r["member_id"] for r in answer["issued"]] + [s["member_id"] for s in answer["skipped"]]
        assert sorted(listed) == sorted(body["member_ids"])
        assert {s["reason"] for s in answer["skipped"]} <= {"limit_reached"}
    per_member = Counter(r["member_id"] for a in answers for r in a["issued"])
    asked = Counter(m for b in bodies for m in b["member_ids"])
    assert per_member == Counter({m: min(n, 2) for m, n in asked.items()})
    report = audit_coupons([t])
    assert report["coupons"] == sum(per_member.values())


# ---- 7: one thousand members in one request ---------------------------------------------------------------
def test_one_thousand_members_in_one_issue(api, tokens):
    t = _template(api, tokens, budget=5_000)
    members = _registered(coupon_rules.MAX_ISSUE)
    status, answer = api.post("/coupon-issues", {"issue_id": f"i-{uuid.uuid4().hex[:10]}", "template_id": t,
                                                 "member_ids": members}, tokens.hq())
    assert status == 201, answer
    assert (answer["issued_count"], answer["skipped"]) == (1_000, [])
    assert sorted(r["member_id"] for r in answer["issued"]) == sorted(members)
    codes = [r["code"] for r in answer["issued"]]
    assert len(set(codes)) == 1_000 and all(CODE.match(c) for c in codes)
    stored = bootstrap.coupons().coupons(codes[:100])
    assert {c.code for c in stored} == set(codes[:100])
    report = audit_coupons([t])
    assert (report["coupons"], report.get("available")) == (1_000, 1_000)
    assert api.get(f"/coupon-templates/{t}", tokens.hq())[1]["left"] == 4_000


# ---- twins interleaved: the competing request runs at the exact point between a read and the write ----------
# A twin is the same request sent again while the first is still running (a POS or HQ tool retrying a slow
# call). Each test below lets the first request make the read under test, runs the twin to completion right
# there (a hook on the read), then lets the first request go on with what it read. Both must answer the one
# request: one created, the other its replay with the same answer. If a fix removes the hooked read, the twin
# simply runs after the first.
def _twins(first: Callable[[], tuple[Any, bool]], hook: Callable[[Callable[[], None]], None]) -> list[Any]:
    twin: list[tuple[Any, bool]] = []
    fired: list[bool] = []

    def run_twin() -> None:
        if not fired:
            fired.append(True)
            twin.append(first())

    hook(run_twin)
    answers = [first()]
    if not twin:  # the hooked read is gone: the twin comes after
        twin.append(first())
    return [*twin, *answers]


def _one_created(answers: list[tuple[Any, bool]]) -> None:
    (a, a_created), (b, b_created) = answers
    assert sorted([a_created, b_created]) == [False, True] and a == b, answers


def test_a_redeem_twin_whose_read_straddles_the_winner_replays_it(api, tokens, monkeypatch):
    t, m, code = _one_coupon(api, tokens)
    cmd = RedeemInput(**_redeem_body(m))
    coupons = bootstrap.coupons()
    coupon_key = {"pk": f"COUPON#{code}", "sk": "COUPON"}
    original = coupons.db.batch_get

    def hook(run_twin):
        def straddling(keys, mapper, consistent=False):
            if coupon_key not in keys or len(keys) == 1:
                return original(keys, mapper, consistent)
            early = original([coupon_key], mapper, consistent)  # the batch has read the coupon ...
            run_twin()  # ... the twin redeems it and fills the basket ...
            return early + original([k for k in keys if k != coupon_key], mapper, consistent)  # ... the rest after

        monkeypatch.setattr(coupons.db, "batch_get", straddling)

    answers = _twins(lambda: coupon_counter.redeem(code, cmd, STAFF, coupons, bootstrap.stores(), bootstrap.ledger()),
                     hook)
    _one_created(answers)
    audit_coupons([t])


def test_a_refund_twin_that_reads_the_order_after_the_winner_replays_it(live, api, tokens, monkeypatch):
    staff = tokens.staff(stores=["sh-001"])
    t, code, order_id, _ = _redeemed_and_posted(live, api, tokens, staff)
    cmd = RefundInput(refund_id=f"r-{uuid.uuid4().hex[:8]}", amount=9_500)
    ledger = bootstrap.ledger()
    original = ledger.get_order

    def hook(run_twin):
        def late(oid):
            run_twin()  # the twin refunds the whole order just before this read
            return original(oid)

        monkeypatch.setattr(ledger, "get_order", late)

    answers = _twins(lambda: refunds.refund(order_id, cmd, HQ, ledger, bootstrap.stores(), bootstrap.coupons()),
                     hook)
    _one_created(answers)
    assert answers[0][0].coupons_restored == [code]
    audit_coupons([t])


def test_an_issue_twin_that_finds_the_budget_taken_by_its_winner_replays_it(api, tokens, monkeypatch):
    t = _template(api, tokens, budget=2)
    cmd = IssueInput(issue_id=f"i-{uuid.uuid4().hex[:10]}", template_id=t,
                     member_ids=[_member(api, tokens), _member(api, tokens)])
    original = DynamoCouponRepository.start_issue

    def hook(run_twin):
        def late(self, *args):
            run_twin()  # the twin plans, takes the budget and issues, just before this write
            return original(self, *args)

        monkeypatch.setattr(DynamoCouponRepository, "start_issue", late)

    answers = _twins(lambda: coupon_issues.issue(cmd, HQ, bootstrap.coupons(), bootstrap.ledger()), hook)
    _one_created(answers)
    assert audit_coupons([t])["coupons"] == 2


def test_an_exchange_twin_that_reads_the_points_after_the_winner_replays_it(api, tokens, monkeypatch):
    staff = tokens.staff(stores=["sh-001"])
    t = _template(api, tokens, points_price=100)
    m = _member(api, tokens)
    assert api.post("/orders", order(m, amount=10_000), staff)[0] == 201  # exactly one exchange's worth
    cmd = ExchangeInput(exchange_id=f"x-{uuid.uuid4().hex[:8]}", template_id=t)
    me = Principal(sub=f"member:{m}", role=Role.MEMBER, member_id=m)
    ledger = bootstrap.ledger()
    original = ledger.open_lots

    def hook(run_twin):
        def late(*args):
            run_twin()  # the twin spends the points just before this read
            return original(*args)

        monkeypatch.setattr(ledger, "open_lots", late)

    answers = _twins(lambda: exchanges.exchange(m, cmd, me, ledger, bootstrap.coupons()), hook)
    _one_created(answers)
    assert audit_member(m)["balance"] == 0
    assert audit_coupons([t])["coupons"] == 1


# ---- the auditor itself -----------------------------------------------------------------------------------
def test_the_coupon_auditor_finds_each_kind_of_broken_books(api, tokens, stack):
    """Each invariant audit_coupons claims, broken on purpose in the raw items (then put back): it must say so."""
    client, table = stack.client("dynamodb"), bootstrap.settings().table_name
    staff = tokens.staff(stores=["sh-001"])
    t, m, code = _one_coupon(api, tokens, budget=5)
    used = _issue(api, tokens, t, [m])["issued"][0]["code"]
    body = _redeem_body(m)
    assert api.post(f"/coupons/{used}/redeem", body, staff)[0] == 201
    audit_coupons([t])

    def key(pk: str, sk: str) -> dict[str, Any]:
        return {"pk": {"S": pk}, "sk": {"S": sk}}

    def broken(item_key: dict[str, Any], change: Callable[[dict[str, Any]], None], finding: str) -> None:
        original = client.get_item(TableName=table, Key=item_key, ConsistentRead=True)["Item"]
        item = copy.deepcopy(original)
        change(item)
        client.put_item(TableName=table, Item=item)
        try:
            with pytest.raises(AssertionError, match=finding):
                audit_coupons([t])
        finally:
            client.put_item(TableName=table, Item=original)

    coupon, held = key(f"COUPON#{code}", "COUPON"), key(f"COUPON#{used}", "COUPON")
    broken(key(f"CTPL#{t}", "BUDGET#HQ"), lambda i: i.update(issued={"N": "3"}), "budget issued 3, coupons 2")
    broken(key(f"CTPL#{t}", "BUDGET#HQ"), lambda i: i.update(left={"N": "4"}), "limit 5 left 4 issued 2")
    broken(key(f"MEMBER#{m}", "COUPONS"), lambda i: i.update({f"c_{t}": {"N": "1"}}), f"count c_{t} = 1")
    broken(key(f"MEMBER#{m}", "COUPONS"), lambda i: i.update(merged_into={"S": "someone"}), "profile not merged")
    broken(coupon, lambda i: i.pop("gsi2pk"), "not in the expiry index")
    broken(coupon, lambda i: i.update(state={"S": "used"}, gsi1sk={"S": i["gsi1sk"]["S"].replace("available", "used")}),
           "used without a redemption")
    broken(held, lambda i: i.update(state={"S": "available"}), "carries a redemption")
    broken(held, lambda i: i.update(discount={"N": "499"}), "does not add up")
    broken(key(f"ORDER#{body['order_id']}", "COUPONS"),
           lambda i: i["coupons"]["L"].append({"M": {"code": {"S": code}, "discount": {"N": "0"},
                                                     "stackable": {"BOOL": False}}}), "not held for it")
    twin = {**client.get_item(TableName=table, Key=coupon, ConsistentRead=True)["Item"]}
    twin.update(pk={"S": "COUPON#ZZZZZZZZZZZZZZ"}, code={"S": "ZZZZZZZZZZZZZZ"})
    client.put_item(TableName=table, Item=twin)  # a coupon its issue never planned
    try:
        with pytest.raises(AssertionError, match="not in its plan"):
            audit_coupons([t])
    finally:
        client.delete_item(TableName=table, Key=key("COUPON#ZZZZZZZZZZZZZZ", "COUPON"))
    assert audit_coupons([t])["coupons"] == 2
