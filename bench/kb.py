"""The knowledge base's DynamoDB cost: an article PUT (new, a one-sentence edit, the same content again), a search
of 2 and of 4 terms over a corpus of CORPUS articles, a category list and one article read.

Runs fewer times than the other rows (KB_RUNS): a new article writes hundreds of postings, and the meter reads
every written item before and after to size it."""
from __future__ import annotations

import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from chalicelib import bootstrap
from chalicelib.domain.kb import ArticleInput, SearchQuery
from chalicelib.services import kb
from testkit.kb import WORDS, article_text

from .capacity import CapacityMeter, Usage
from .dynamo import HQ, MANAGER, Scenario

CORPUS = 200
CORPUS_CHARS = 400  # the corpus articles' length: a query's cost is its terms' postings, not the articles' length
ARTICLE_CHARS = 1_500
CATEGORY = "bench-kb"


def _article(text: str, title: str = "会员积分与退款说明", category: str = CATEGORY) -> ArticleInput:
    return ArticleInput(category=category, title=title, tags=["积分", "退款"], body=text)


def _put(arg: tuple[str, ArticleInput]) -> None:
    kb.put_article(arg[0], arg[1], HQ, bootstrap.kb())


def _new(n: int) -> list[tuple[str, ArticleInput]]:
    return [(f"bench-{uuid.uuid4().hex[:10]}", _article(article_text(ARTICLE_CHARS, seed=i))) for i in range(n)]


def _edits(n: int) -> list[tuple[str, ArticleInput]]:
    """Articles that exist, each with its body changed in one sentence (its first word replaced)."""
    out = []
    for article_id, cmd in _new(n):
        _put((article_id, cmd))
        first, rest = cmd.body[:2], cmd.body[2:]
        other = next(w for w in WORDS if w != first)
        out.append((article_id, _article(other + rest)))
    return out


def _again(n: int) -> list[tuple[str, ArticleInput]]:
    made = _new(n)
    for arg in made:
        _put(arg)
    return made


_corpus: list[str] = []


def _ensure_corpus() -> list[str]:
    """CORPUS articles in CATEGORY (made once, 8 at a time, before anything is measured)."""
    if not _corpus:
        made = [(f"bench-c-{uuid.uuid4().hex[:10]}", _article(article_text(CORPUS_CHARS, seed=1_000 + i),
                                                                title=f"{WORDS[i % len(WORDS)]}须知"))
                for i in range(CORPUS)]
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(_put, made))
        _corpus.extend(a for a, _ in made)
    return _corpus


def _search(q: str | None, category: str | None = None, limit: int = 10) -> None:
    found = kb.search(SearchQuery(q=q, category=category, limit=limit), MANAGER, bootstrap.kb())
    if not found.items:
        raise RuntimeError(f"the search {q!r} / {category!r} found nothing")


# Words of WORDS: most corpus articles hold each of them (a term's postings: ~150 of the 200, a common term)
TWO_TERMS = "积分 退款"
FOUR_TERMS = "会员 积分 门店 退款"

SCENARIOS = [
    Scenario(f"kb: PUT a new article ({ARTICLE_CHARS:,} Chinese chars)", _new, _put),
    Scenario(f"kb: PUT an edit of one word ({ARTICLE_CHARS:,} chars)", _edits, _put),
    Scenario(f"kb: PUT the same content again ({ARTICLE_CHARS:,} chars, no-op)", _again, _put),
    Scenario(f"kb: search, 2 terms, {CORPUS} articles", lambda n: _ensure_corpus() and [TWO_TERMS] * n,
             lambda q: _search(q)),
    Scenario(f"kb: search, 4 terms, {CORPUS} articles", lambda n: _ensure_corpus() and [FOUR_TERMS] * n,
             lambda q: _search(q)),
    Scenario(f"kb: category list, 10 of {CORPUS}", lambda n: _ensure_corpus() and [CATEGORY] * n,
             lambda c: _search(None, c)),
    Scenario("kb: GET one article", lambda n: _ensure_corpus()[:n],
             lambda a: kb.get_article(a, MANAGER, bootstrap.kb())),
]


def measure(runs: int) -> list[tuple[str, Usage]]:
    """Average usage per call of each scenario (as dynamo.measure, with its own number of runs)."""
    _ensure_corpus()
    results: list[tuple[str, Usage]] = []
    with CapacityMeter(bootstrap.dynamodb_client()) as meter:
        for scenario in SCENARIOS:
            args: list[Any] = scenario.prepare(runs)
            meter.take()
            for arg in args:
                scenario.run(arg)
            total = meter.take()
            per = len(args) * scenario.per_run
            results.append((scenario.label, Usage(requests=Counter({op: c / per for op, c in total.requests.items()}),
                                                  rcu=total.rcu / per, wcu=total.wcu / per)))
    return results
