"""/kb: the knowledge base (versioned articles, searched through a bigram index)."""
from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from .. import bootstrap
from ..domain.kb import Article, ArticleInput, ArticleSummary, SearchQuery
from ..services import kb
from .routing import Call, Reply, route

TAG = "knowledge base"


# ---- response models (kept here: the one resource that uses them) ------------------------------------------
class ArticleView(Article):
    """One version of an article (GET: the current one), with its version number."""

    model_config = ConfigDict(extra="forbid")


class ArticleHit(ArticleSummary):
    model_config = ConfigDict(extra="forbid")
    score: int | None = Field(description="relevance in thousandths (title > tags > body hits; articles holding "
                                          "more of the query's terms first); null when listing a category")


class ArticleSearch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    items: list[ArticleHit]
    terms: list[str] = Field(description="the terms searched: CJK character bigrams and lower-cased ASCII words")
    complete: bool = Field(description="false when a term is so common that only part of its index was read")


@route("/kb/articles/{article_id}", "PUT", op="kb.put", tag=TAG, body=ArticleInput, response=ArticleView, status=200,
       also=(201,), errors=(409, 422),
       summary="Create or edit an article: each change is a new version (old ones kept); the same content again "
               "answers the current version; base_version not current: 409 version_conflict")
def put_article(call: Call, article_id: str) -> Reply:
    article, created = kb.put_article(article_id, call.body, call.principal, bootstrap.kb())
    return Reply(ArticleView.model_validate(article.model_dump()), 201 if created else 200)


@route("/kb/articles/{article_id}", "GET", op="kb.read", tag=TAG, response=ArticleView, errors=(404,),
       summary="An article's current version")
def get_article(call: Call, article_id: str) -> ArticleView:
    return ArticleView.model_validate(kb.get_article(article_id, call.principal, bootstrap.kb()).model_dump())


@route("/kb/articles", "GET", op="kb.search", tag=TAG, query=SearchQuery, response=ArticleSearch, errors=(422,),
       summary="Search articles (q: Chinese or English text, ranked; category: only that category's), or list a "
               "category's articles, newest edit first (category alone); at least one of q and category")
def search_articles(call: Call) -> ArticleSearch:
    found = kb.search(call.query, call.principal, bootstrap.kb())
    return ArticleSearch(items=[ArticleHit(**s.model_dump(), score=score) for s, score in found.items],
                         terms=found.terms, complete=found.complete)
