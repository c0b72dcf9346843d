"""The knowledge base end to end through the API (chalice test client, DynamoDB Local): versions and conflicts,
searching Chinese and English text through the bigram index, edits that take their old words out of it,
category lists, who may read, what a query reads, and an index that a crashed edit leaves half written,
repaired by the same PUT sent again."""
from __future__ import annotations

import threading
import uuid
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

import pytest

from bench.capacity import CapacityMeter
from chalicelib import bootstrap
from chalicelib.domain.access import Principal, Role
from chalicelib.domain.errors import Invalid, Unavailable
from chalicelib.domain.kb import ArticleContent, ArticleInput, index_of
from chalicelib.services import kb as kb_service
from chalicelib.store import kb as kb_store
from chalicelib.store import keys
from testkit.kb import chinese_text, unique_han, unique_word


def aid() -> str:
    return f"kb-{uuid.uuid4().hex[:10]}"


def body(title: str = "退款流程", text: str = "请携带小票到门店办理退款。", tags: list[str] | None = None,
         category: str = "faq", **extra: Any) -> dict[str, Any]:
    return {"category": category, "title": title, "tags": tags or [], "body": text, **extra}


def find(api, token, **query) -> tuple[int, Any]:  # noqa: ANN001
    return api.get(f"/kb/articles?{urlencode(query)}", token)


def found_ids(api, token, **query) -> list[str]:  # noqa: ANN001
    status, answer = find(api, token, **query)
    assert status == 200, answer
    return [a["article_id"] for a in answer["items"]]


@pytest.fixture
def hq(tokens):
    return tokens.hq()


@pytest.fixture
def staff(tokens):
    return tokens.staff(stores=["sh-001"])


# ---- versions -------------------------------------------------------------------------------------------------
def test_each_change_is_a_new_version_and_the_same_content_is_the_same_version(api, hq, staff):
    a = aid()
    status, first = api.put(f"/kb/articles/{a}", body(tags=["退款"]), hq)
    assert (status, first["version"], first["article_id"], first["tags"]) == (201, 1, a, ["退款"]), first
    assert api.put(f"/kb/articles/{a}", body(tags=["退款"]), hq) == (200, first)  # nothing changed: that version
    status, second = api.put(f"/kb/articles/{a}", body(text="请携带小票到任意门店办理退款。", tags=["退款"]), hq)
    assert (status, second["version"]) == (200, 2), second
    status, read = api.get(f"/kb/articles/{a}", staff)
    assert status == 200 and read == second and read["body"] == "请携带小票到任意门店办理退款。"
    # the old version is kept
    kept = bootstrap.kb().versions(a, 1, 2)
    assert [(v.version, v.body) for v in kept] == [(1, "请携带小票到门店办理退款。"), (2, read["body"])]


def test_base_version_makes_an_edit_conditional(api, hq):
    a = aid()
    assert api.put(f"/kb/articles/{a}", body(base_version=0), hq)[0] == 201  # 0: must not exist yet
    status, err = api.put(f"/kb/articles/{a}", body(title="改", base_version=0), hq)
    assert (status, err["code"], err["details"]) == (409, "version_conflict", {"base_version": 0, "current_version": 1})
    assert api.put(f"/kb/articles/{a}", body(title="改", base_version=1), hq)[1]["version"] == 2
    status, err = api.put(f"/kb/articles/{a}", body(title="再改", base_version=1), hq)  # made from an old version
    assert (status, err["code"]) == (409, "version_conflict")
    assert api.get(f"/kb/articles/{a}", hq)[1]["title"] == "改"
    # a retried edit finds itself applied: its old base_version does not make it a conflict
    assert api.put(f"/kb/articles/{a}", body(title="改", base_version=1), hq)[:1] == (200,)


def test_unknown_article_is_404(api, staff):
    status, err = api.get(f"/kb/articles/{aid()}", staff)
    assert (status, err["code"]) == (404, "article_not_found")


# ---- search ---------------------------------------------------------------------------------------------------
def test_a_title_hit_ranks_above_body_hits(api, hq, staff):
    word = unique_han(2)
    in_body, in_title = aid(), aid()
    api.put(f"/kb/articles/{in_body}", body(title="门店须知", text=f"{word}。{word}，{word}！"), hq)
    api.put(f"/kb/articles/{in_title}", body(title=f"{word}的办理", text="见门店公告。"), hq)
    status, answer = find(api, staff, q=word)
    assert status == 200 and answer["terms"] == [word] and answer["complete"] is True
    assert [a["article_id"] for a in answer["items"]] == [in_title, in_body]
    assert answer["items"][0]["score"] > answer["items"][1]["score"] > 0
    assert answer["items"][0]["title"] == f"{word}的办理" and answer["items"][0]["version"] == 1


def test_a_chinese_query_finds_the_article_by_a_phrase_from_its_text(api, hq, tokens):
    word = unique_han(4)
    a = aid()
    text = chinese_text(600, seed=1) + f"如遇{word}情况，请联系区域经理。" + chinese_text(300, seed=2)
    assert api.put(f"/kb/articles/{a}", body(title="特殊情况处理", text=text), hq)[0] == 201
    region = tokens.staff("region_manager", region="east")
    assert found_ids(api, region, q=f"{word}情况")[0] == a  # the phrase as typed, cut into bigrams
    assert found_ids(api, region, q=word[1:3]) == [a]  # any two consecutive characters


def test_an_english_word_and_a_tag_find_the_article(api, hq, staff):
    word, tag = unique_word(), unique_han(2)
    a = aid()
    api.put(f"/kb/articles/{a}", body(title=f"POS {word.upper()} 故障", tags=[tag]), hq)
    assert found_ids(api, staff, q=word) == [a]  # case does not matter
    assert found_ids(api, staff, q=tag) == [a]


def test_an_edit_takes_its_old_words_out_of_the_index(api, hq, staff):
    old, new, kept = unique_han(3), unique_han(3), unique_word()
    a = aid()
    api.put(f"/kb/articles/{a}", body(title=kept, text=f"旧的说法：{old}。"), hq)
    assert found_ids(api, staff, q=old) == [a]
    assert api.put(f"/kb/articles/{a}", body(title=kept, text=f"新的说法：{new}。"), hq)[1]["version"] == 2
    assert found_ids(api, staff, q=old) == []
    assert found_ids(api, staff, q=new) == [a] and found_ids(api, staff, q=kept) == [a]
    repo = bootstrap.kb()
    assert all(repo.postings(t, 10) == ([], True) for t in index_of(_content(old)) if t not in index_of(_content(new)))


def _content(text: str) -> ArticleContent:
    return ArticleContent(category="faq", title="x", body=f"的说法：{text}。")


def test_category_lists_its_articles_newest_first_and_filters_a_search(api, hq, staff):
    category, word = f"c{uuid.uuid4().hex[:10]}", unique_han(2)
    first, second, elsewhere = aid(), aid(), aid()
    api.put(f"/kb/articles/{first}", body(category=category, text=f"{word}一"), hq)
    api.put(f"/kb/articles/{second}", body(category=category, text="二"), hq)
    api.put(f"/kb/articles/{elsewhere}", body(category="other", text=f"{word}三"), hq)
    status, answer = find(api, staff, category=category)
    assert status == 200 and [a["article_id"] for a in answer["items"]] == [second, first]
    assert {a["score"] for a in answer["items"]} == {None} and answer["terms"] == []
    assert found_ids(api, staff, category=category, limit=1) == [second]
    assert sorted(found_ids(api, staff, q=word)) == sorted([first, elsewhere])
    assert found_ids(api, staff, q=word, category=category) == [first]
    # an article moved to another category leaves the old one's list (and its postings say the new one)
    api.put(f"/kb/articles/{first}", body(category="other", text=f"{word}一"), hq)
    assert found_ids(api, staff, category=category) == [second]
    assert found_ids(api, staff, q=word, category=category) == []


def test_a_search_needs_q_or_category_and_searchable_text(api, staff):
    status, err = find(api, staff)
    assert (status, err["code"]) == (422, "validation_error")
    status, err = find(api, staff, q="！？…")
    assert (status, err["code"]) == (422, "no_search_terms")
    status, err = find(api, staff, q="x", limit=21)
    assert (status, err["code"]) == (422, "validation_error")


@pytest.mark.parametrize("role", ["member", "integration"])
def test_members_and_integrations_may_not_read_the_knowledge_base(api, hq, tokens, role):
    a = aid()
    api.put(f"/kb/articles/{a}", body(), hq)
    token = tokens.member("01ARZ3NDEKTSV4RRFFQ69G5FAV") if role == "member" else tokens.staff(role, stores=["mall"])
    for path in (f"/kb/articles/{a}", "/kb/articles?category=faq", "/kb/articles?q=退款"):
        status, err = api.get(path, token)
        assert (status, err["code"]) == (403, "role_not_allowed"), path


def test_only_hq_edits(api, hq, tokens):
    a = aid()
    for token in (tokens.staff(stores=["sh-001"]), tokens.staff("store_manager", stores=["sh-001"]),
                  tokens.staff("region_manager", region="east")):
        status, err = api.put(f"/kb/articles/{a}", body(), token)
        assert (status, err["code"]) == (403, "role_not_allowed")
    assert api.get(f"/kb/articles/{a}", hq)[0] == 404


# ---- what a request reads ---------------------------------------------------------------------------------------
class KeysQueried:
    """The partitions each Query names (botocore's parameters, before they are sent)."""

    def __init__(self) -> None:
        self.partitions: list[str] = []

    def __call__(self, params: dict[str, Any], model: Any, **_: Any) -> None:
        if model.name == "Query":
            self.partitions.append(next(v["S"] for k, v in params["ExpressionAttributeValues"].items()
                                        if k in (":pk", ":p")))


def test_a_query_reads_only_its_terms_postings_then_one_batch_of_articles(api, hq, staff):
    words = [unique_han(2), unique_han(2)]
    for n in range(3):
        content = body(title=f"{words[0]}第{n}条", text=f"{words[1]}。{chinese_text(200, n)}")
        assert api.put(f"/kb/articles/{aid()}", content, hq)[0] == 201
    client = bootstrap.dynamodb_client()
    seen = KeysQueried()
    client.meta.events.register("before-parameter-build.dynamodb", seen)
    try:
        with CapacityMeter(client) as meter:
            status, answer = find(api, staff, q=f"{words[0]} {words[1]}")
            used = meter.take()
            assert status == 200 and len(answer["items"]) == 3
            assert dict(used.requests) == {"Query": 2, "BatchGetItem": 1}
            assert sorted(seen.partitions) == sorted(keys.kb_term_pk(w) for w in words)

            seen.partitions.clear()
            assert find(api, staff, category="faq", limit=5)[0] == 200
            assert dict(meter.take().requests) == {"Query": 1}
            assert seen.partitions == [keys.kb_category_pk("faq")]

            seen.partitions.clear()
            assert api.get(f"/kb/articles/{answer['items'][0]['article_id']}", staff)[0] == 200
            assert dict(meter.take().requests) == {"Query": 1}  # the head and the current version together
    finally:
        client.meta.events.unregister("before-parameter-build.dynamodb", seen)


def test_an_edit_of_one_sentence_writes_only_the_postings_it_changed(api, hq):
    a = aid()
    text = chinese_text(1_500, seed=7)
    api.put(f"/kb/articles/{a}", body(title="长文章", text=text), hq)
    with CapacityMeter(bootstrap.dynamodb_client()) as meter:
        edited = text.replace("门店", "商店", 1)
        assert api.put(f"/kb/articles/{a}", body(title="长文章", text=edited), hq)[1]["version"] == 2
        used = meter.take()
    # one query (head + current version), one transaction, one batch of the few changed postings, one update
    assert dict(used.requests) == {"Query": 1, "TransactWriteItems": 1, "BatchWriteItem": 1, "UpdateItem": 1}


# ---- crashes and concurrent edits: the index ends exactly the current version's ---------------------------------
def _postings_in_table(stack, article_id: str) -> dict[str, dict[str, Any]]:  # noqa: ANN001
    """Every posting of the article, read from the whole (fresh) table: what the index really holds."""
    from chalicelib.store.db import from_item

    out = {}
    for page in stack.client("dynamodb").get_paginator("scan").paginate(
            TableName=bootstrap.settings().table_name, ConsistentRead=True):
        for item in map(from_item, page["Items"]):
            if item["pk"].startswith(keys.KB_TERM_PREFIX) and item["sk"] == article_id:
                out[item["pk"].removeprefix(keys.KB_TERM_PREFIX)] = item
    return out


def _exactly_indexed(stack, article_id: str, content: dict[str, Any]) -> bool:  # noqa: ANN001
    want = index_of(ArticleContent.model_validate(content))
    have = _postings_in_table(stack, article_id)
    return {t: (c.title, c.tags, c.body, cat) for t, (c, cat) in want.items()} == \
        {t: (p.get("t", 0), p.get("g", 0), p.get("b", 0), p["c"]) for t, p in have.items()}


def test_a_crash_mid_index_is_repaired_by_the_same_put_sent_again(stack, fresh_table, api, hq, staff, monkeypatch):
    a = aid()
    v1 = body(title="积分规则", text=chinese_text(1_500, seed=1), tags=["积分"])
    assert api.put(f"/kb/articles/{a}", v1, hq)[0] == 201
    assert _exactly_indexed(stack, a, v1)

    # Given an edit whose request dies after its first batch of postings (the version and head are written)
    real = kb_store.DynamoKbRepository._batch_write
    calls = []

    def dies_after_one_batch(self, chunk):  # noqa: ANN001
        if calls:
            raise RuntimeError("simulated crash: the Lambda stopped here")
        calls.append(1)
        return real(self, chunk)

    monkeypatch.setattr(kb_store.DynamoKbRepository, "_batch_write", dies_after_one_batch)
    v2 = body(title="积分规则（新）", text=chinese_text(1_500, seed=2), tags=["积分", "会员"])
    assert api.put(f"/kb/articles/{a}", v2, hq)[0] == 500
    monkeypatch.setattr(kb_store.DynamoKbRepository, "_batch_write", real)
    assert api.get(f"/kb/articles/{a}", staff)[1]["version"] == 2
    assert not _exactly_indexed(stack, a, v2) and not _exactly_indexed(stack, a, v1)  # half one, half the other

    # Then another edit must wait: the crashed pass could still be writing until its lease runs out
    monkeypatch.setattr(kb_service, "BUSY_WAIT_SECONDS", 0.0)
    status, err = api.put(f"/kb/articles/{a}", body(title="别的修改", text="短"), hq)
    assert (status, err["code"]) == (503, "article_busy")

    # When the same PUT is sent again, Then it answers version 2 (no new version) and the index is exactly v2's
    status, again = api.put(f"/kb/articles/{a}", v2, hq)
    assert (status, again["version"]) == (200, 2), again
    assert _exactly_indexed(stack, a, v2)
    v1_terms, v2_terms = (set(index_of(ArticleContent.model_validate(v))) for v in (v1, v2))
    only_v1 = sorted(v1_terms - v2_terms)
    assert only_v1 and found_ids(api, staff, q=only_v1[0]) == []
    assert api.put(f"/kb/articles/{a}", v2, hq) == (200, again)  # indexed now: a plain no-op

    # And once the lease has run out, the next edit goes through and indexes exactly
    from chalicelib.domain import clock

    later = clock.now() + timedelta(minutes=2)
    monkeypatch.setattr(clock, "now", lambda: later)
    v3 = body(title="别的修改", text=chinese_text(400, seed=3))
    assert api.put(f"/kb/articles/{a}", v3, hq)[1]["version"] == 3
    assert _exactly_indexed(stack, a, v3)


def test_a_crash_in_the_first_put_is_repaired_too(stack, fresh_table, api, hq, staff, monkeypatch):
    a = aid()
    v1 = body(title="新文章", text=chinese_text(800, seed=4))
    monkeypatch.setattr(kb_store.DynamoKbRepository, "write_postings",
                        lambda self, article_id, plan: (_ for _ in ()).throw(RuntimeError("simulated crash")))
    assert api.put(f"/kb/articles/{a}", v1, hq)[0] == 500
    monkeypatch.undo()
    assert _postings_in_table(stack, a) == {}
    status, again = api.put(f"/kb/articles/{a}", v1, hq)
    assert (status, again["version"]) == (200, 1)
    assert _exactly_indexed(stack, a, v1)


def test_concurrent_edits_of_one_article_leave_the_index_exactly_the_current_version(stack, fresh_table, api, hq):
    a = aid()
    assert api.put(f"/kb/articles/{a}", body(text=chinese_text(500, seed=0)), hq)[0] == 201
    versions = [body(title=f"版本{n}", text=chinese_text(500, seed=n), tags=[f"t{n}"]) for n in range(1, 7)]
    answers: list[int] = []
    start = threading.Barrier(len(versions))
    editor = Principal(sub="hq-race", role=Role.HQ)

    def edit(content: dict[str, Any]) -> None:
        # The service itself, from each thread: the chalice test client swaps os.environ per request, which
        # is not safe across threads (the races over real HTTP live in tests/integration).
        start.wait()
        try:
            kb_service.put_article(a, ArticleInput.model_validate(content), editor, bootstrap.kb())
            answers.append(200)
        except Unavailable as busy:
            answers.append(503 if busy.code == "article_busy" else 0)

    threads = [threading.Thread(target=edit, args=(v,)) for v in versions]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert set(answers) <= {200, 503} and 200 in answers, answers
    current = api.get(f"/kb/articles/{a}", hq)[1]
    assert current["version"] == 1 + answers.count(200)
    assert _exactly_indexed(stack, a, {k: current[k] for k in ("category", "title", "tags", "body")})


# ---- citing articles in a ticket reply ----------------------------------------------------------------------------
def test_cite_names_each_article_once_with_its_version_and_refuses_unknown_ones(api, hq):
    a, b = aid(), aid()
    api.put(f"/kb/articles/{a}", body(title="甲"), hq)
    api.put(f"/kb/articles/{b}", body(title="乙"), hq)
    api.put(f"/kb/articles/{b}", body(title="乙（修订）"), hq)
    assert kb_service.cite([b, a, b], bootstrap.kb()) == [
        {"article_id": b, "version": 2, "title": "乙（修订）"}, {"article_id": a, "version": 1, "title": "甲"}]
    assert kb_service.cite([], bootstrap.kb()) == []
    missing = [aid(), aid()]
    with pytest.raises(Invalid) as refused:
        kb_service.cite([a, missing[0], missing[1]], bootstrap.kb())
    assert (refused.value.code, refused.value.details) == ("unknown_article", {"article_ids": missing})
