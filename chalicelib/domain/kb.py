"""The knowledge base: versioned articles, and searching Chinese text without a search engine.

Pure: the tokenizer, what an article contributes to the inverted index, which postings a change must write,
and the ranking. The store keeps one posting item per (term, article); a query reads only its terms' postings.

Terms: NFKC-normalised, lower-cased text is cut into runs. A run of CJK characters (Han, kana, Hangul)
gives its overlapping character bigrams (a lone character gives itself: "茶" in "奶 茶"); a run of ASCII
letters and digits gives one word ("iphone15", "a4"). Anything else (spaces, punctuation, emoji) separates
runs. So a query finds an article by any two consecutive characters of it: "积分过期" -> 积分, 分过, 过期.

Ranking (tf-idf-like, fields weighted): a term's score in an article is
    W_TITLE * s(title count) + W_TAGS * s(tags count) + W_BODY * s(body count),   s(n) = n / (n + 1)
so a title hit (3 x 1/2 = 1.5) always outranks any number of body hits (< 1), and a tag hit (1.0) does too.
Each term is weighted by idf = ln(1 + IDF_REF / df) (df: the articles holding it, known from its postings),
and the sum by the share of the query's terms the article holds, squared (articles holding every term first).
"""
from __future__ import annotations

import math
import unicodedata
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, NamedTuple

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictInt, model_validator

# ---- limits ------------------------------------------------------------------------------------------------
ArticleId = Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
Category = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,31}$", examples=["refunds"])]
MAX_TERM_CHARS = 32  # a longer ASCII word is cut to this (a part number, a URL fragment)
MAX_QUERY_CHARS = 64
MAX_QUERY_TERMS = 8  # distinct terms a query reads (one DynamoDB Query each); later ones are left out
MAX_RESULTS = 20
MAX_BODY_CHARS = 20_000
MAX_TAGS = 10

W_TITLE, W_TAGS, W_BODY = 3.0, 2.0, 1.0
IDF_REF = 1_000  # idf = ln(1 + IDF_REF / df): no article count needs reading; only the ratio between terms matters


# ---- the article -------------------------------------------------------------------------------------------
_BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def _visible(value: str, *, multiline: bool) -> str:
    value = unicodedata.normalize("NFC", value).strip()
    allowed = "\n\t\r" if multiline else ""
    if any((unicodedata.category(c) == "Cc" and c not in allowed) or c in _BIDI_CONTROLS for c in value):
        raise ValueError("must not contain control characters")
    if not value or all(unicodedata.category(c)[0] in "ZCM" for c in value):
        raise ValueError("must contain visible text")
    return value


def _line(value: str) -> str:
    return _visible(value, multiline=False)


def _text(value: str) -> str:
    return _visible(value, multiline=True)


def _distinct(tags: list[str]) -> list[str]:
    seen: set[str] = set()
    out = []
    for tag in tags:
        if tag.casefold() not in seen:
            seen.add(tag.casefold())
            out.append(tag)
    return out


Title = Annotated[str, Field(min_length=1, max_length=120), AfterValidator(_line)]
Tag = Annotated[str, Field(min_length=1, max_length=20), AfterValidator(_line)]
Body = Annotated[str, Field(min_length=1, max_length=MAX_BODY_CHARS,
                            description="plain text; the whole request is at most 64 KB: long Chinese text fits as "
                                        "UTF-8 (3 bytes a character), not as \\u escapes (6)"),
                 AfterValidator(_text)]


class ArticleContent(BaseModel):
    """What an article says: two PUTs with equal content are the same version."""

    model_config = ConfigDict(extra="forbid")
    category: Category
    title: Title
    tags: Annotated[list[Tag], AfterValidator(_distinct)] = Field(default=[], max_length=MAX_TAGS)
    body: Body


class ArticleInput(ArticleContent):
    """PUT /kb/articles/{article_id}: the whole article; `base_version` makes the edit conditional."""

    base_version: StrictInt | None = Field(
        default=None, ge=0, description="the version this edit was made from (0: the article must not exist yet); "
                                        "another current version is a 409 version_conflict")

    def content(self) -> ArticleContent:
        return ArticleContent.model_validate(self.model_dump(exclude={"base_version"}))


class Article(ArticleContent):
    """One stored version (versions are kept; the newest is the current one)."""

    article_id: str
    version: int
    updated_at: datetime
    updated_by: str

    def content(self) -> ArticleContent:
        return ArticleContent.model_validate(self.model_dump(include=set(ArticleContent.model_fields)))


class SearchQuery(BaseModel):
    """GET /kb/articles: `q` searches (ranked), `category` lists that category (newest edit first) or, with
    `q`, keeps only its articles. One of them at least."""

    model_config = ConfigDict(extra="ignore")
    q: str | None = Field(default=None, min_length=1, max_length=MAX_QUERY_CHARS,
                          description=f"search text; its first {MAX_QUERY_TERMS} distinct terms are searched")
    category: Category | None = None
    limit: int = Field(default=10, ge=1, le=MAX_RESULTS)

    @model_validator(mode="after")
    def _something(self) -> SearchQuery:
        if self.q is None and self.category is None:
            raise ValueError("give q, category or both")
        return self


class ArticleSummary(BaseModel):
    """What a listing shows of an article (its head: no body)."""

    article_id: str
    version: int
    category: str
    title: str
    tags: list[str]
    updated_at: datetime


@dataclass(frozen=True)
class SyncState:
    """The head's bookkeeping of the index. `indexed`: the version whose postings are all written (the index
    is exact iff indexed == version). `passes`: index passes that began and did not report their end;
    `lease_until` (epoch ms): when the last one began + LEASE_MS. A crashed pass never reports: its lease
    runs out instead."""

    version: int
    indexed: int
    passes: int
    lease_until: int

    def busy(self, now_ms: int) -> bool:
        return self.passes > 0 and self.lease_until > now_ms


# A pass runs inside one request; the API Lambda stops every request at 25 s (.chalice/config.json). After
# LEASE_MS no pass that began before can still be writing.
LEASE_MS = 60_000


# ---- terms -------------------------------------------------------------------------------------------------
def is_cjk(ch: str) -> bool:
    cp = ord(ch)
    return (0x4E00 <= cp <= 0x9FFF or 0x3400 <= cp <= 0x4DBF or 0xF900 <= cp <= 0xFAFF
            or 0x20000 <= cp <= 0x3134F or 0x3040 <= cp <= 0x30FF or 0xAC00 <= cp <= 0xD7AF)


def _ascii_alnum(ch: str) -> bool:
    return ch.isascii() and ch.isalnum()


def tokens(text: str) -> list[str]:
    """Every term occurrence of `text`, in order (repeats kept: counts are term frequencies)."""
    text = unicodedata.normalize("NFKC", text).lower()
    out: list[str] = []
    run: list[str] = []
    kind = ""

    def flush() -> None:
        if kind == "cjk":
            out.extend(run if len(run) == 1 else [a + b for a, b in zip(run, run[1:], strict=False)])
        elif kind == "word":
            out.append("".join(run)[:MAX_TERM_CHARS])
        run.clear()

    for ch in text:
        this = "cjk" if is_cjk(ch) else "word" if _ascii_alnum(ch) else ""
        if this != kind:
            flush()
            kind = this
        if this:
            run.append(ch)
    flush()
    return out


def query_terms(q: str) -> list[str]:
    """The distinct terms of a query, in order, at most MAX_QUERY_TERMS."""
    seen: list[str] = []
    for term in tokens(q):
        if term not in seen:
            seen.append(term)
    return seen[:MAX_QUERY_TERMS]


class Counts(NamedTuple):
    """How often a term occurs in an article's title, tags and body."""

    title: int = 0
    tags: int = 0
    body: int = 0


class Posting(NamedTuple):
    """One item of the index: article `article_id` holds the term `counts` times; its category rides along so a
    query limited to a category never reads the article."""

    article_id: str
    category: str
    counts: Counts


def index_of(content: ArticleContent | None) -> dict[str, tuple[Counts, str]]:
    """What an article puts in the index: term -> (counts, category). None (no article yet): nothing."""
    if content is None:
        return {}
    title, tags, body = ({}, {}, {})  # type: tuple[dict[str, int], dict[str, int], dict[str, int]]
    for term in tokens(content.title):
        title[term] = title.get(term, 0) + 1
    for tag in content.tags:
        for term in tokens(tag):
            tags[term] = tags.get(term, 0) + 1
    for term in tokens(content.body):
        body[term] = body.get(term, 0) + 1
    return {term: (Counts(title.get(term, 0), tags.get(term, 0), body.get(term, 0)), content.category)
            for term in {*title, *tags, *body}}


@dataclass(frozen=True)
class SyncPlan:
    puts: dict[str, tuple[Counts, str]]  # term -> its posting's value
    deletes: list[str]


def plan_sync(target: Mapping[str, tuple[Counts, str]],
              possible: Sequence[Mapping[str, tuple[Counts, str]]]) -> SyncPlan:
    """The writes that make the postings exactly `target`, when each posting in the table may hold what any of
    the `possible` versions' indexes says (a pass that crashed wrote some of its postings, not others).

    A term on which every possible version agrees with the target is already right and is not written: an
    edit that changes a sentence writes the few terms it changed, not the whole article."""
    changed = {term for index in possible for term in {*index, *target} if index.get(term) != target.get(term)}
    return SyncPlan(puts={t: target[t] for t in sorted(changed) if t in target},
                    deletes=sorted(t for t in changed if t not in target))


# ---- ranking -----------------------------------------------------------------------------------------------
def _saturated(n: int) -> float:
    return n / (n + 1)


def field_score(counts: Counts) -> float:
    return W_TITLE * _saturated(counts.title) + W_TAGS * _saturated(counts.tags) + W_BODY * _saturated(counts.body)


def idf(df: int) -> float:
    return math.log(1 + IDF_REF / max(df, 1))


class Hit(NamedTuple):
    article_id: str
    score: float
    matched: int  # how many of the query's terms the article holds


def rank(terms: Sequence[str], postings: Mapping[str, Iterable[Posting]], limit: int,
         category: str | None = None, keep: Callable[[Posting], bool] | None = None) -> list[Hit]:
    """The best `limit` articles for `terms`, best first (ties: by article id). `postings`: each term's postings
    as read; `category` keeps only that category's articles; df counts every posting read."""
    if not terms:
        return []
    scores: dict[str, float] = {}
    matched: dict[str, int] = {}
    for term in dict.fromkeys(terms):
        found = list(postings.get(term, ()))
        weight = idf(len(found))
        for p in found:
            if (category is not None and p.category != category) or (keep is not None and not keep(p)):
                continue
            scores[p.article_id] = scores.get(p.article_id, 0.0) + weight * field_score(p.counts)
            matched[p.article_id] = matched.get(p.article_id, 0) + 1
    n = len(dict.fromkeys(terms))
    hits = [Hit(a, s * (matched[a] / n) ** 2, matched[a]) for a, s in scores.items()]
    hits.sort(key=lambda h: (-h.score, h.article_id))
    return hits[:limit]


def score_points(score: float) -> int:
    """A score as answered: an integer (thousandths), never a float the client must round."""
    return round(score * 1000)
