"""The knowledge base's pure rules: the tokenizer, what an article puts in the index, which postings an edit
writes, and the ranking. No sockets."""
from __future__ import annotations

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from pydantic import ValidationError

from chalicelib.domain.kb import (
    MAX_QUERY_TERMS,
    ArticleContent,
    ArticleInput,
    Counts,
    Posting,
    SearchQuery,
    SyncState,
    field_score,
    index_of,
    is_cjk,
    plan_sync,
    query_terms,
    rank,
    tokens,
)


def article(title: str, body: str = "正文", tags: list[str] | None = None, category: str = "faq") -> ArticleContent:
    return ArticleContent(category=category, title=title, tags=tags or [], body=body)


def postings_of(articles: dict[str, ArticleContent]) -> dict[str, list[Posting]]:
    """An in-memory index, built the way the store keeps it: one posting per (term, article)."""
    index: dict[str, list[Posting]] = {}
    for article_id, content in sorted(articles.items()):
        for term, (counts, category) in index_of(content).items():
            index.setdefault(term, []).append(Posting(article_id, category, counts))
    return index


def search(articles: dict[str, ArticleContent], q: str, limit: int = 20, **kw) -> list[str]:
    terms = query_terms(q)
    index = postings_of(articles)
    return [h.article_id for h in rank(terms, {t: index.get(t, []) for t in terms}, limit, **kw)]


# ---- tokens -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("text", "expected"), [
    ("积分过期", ["积分", "分过", "过期"]),  # overlapping bigrams
    ("茶", ["茶"]),  # a lone character stands for itself
    ("奶 茶", ["奶", "茶"]),  # a space ends a run: no bigram across it
    ("会员，积分", ["会员", "积分"]),  # so does punctuation (full-width comma)
    ("iPhone15 的屏幕", ["iphone15", "的屏", "屏幕"]),  # ASCII letters and digits: one lower-cased word
    ("ＡＢＣ１２３", ["abc123"]),  # full-width forms read as ASCII (NFKC)
    ("退款-refund_policy", ["退款", "refund", "policy"]),
    ("😀🎉 !!", []),  # nothing searchable
    ("カード", ["カー", "ード"]),  # kana: bigrams as Han
    ("x" * 50, ["x" * 32]),  # a long word is cut
])
def test_tokens(text, expected):
    assert tokens(text) == expected


def test_query_terms_are_distinct_in_order_and_capped():
    assert query_terms("积分积分") == ["积分", "分积"]
    many = " ".join(f"w{i}" for i in range(20))
    assert query_terms(many) == [f"w{i}" for i in range(MAX_QUERY_TERMS)]


@given(st.text(max_size=200))
def test_terms_never_hold_a_key_separator_and_are_lower_case(text):
    for term in tokens(text):
        assert term and "#" not in term and term == term.lower() and len(term) <= 32


# ---- the index of an article ----------------------------------------------------------------------------
def test_index_counts_each_field_and_carries_the_category():
    index = index_of(ArticleContent(category="points", title="积分过期", tags=["积分", "会员"],
                                    body="会员积分一年后过期。积分可以兑换。"))
    assert index["积分"] == (Counts(title=1, tags=1, body=2), "points")
    assert index["会员"] == (Counts(title=0, tags=1, body=1), "points")
    assert index["分过"] == (Counts(title=1, tags=0, body=0), "points")
    assert index_of(None) == {}


def test_tags_do_not_run_into_each_other():
    index = index_of(article("标题", tags=["会员", "积分"]))
    assert "员积" not in index


# ---- the sync plan ----------------------------------------------------------------------------------------
def test_an_edit_writes_only_the_terms_it_changed():
    old = index_of(article("积分过期规则", body="会员积分一年后过期"))
    new = index_of(article("积分过期规则", body="会员积分两年后过期"))
    plan = plan_sync(new, [old])
    # ...分一 一年 年后... -> ...分两 两年 年后...: two bigrams go, two come; 年后 and the rest keep their counts
    assert plan.deletes == sorted({"一年", "分一"})
    assert set(plan.puts) == {"两年", "分两"}


def test_after_a_crash_every_term_any_version_may_have_left_is_written():
    v1 = index_of(article("甲乙", body="丙丁"))
    v2 = index_of(article("甲乙", body="戊己"))
    v3 = index_of(article("甲乙", body="丙丁 庚辛"))
    # v1 indexed, v2's pass crashed part way, now v3: 丙丁 is in v1 and v3 but not v2 (v2 may have deleted it)
    plan = plan_sync(v3, [v1, v2])
    assert set(plan.puts) == {"丙丁", "庚辛"} and plan.deletes == ["戊己"]


def test_a_category_change_rewrites_every_posting():
    old = index_of(article("积分", body="兑换", category="a"))
    new = index_of(article("积分", body="兑换", category="b"))
    assert set(plan_sync(new, [old]).puts) == set(new)


@given(st.lists(st.text(alphabet="积分会员过期兑换券年月日ab1 ", min_size=1, max_size=30), min_size=2, max_size=5))
def test_applying_the_plan_to_any_mixture_of_possible_states_gives_exactly_the_target(bodies):
    """A table whose each posting holds what some possible version said (or nothing where it said nothing)
    becomes exactly the target's index after the plan, whichever version each posting came from."""
    indexes = [index_of(article("标题", body=f"正文{b}")) for b in bodies]
    *possible, target = indexes
    terms = sorted({t for i in indexes for t in i})
    for pick in range(len(possible)):
        table = {}
        for n, term in enumerate(terms):  # each term from some version, differing per term
            source = possible[(pick + n) % len(possible)]
            if term in source:
                table[term] = source[term]
        plan = plan_sync(target, possible)
        for term in plan.deletes:
            table.pop(term, None)
        table.update(plan.puts)
        assert table == target


# ---- ranking ----------------------------------------------------------------------------------------------
def test_a_title_hit_ranks_above_a_body_hit():
    found = search({"body": article("会员须知", body="退款 退款 退款 退款 流程"), "title": article("退款流程")}, "退款")
    assert found == ["title", "body"]


@given(st.integers(min_value=1, max_value=10_000))
def test_one_title_hit_outscores_any_number_of_body_hits_and_one_tag_hit_too(n):
    assert field_score(Counts(title=1)) > field_score(Counts(tags=1)) > field_score(Counts(body=n))


def test_articles_holding_every_term_come_first():
    found = search({"one": article("积分", body="积分 积分 积分"), "both": article("其他", body="积分 过期")},
                   "积分 过期")
    assert found == ["both", "one"]


def test_a_category_keeps_only_its_articles():
    articles = {"a": article("退款流程", category="refunds"), "b": article("退款规则", category="faq")}
    assert search(articles, "退款", category="refunds") == ["a"]


def test_a_chinese_query_finds_an_article_by_a_phrase_inside_a_sentence():
    articles = {"x": article("门店营业时间", body="春节期间各门店营业时间调整，请以门店公告为准。"),
                "y": article("会员等级", body="消费满一万元升级为金卡会员。")}
    assert search(articles, "营业时间调整")[0] == "x"
    assert search(articles, "金卡") == ["y"]
    assert search(articles, "不存在的词") == []


def test_ties_are_ordered_by_article_id_and_the_limit_holds():
    articles = {f"a{i}": article("同样的标题") for i in range(5)}
    assert search(articles, "标题", limit=3) == ["a0", "a1", "a2"]


cjk = st.characters(min_codepoint=0x4E00, max_codepoint=0x9FFF)
title_text = st.text(alphabet=st.one_of(cjk, st.sampled_from(" ，。abc123")), min_size=2, max_size=40).filter(str.strip)


@given(title_text, st.data(), st.lists(title_text, max_size=4))
def test_an_article_is_found_by_any_two_consecutive_cjk_characters_of_its_title(title, data, others):
    pairs = [i for i in range(len(title) - 1) if is_cjk(title[i]) and is_cjk(title[i + 1])]
    assume(pairs)
    i = data.draw(st.sampled_from(pairs))
    articles = {"target": article(title), **{f"o{n}": article(t) for n, t in enumerate(others)}}
    assert "target" in search(articles, title[i:i + 2], limit=len(articles))


@given(st.lists(title_text, min_size=1, max_size=6), title_text)
def test_ranking_is_sorted_and_never_returns_an_article_without_a_query_term(titles, q):
    articles = {f"a{n}": article(t) for n, t in enumerate(titles)}
    terms = query_terms(q)
    index = postings_of(articles)
    hits = rank(terms, {t: index.get(t, []) for t in terms}, 20)
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    for h in hits:
        assert h.matched >= 1 and set(terms) & set(index_of(articles[h.article_id]))


# ---- inputs ---------------------------------------------------------------------------------------------------
def test_article_input_trims_and_drops_repeated_tags():
    cmd = ArticleInput.model_validate({"category": "faq", "title": "  标题 ", "tags": ["积分", "VIP", "vip"],
                                       "body": "正文\n第二行"})
    assert (cmd.title, cmd.tags, cmd.body) == ("标题", ["积分", "VIP"], "正文\n第二行")
    assert cmd.content() == ArticleContent(category="faq", title="标题", tags=["积分", "VIP"], body="正文\n第二行")


@pytest.mark.parametrize("change", [{"title": " "}, {"title": "a\nb"}, {"body": "\u202e"}, {"category": "Faq"},
                                    {"category": "a#b"}, {"tags": ["x"] * 11}, {"body": "x" * 20_001},
                                    {"base_version": -1}, {"extra": 1}])
def test_article_input_refuses(change):
    with pytest.raises(ValidationError):
        ArticleInput.model_validate({"category": "faq", "title": "标题", "body": "正文", **change})


def test_a_search_needs_q_or_category():
    with pytest.raises(ValidationError):
        SearchQuery.model_validate({})
    assert SearchQuery.model_validate({"category": "faq"}).limit == 10
    with pytest.raises(ValidationError):
        SearchQuery.model_validate({"q": "x", "limit": "21"})


def test_a_lease_blocks_only_while_a_pass_may_be_running():
    assert SyncState(version=2, indexed=1, passes=1, lease_until=1_000).busy(999)
    assert not SyncState(version=2, indexed=1, passes=1, lease_until=1_000).busy(1_000)
    assert not SyncState(version=2, indexed=2, passes=0, lease_until=5_000).busy(999)
