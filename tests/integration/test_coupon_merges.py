"""Coupons across member merges, against DynamoDB Local: the survivor holds, lists and redeems the coupons of the
members merged into it, its per-member counts are the sum of both (so a limit counts the family), and merges
racing issues and exchanges count every coupon exactly once (the coupon auditor folds the counts along the
merges from the raw items and checks them)."""
from __future__ import annotations

import uuid
from collections import Counter
from typing import Any

from testkit.audit import audit_coupons, audit_member
from testkit.concurrency import at_once
from testkit.ledger import order
from tests.integration.test_concurrent_coupons import _issue, _member, _post, _redeem_body, _template

ROUNDS = 3


def _merge(api, tokens, target: str, source: str) -> dict[str, Any]:
    status, record = api.post(f"/members/{target}/merge", {"source_member_id": source}, tokens.hq())
    assert (status, record["state"]) == (200, "done"), record
    return record


def _merge_over_http(live, tokens, target: str, source: str) -> tuple[int, Any]:
    """A merge as HQ's tool sends it: a 409 merge_conflict (the members changed meanwhile) is retried."""
    for _ in range(10):
        status, record = _post(live, f"/members/{target}/merge", {"source_member_id": source}, tokens.hq())
        if (status, record.get("code")) != (409, "merge_conflict"):
            return status, record
    return status, record


def _codes(api, token: str, member_id: str, query: str = "") -> tuple[str, set[str]]:
    status, page = api.get(f"/members/{member_id}/coupons{query}", token)
    assert status == 200 and page["next_cursor"] is None, page
    return page["member_id"], {c["code"] for c in page["items"]}


def _skipped(answer: dict[str, Any]) -> list[tuple[str, str]]:
    return [(s["member_id"], s["reason"]) for s in answer["skipped"]]


def test_the_survivor_lists_and_redeems_the_merged_members_coupons(api, tokens):
    staff, hq = tokens.staff(stores=["sh-001"]), tokens.hq()
    limited, other = _template(api, tokens, per_member_limit=2), _template(api, tokens)
    target, source = _member(api, tokens), _member(api, tokens)
    t_code = _issue(api, tokens, limited, [target])["issued"][0]["code"]
    s_code = _issue(api, tokens, limited, [source])["issued"][0]["code"]
    s_other = _issue(api, tokens, other, [source])["issued"][0]["code"]
    assert _codes(api, tokens.member(target), target)[1] == {t_code}

    _merge(api, tokens, target, source)

    assert _codes(api, tokens.member(target), target) == (target, {t_code, s_code, s_other})
    assert _codes(api, tokens.member(target), target, "?state=available") == (target, {t_code, s_code, s_other})
    assert _codes(api, hq, source) == (target, {t_code, s_code, s_other})  # the old id answers the survivor
    status, seen = api.get(f"/coupons/{s_code}", tokens.member(target))  # the survivor may look at it
    assert status == 200 and seen["state"] == "available"

    # the limit counts both: 1 + 1 = 2 = per_member_limit, through either id
    answer = _issue(api, tokens, limited, [target])
    assert (answer["issued_count"], _skipped(answer)) == (0, [(target, "limit_reached")])
    answer = _issue(api, tokens, limited, [source])
    assert (answer["issued_count"], _skipped(answer)) == (0, [(source, "limit_reached")])
    answer = _issue(api, tokens, other, [source, target])  # unlimited: issued to the survivor, once
    assert [(r["member_id"], r.get("requested_as")) for r in answer["issued"]] == [(target, source)]
    assert _skipped(answer) == [(target, "duplicate")]

    # the source's coupon redeemed naming the survivor, and naming the merged id; the survivor's naming the old id
    for code, named in ((s_code, target), (s_other, source), (t_code, source)):
        status, redeemed = api.post(f"/coupons/{code}/redeem", _redeem_body(named), staff)
        assert (status, redeemed["discount"], redeemed["member_id"]) == (201, 500, named), redeemed
    assert _codes(api, tokens.member(target), target, "?state=used") == (target, {t_code, s_code, s_other})

    report = audit_coupons([limited, other])
    assert (report["coupons"], report["used"], report["available"]) == (4, 3, 1)


def test_a_chain_of_merges_counts_the_whole_family(api, tokens):
    t = _template(api, tokens, per_member_limit=3)
    a, b, c = _member(api, tokens), _member(api, tokens), _member(api, tokens)
    codes = {_issue(api, tokens, t, [m])["issued"][0]["code"] for m in (a, b, c)}
    _merge(api, tokens, b, a)
    _merge(api, tokens, c, b)
    assert _codes(api, tokens.member(c), c) == (c, codes)
    answer = _issue(api, tokens, t, [a, b, c])
    assert (answer["issued_count"], _skipped(answer)) == (0, [(a, "limit_reached"), (b, "limit_reached"),
                                                              (c, "limit_reached")])
    audit_coupons([t])


def test_a_member_below_the_limit_after_the_merge_gets_the_rest_once(api, tokens):
    """per_member_limit 3, one coupon each: after the merge one more, whichever id asks first."""
    t = _template(api, tokens, per_member_limit=3)
    target, source = _member(api, tokens), _member(api, tokens)
    _issue(api, tokens, t, [target])
    _issue(api, tokens, t, [source])
    _merge(api, tokens, target, source)
    answer = _issue(api, tokens, t, [source, target])
    assert [(r["member_id"], r.get("requested_as")) for r in answer["issued"]] == [(target, source)]
    assert _skipped(answer) == [(target, "duplicate")]
    assert _skipped(_issue(api, tokens, t, [target])) == [(target, "limit_reached")]
    audit_coupons([t])


def test_a_merge_racing_issues_to_both_members_counts_every_coupon_once(live, api, tokens):
    """8 single-member issues (4 to each member) and the merge, released together: whatever lands before or
    after the merge, the survivor's count is exactly the coupons of both, nothing is issued to the merged-away
    member after its count was folded, and the family never gets more than each could have had."""
    hq = tokens.hq()
    for _ in range(ROUNDS):
        t = _template(api, tokens, per_member_limit=3)
        target, source = _member(api, tokens), _member(api, tokens)
        issues = [lambda m=m: _post(live, "/coupon-issues", {"issue_id": f"i-{uuid.uuid4().hex[:10]}",
                                                              "template_id": t, "member_ids": [m]}, hq)
                  for m in [target, source] * 4]
        merged, *answers = at_once([lambda: _merge_over_http(live, tokens, target, source), *issues])

        assert merged[0] == 200 and merged[1]["state"] == "done", merged
        assert all(s == 201 for s, _ in answers), answers
        reasons = Counter(s["reason"] for _, a in answers for s in a["skipped"])
        assert set(reasons) <= {"limit_reached"}, answers  # at the limit, or its member merged away mid-issue
        held = Counter(r["member_id"] for _, a in answers for r in a["issued"])
        assert held[source] <= 3 and held[target] <= 3 and set(held) <= {target, source}
        assert sum(held.values()) == 8 - sum(reasons.values())
        report = audit_coupons([t])  # counts: target's == its coupons + the source's, folded once
        assert report["coupons"] == sum(held.values())
        assert _codes(api, hq, target)[1] == {r["code"] for _, a in answers for r in a["issued"]}


def test_exchanges_through_a_member_racing_its_merge_spend_and_count_once(live, api, tokens):
    """The source exchanges points for coupons (3 at once, through its own id) while it is merged away: every
    exchange answered 201 is one coupon and its points, on whichever member was live when it landed."""
    staff = tokens.staff(stores=["sh-001"])
    for _ in range(ROUNDS):
        t = _template(api, tokens, points_price=100, per_member_limit=5)
        target, source = _member(api, tokens), _member(api, tokens)
        assert api.post("/orders", order(source, amount=30_000), staff)[0] == 201  # 300 points
        assert api.post("/orders", order(target, amount=10_000), staff)[0] == 201  # 100 points
        _issue(api, tokens, t, [target])  # one of the limit used before the merge
        exchanges = [lambda: _post(live, f"/members/{source}/points/exchanges",
                                   {"exchange_id": f"x-{uuid.uuid4().hex[:8]}", "template_id": t},
                                   tokens.member(source))] * 3
        merged, *answers = at_once([lambda: _merge_over_http(live, tokens, target, source), *exchanges])

        assert merged[0] == 200, merged
        assert all(s == 201 for s, _ in answers), answers  # 300 points: all three fit, before or after
        report = audit_member(target)
        assert (report["balance"], report["available"]) == (100, 100)
        coupons = audit_coupons([t])
        assert coupons["coupons"] == 4  # the issued one and three exchanged
        assert _codes(api, tokens.member(target), target)[1] >= {a["coupon"]["code"] for _, a in answers}
        status, again = _post(live, f"/members/{source}/points/exchanges",
                              {"exchange_id": f"x-{uuid.uuid4().hex[:8]}", "template_id": t}, tokens.member(source))
        assert (status, again["member_id"]) == (201, target)  # the survivor's fifth: within the limit of 5
        status, refused = _post(live, f"/members/{target}/points/exchanges",
                                {"exchange_id": f"x-{uuid.uuid4().hex[:8]}", "template_id": t},
                                tokens.member(target))
        assert (status, refused["code"]) == (409, "limit_reached"), refused
        audit_coupons([t])
