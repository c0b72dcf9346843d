"""The knowledge base: HQ edits versioned articles; staff read, search and cite them.

An edit keeps the index exact through crashes (docs/decisions.md, "Knowledge base"):
  1. one transaction writes the new version and moves the head to it, starting an index pass with a lease;
  2. the pass writes the postings (BatchWriteItem) that differ between the new version's index and what any
     version since the last complete pass may have left in the table;
  3. the pass reports its end: the head's `indexed` becomes the version.
A crash between 1 and 3 leaves `indexed` behind the version: the same PUT sent again finds its content
current but not indexed, and runs the pass again (it does not answer a no-op early). Passes of one version
write the same values, so a retry may overlap the crashed request. A pass of a NEW version waits until no
pass of the old one can still be writing: none began without reporting its end, or the last one's lease
(longer than any request lives) ran out.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Protocol

from ..domain import clock
from ..domain.access import Principal
from ..domain.errors import Conflict, Invalid, NotFound, StaleRead, Unavailable
from ..domain.kb import (
    LEASE_MS,
    Article,
    ArticleContent,
    ArticleInput,
    ArticleSummary,
    Posting,
    SearchQuery,
    SyncPlan,
    SyncState,
    index_of,
    plan_sync,
    query_terms,
    rank,
    score_points,
)
from ..domain.policy import authorize

MAX_POSTINGS_PER_TERM = 5_000  # a term held by more articles is read in part (the answer says `complete: false`)
MAX_CITED = 100  # one BatchGetItem
BUSY_WAIT_SECONDS = 5.0  # an edit waits this long for another edit's index pass to end, then answers 503


class KbRepository(Protocol):
    def load(self, article_id: str) -> tuple[Article | None, SyncState | None]: ...
    def versions(self, article_id: str, first: int, last: int) -> list[Article]: ...
    def create_version(self, article: Article, previous: int, now_ms: int, lease_until: int) -> None: ...
    def begin_pass(self, article_id: str, version: int, lease_until: int) -> None: ...
    def finish_pass(self, article_id: str, version: int) -> bool: ...
    def write_postings(self, article_id: str, plan: SyncPlan) -> int: ...
    def postings(self, term: str, most: int) -> tuple[list[Posting], bool]: ...
    def summaries(self, article_ids: list[str], consistent: bool = False) -> list[ArticleSummary]: ...
    def category(self, category: str, limit: int) -> list[ArticleSummary]: ...


def _now_ms() -> int:
    return int(clock.now().timestamp() * 1000)


def put_article(article_id: str, cmd: ArticleInput, actor: Principal, kb: KbRepository) -> tuple[Article, bool]:
    """Create or edit an article. Returns the current version and whether the article was created.

    The same content as the current version is that version (200), whatever `base_version` says (a retried
    edit finds itself applied), re-indexed first if its index pass never reported its end."""
    authorize("kb.put", actor)
    content = cmd.content()
    give_up = time.monotonic() + BUSY_WAIT_SECONDS
    while True:
        current, sync = kb.load(article_id)
        have = current.version if current else 0
        indexed = sync.indexed if sync else 0
        try:
            if current is not None and current.content() == content:
                if indexed < current.version:
                    kb.begin_pass(article_id, current.version, _now_ms() + LEASE_MS)
                    _index_pass(kb, current, indexed, kb.versions(article_id, indexed, current.version - 1))
                return current, False
            if cmd.base_version is not None and cmd.base_version != have:
                raise Conflict("the article has another version now", code="version_conflict",
                               details={"base_version": cmd.base_version, "current_version": have})
            now_ms = _now_ms()
            if sync is None or not sync.busy(now_ms):
                article = Article(**content.model_dump(), article_id=article_id, version=have + 1,
                                  updated_at=clock.to_ms(clock.now()), updated_by=actor.sub)
                kb.create_version(article, have, now_ms, now_ms + LEASE_MS)
                older = kb.versions(article_id, indexed, have - 1) + ([current] if current else [])
                _index_pass(kb, article, indexed, older)
                return article, current is None
        except StaleRead:
            pass  # another edit got there first: read again
        if time.monotonic() > give_up:
            raise Unavailable("another edit of this article is still being indexed; retry shortly",
                              code="article_busy", details={"article_id": article_id})
        time.sleep(0.05)


def _index_pass(kb: KbRepository, article: Article, indexed: int, since: list[Article]) -> None:
    """Make the postings exactly `article`'s index. A posting may hold what any version from `indexed` on
    said (`since`: those versions before `article`; none at all while `indexed` is 0)."""
    possible: list[ArticleContent | None] = [None] if indexed == 0 else []
    possible += [v.content() for v in since]
    plan = plan_sync(index_of(article.content()), [index_of(c) for c in possible])
    kb.write_postings(article.article_id, plan)
    kb.finish_pass(article.article_id, article.version)


def get_article(article_id: str, actor: Principal, kb: KbRepository) -> Article:
    authorize("kb.read", actor)
    current, _ = kb.load(article_id)
    if current is None:
        raise NotFound("no such article", code="article_not_found", details={"article_id": article_id})
    return current


@dataclass(frozen=True)
class SearchResult:
    items: list[tuple[ArticleSummary, int | None]]  # (article, score; None when listing a category)
    terms: list[str]
    complete: bool


def search(query: SearchQuery, actor: Principal, kb: KbRepository) -> SearchResult:
    """`q`: one Query per distinct term (its postings only), the ranking, one BatchGetItem of the best
    articles' heads. `category` alone: one Query of that category's index partition."""
    authorize("kb.search", actor)
    if query.q is None:
        if query.category is None:  # (SearchQuery already refuses this)
            raise Invalid("give q, category or both", code="validation_error",
                          details=[{"loc": ["query"], "msg": "give q, category or both"}])
        return SearchResult([(s, None) for s in kb.category(query.category, query.limit)], [], True)
    terms = query_terms(query.q)
    if not terms:
        raise Invalid("q holds no searchable text (letters, digits or CJK characters)", code="no_search_terms",
                      details=[{"loc": ["query", "q"], "msg": "no searchable text"}])
    postings: dict[str, list[Posting]] = {}
    complete = True
    for term in terms:
        postings[term], whole = kb.postings(term, MAX_POSTINGS_PER_TERM)
        complete = complete and whole
    hits = rank(terms, postings, query.limit, category=query.category)
    heads = {s.article_id: s for s in kb.summaries([h.article_id for h in hits])} if hits else {}
    return SearchResult([(heads[h.article_id], score_points(h.score)) for h in hits if h.article_id in heads],
                        terms, complete)


def cite(article_ids: list[str], repo: KbRepository) -> list[dict]:
    """The articles a ticket reply cites, as the reply keeps them: [{article_id, version, title}] in the order
    given (repeats dropped). Any unknown id: 422 `unknown_article` naming every unknown one. One BatchGetItem
    (strongly consistent: an article HQ just published can be cited at once)."""
    ids = list(dict.fromkeys(article_ids))
    if not ids:
        return []
    if len(ids) > MAX_CITED:
        raise Invalid(f"cite at most {MAX_CITED} articles", code="too_many_articles", details={"most": MAX_CITED})
    found = {s.article_id: s for s in repo.summaries(ids, consistent=True)}
    unknown = [a for a in ids if a not in found]
    if unknown:
        raise Invalid("no such knowledge-base article", code="unknown_article", details={"article_ids": unknown})
    return [{"article_id": a, "version": found[a].version, "title": found[a].title} for a in ids]
