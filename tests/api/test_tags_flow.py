"""Member tags end to end (chalice test client and the live server, DynamoDB Local): HQ's rules round trip with
versions (a stale one is 409), manual tags added and removed idempotently with an audit entry per change
(never the tag's text), the cap of 50 held also under concurrency, a merged-away id tagging its survivor, an
erased member refused, and 16 concurrent adds of different tags all kept."""
from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import quote

import pytest

from testkit.concurrency import at_once, call_retrying
from testkit.support import registration

RULES = [{"tag": "健康饮食", "description": "六成以上消费在轻食",
          "all": [{"field": "category_share", "category": "轻食", "op": "gte", "value": 600}]},
         {"tag": "价格敏感", "all": [{"field": "coupon_order_share", "op": "gte", "value": 500},
                                  {"field": "order_count", "op": "gte", "value": 3}]}]


def uid(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def member(api, tokens) -> str:
    status, m = api.post("/members", registration(), tokens.staff(stores=["sh-001"]))
    assert status == 201, m
    return m["member_id"]


def path(member_id: str, tag: str | None = None) -> str:
    return f"/members/{member_id}/tags" + (f"/{quote(tag, safe='')}" if tag is not None else "")


def audit_entries(member_id: str) -> list[dict[str, Any]]:
    from chalicelib import bootstrap
    from chalicelib.store import keys

    return [i for i in bootstrap.db().query_all(KeyConditionExpression="pk = :pk AND begins_with(sk, :p)",
                                                values={":pk": keys.member_pk(member_id), ":p": keys.AUDIT_PREFIX},
                                                ConsistentRead=True)
            if i["action"].startswith("member.tag_")]


def tags_item(member_id: str) -> dict[str, Any] | None:
    from chalicelib import bootstrap
    from chalicelib.store import keys

    return bootstrap.db().get(keys.member_tags_key(member_id))


# ---- rules ------------------------------------------------------------------------------------------------------
def test_rules_round_trip_with_versions_and_a_stale_version_is_409(api, tokens):
    hq, manager = tokens.hq(), tokens.staff("store_manager", stores=["sh-001"])
    status, current = api.get("/tag-rules", hq)
    assert status == 200 and isinstance(current["version"], int), current
    status, saved = api.put("/tag-rules", {"rules": RULES, "version": current["version"]}, hq)
    assert status == 200, saved
    assert saved == {"rules": [{**r, "all": [{"category": None, **c} for c in r["all"]],
                                **({} if "description" in r else {"description": None})} for r in RULES],
                     "version": current["version"] + 1}
    assert api.get("/tag-rules", manager) == (200, saved)  # managers read them too

    status, err = api.put("/tag-rules", {"rules": [], "version": current["version"]}, hq)  # what we read is gone
    assert (status, err["code"], err["details"]) == (409, "version_conflict", {"version": saved["version"]})
    assert api.get("/tag-rules", hq) == (200, saved)

    status, again = api.put("/tag-rules", {"rules": RULES[:1]}, hq)  # no version: replaces whatever is there
    assert status == 200 and again["version"] == saved["version"] + 1 and [r["tag"] for r in again["rules"]] == \
        ["健康饮食"]
    status, cleared = api.put("/tag-rules", {"rules": [], "version": again["version"]}, hq)
    assert (status, cleared) == (200, {"rules": [], "version": again["version"] + 1})

    from chalicelib import bootstrap
    from chalicelib.store import keys

    item = bootstrap.db().get(keys.tag_rules_key())
    assert (item["version"], item["updated_by"], item["type"]) == (cleared["version"], "hq-1", "tag_rules")


def test_the_stored_rules_are_what_the_nightly_job_evaluates(api, tokens):
    from chalicelib import bootstrap
    from chalicelib.domain.tags import MemberFacts, evaluate

    hq = tokens.hq()
    version = api.get("/tag-rules", hq)[1]["version"]
    assert api.put("/tag-rules", {"rules": RULES, "version": version}, hq)[0] == 200
    rules, stored_version = bootstrap.tags().rules()
    assert stored_version == version + 1
    facts = MemberFacts(segment="一般价值", recency_days=3, frequency=4, monetary=50_000, order_count=4,
                        lifetime_spend=50_000, tier=None, category_shares={"轻食": 600}, coupon_order_share=750)
    assert evaluate(rules, facts) == ("价格敏感", "健康饮食")


# ---- manual tags ------------------------------------------------------------------------------------------------
def test_manual_tags_are_added_and_removed_idempotently_with_one_audit_entry_per_change(api, tokens, member):
    staff = tokens.staff(stores=["gz-001"], sub="clerk-gz")  # any store's staff serve any member at the counter
    assert api.post(path(member), {"tag": "爱喝拿铁"}, staff) == (200, {"member_id": member, "tags": ["爱喝拿铁"]})
    assert api.post(path(member), {"tag": " 爱喝拿铁 "}, staff) == (200, {"member_id": member, "tags": ["爱喝拿铁"]})
    assert api.post(path(member), {"tag": "VIP"}, staff) == (200, {"member_id": member, "tags": ["VIP", "爱喝拿铁"]})
    entries = audit_entries(member)
    assert [(e["action"], e["fields"], e["actor"], e["role"]) for e in entries] == \
        [("member.tag_added", ["tags"], "clerk-gz", "staff")] * 2  # the replay wrote nothing
    assert not any("拿铁" in str(v) or "VIP" in str(v) for e in entries for v in e.values())  # never the tag
    item = tags_item(member)
    assert item["tags"] == {"爱喝拿铁", "VIP"} and item["added#VIP"]["by"] == "clerk-gz"

    manager = tokens.staff("store_manager", stores=["sh-001"], sub="mgr-sh")
    assert api.delete(path(member, "爱喝拿铁"), manager) == (200, {"member_id": member, "tags": ["VIP"]})
    assert api.delete(path(member, "爱喝拿铁"), manager) == (200, {"member_id": member, "tags": ["VIP"]})
    assert api.delete(path(member, "从没有过"), manager) == (200, {"member_id": member, "tags": ["VIP"]})
    assert api.delete(path(member, "VIP"), tokens.hq()) == (200, {"member_id": member, "tags": []})
    assert sorted((e["action"], e["role"]) for e in audit_entries(member)) == \
        [("member.tag_added", "staff")] * 2 + [("member.tag_removed", "hq"), ("member.tag_removed", "store_manager")]
    item = tags_item(member)
    assert "tags" not in item and not any(k.startswith("added#") for k in item)
    assert api.delete(path(member, "VIP"), manager) == (200, {"member_id": member, "tags": []})

    from chalicelib import bootstrap

    assert api.post(path(member), {"tag": "回头客"}, manager)[0] == 200
    assert bootstrap.tags().tags_of(member) == ("回头客",)


def test_a_tag_is_removed_by_its_url_encoded_text_and_cleaned_as_when_added(api, tokens, member):
    hq = tokens.hq()
    for tag in ("👨‍👩‍👧 家庭", "A+B", "早#晚?", "e\u0301te\u0301"):
        assert api.post(path(member), {"tag": tag}, hq)[0] == 200
    held = api.post(path(member), {"tag": "早#晚?"}, hq)[1]["tags"]
    assert sorted(held) == held and len(held) == 4 and "\u00e9t\u00e9" in held
    assert api.delete(path(member, "👨‍👩‍👧 家庭"), hq)[1]["tags"] == ["A+B", "\u00e9t\u00e9", "早#晚?"]
    assert api.delete(path(member, "A+B"), hq)[1]["tags"] == ["\u00e9t\u00e9", "早#晚?"]
    assert api.delete(path(member, "早#晚?"), hq)[1]["tags"] == ["\u00e9t\u00e9"]
    assert api.delete(path(member, "e\u0301te\u0301"), hq)[1]["tags"] == []  # another spelling, the same tag


def test_the_51st_manual_tag_is_409_and_a_held_one_is_still_a_no_op(api, tokens, member):
    hq = tokens.hq()
    for n in range(50):
        status, answer = api.post(path(member), {"tag": f"标签{n:02d}"}, hq)
        assert status == 200, answer
    assert len(answer["tags"]) == 50
    status, err = api.post(path(member), {"tag": "第五十一个"}, hq)
    assert (status, err["code"], err["details"]) == (409, "too_many_tags", {"member_id": member, "limit": 50})
    assert api.post(path(member), {"tag": "标签07"}, hq) == (200, answer)  # held already: no-op, not a 409
    assert len(audit_entries(member)) == 50
    assert api.delete(path(member, "标签07"), hq)[0] == 200
    assert api.post(path(member), {"tag": "第五十一个"}, hq)[1]["tags"][-1] == "第五十一个"


def test_a_merged_away_id_tags_its_survivor(api, tokens):
    hq, staff = tokens.hq(), tokens.staff(stores=["sh-001"])
    survivor = api.post("/members", registration(), staff)[1]["member_id"]
    duplicate = api.post("/members", registration(), staff)[1]["member_id"]
    assert api.post(f"/members/{survivor}/merge", {"source_member_id": duplicate}, hq)[0] in (200, 201)
    assert api.post(path(duplicate), {"tag": "合并后"}, staff) == (200, {"member_id": survivor, "tags": ["合并后"]})
    assert api.post(path(survivor), {"tag": "本人"}, staff)[1] == {"member_id": survivor, "tags": ["合并后", "本人"]}
    assert api.delete(path(duplicate, "本人"), staff) == (200, {"member_id": survivor, "tags": ["合并后"]})
    assert sorted(e["action"] for e in audit_entries(survivor)) == ["member.tag_added"] * 2 + ["member.tag_removed"]
    assert audit_entries(duplicate) == [] and tags_item(duplicate) is None


def test_a_merge_carries_the_duplicates_staff_tags_to_the_survivor(api, tokens):
    hq, staff = tokens.hq(), tokens.staff(stores=["sh-001"])
    survivor = api.post("/members", registration(), staff)[1]["member_id"]
    duplicate = api.post("/members", registration(), staff)[1]["member_id"]
    assert api.post(path(survivor), {"tag": "本人"}, staff)[0] == 200
    assert api.post(path(duplicate), {"tag": "爱喝热饮"}, staff)[0] == 200
    assert api.post(f"/members/{survivor}/merge", {"source_member_id": duplicate}, hq)[0] in (200, 201)
    view = api.get(f"/members/{survivor}", hq)[1]
    assert view["rfm"]["manual_tags"] == sorted(["本人", "爱喝热饮"])


@pytest.mark.parametrize("method", ["POST", "DELETE"])
def test_an_erased_or_unknown_member_is_404_and_nothing_is_written(api, tokens, method):
    hq, staff = tokens.hq(), tokens.staff(stores=["sh-001"])
    gone = api.post("/members", registration(), staff)[1]["member_id"]
    assert api.delete(f"/members/{gone}", hq)[0] == 200
    for member_id, code in ((gone, "member_erased"), ("01ARZ3NDEKTSV4RRFFQ69G5FAV", "member_not_found")):
        status, err = api.call(method, path(member_id, None if method == "POST" else "VIP"),
                               {"tag": "VIP"} if method == "POST" else None, staff)
        assert (status, err["code"]) == (404, code), err
        assert tags_item(member_id) is None and audit_entries(member_id) == []


def test_members_and_integrations_may_not_tag(api, tokens, member):
    for token in (tokens.member(member), tokens.staff("integration", stores=["sh-001"])):
        for method, body in (("POST", {"tag": "VIP"}), ("DELETE", None)):
            status, err = api.call(method, path(member, None if body else "VIP"), body, token)
            assert (status, err["code"]) == (403, "role_not_allowed"), err
    assert tags_item(member) is None


# ---- concurrency (live server, DynamoDB Local) ---------------------------------------------------------------------
def test_16_concurrent_adds_of_different_tags_lose_none(live, tokens, member):
    staff = tokens.staff(stores=["sh-001"])
    wanted = [f"并发{n:02d}" for n in range(16)]
    answers = at_once([lambda t=t: call_retrying(live, "POST", path(member), {"tag": t}, staff) for t in wanted])
    assert all(status == 200 and tag in body["tags"] for (status, body), tag in zip(answers, wanted, strict=True))
    assert set(tags_item(member)["tags"]) == set(wanted)
    assert len(audit_entries(member)) == 16
    # and the same 16 again, all at once: each a no-op
    again = at_once([lambda t=t: call_retrying(live, "POST", path(member), {"tag": t}, staff) for t in wanted])
    assert all(status == 200 and body["tags"] == sorted(wanted) for status, body in again)
    assert len(audit_entries(member)) == 16


def test_concurrent_adds_never_pass_the_cap(live, tokens, member):
    hq = tokens.hq()
    for n in range(44):
        assert call_retrying(live, "POST", path(member), {"tag": f"已有{n:02d}"}, hq)[0] == 200
    answers = at_once([lambda n=n: call_retrying(live, "POST", path(member), {"tag": f"新{n:02d}"}, hq)
                       for n in range(12)])
    assert sorted(status for status, _ in answers) == [200] * 6 + [409] * 6, answers
    assert all(body["code"] == "too_many_tags" for status, body in answers if status == 409)
    assert len(tags_item(member)["tags"]) == 50
    assert len(audit_entries(member)) == 50


def test_concurrent_add_and_remove_of_one_tag_leave_one_answer_per_change(live, tokens, member):
    hq = tokens.hq()
    uid_tag = uid("t")[:20]
    calls = [lambda: call_retrying(live, "POST", path(member), {"tag": uid_tag}, hq)] * 8 + \
            [lambda: call_retrying(live, "DELETE", path(member, uid_tag), None, hq)] * 8
    answers = at_once(calls)
    assert all(status == 200 for status, _ in answers), answers
    held = uid_tag in (tags_item(member) or {}).get("tags", set())
    actions = [e["action"] for e in audit_entries(member)]
    # Each add needs the tag absent and each remove present, so the changes that happened alternate: one more
    # add than removes exactly when the tag is held in the end, each audited once.
    assert actions.count("member.tag_added") - actions.count("member.tag_removed") == int(held), actions
    assert actions.count("member.tag_added") >= 1
