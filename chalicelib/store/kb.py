"""The knowledge base in DynamoDB: article versions and heads, and the inverted index's postings.

An edit is three steps (services/kb.put_article): one transaction writes the new version and the head (which
starts an index pass and takes its lease), BatchWriteItem writes the postings the edit changed (25 a
request; not one transaction: an article has hundreds of terms), and one UpdateItem reports the pass's end
(`indexed` = the version). See docs/decisions.md, "Knowledge base"."""
from __future__ import annotations

import time
from typing import Any

from botocore.exceptions import ClientError

from ..domain import clock
from ..domain.errors import StaleRead, Unavailable
from ..domain.kb import Article, ArticleSummary, Counts, Posting, SyncPlan, SyncState
from . import keys
from .db import TRANSPORT_ERRORS, Db, TxCancelled, map_client_error, to_item

BATCH_WRITE = 25  # BatchWriteItem's most requests per call
UNPROCESSED_ROUNDS = 8


class DynamoKbRepository:
    def __init__(self, db: Db) -> None:
        self.db = db

    # ---- articles ------------------------------------------------------------------------------------------
    def load(self, article_id: str) -> tuple[Article | None, SyncState | None]:
        """The current version and the head's index bookkeeping: one query (the head sorts after every version)."""
        items, _ = self.db.query(KeyConditionExpression="pk = :pk", values={":pk": keys.kb_article_pk(article_id)},
                                 ScanIndexForward=False, Limit=2, ConsistentRead=True)
        head = next((i for i in items if i["sk"] == keys.KB_HEAD), None)
        if head is None:
            return None, None
        current = next(i for i in items if i["sk"] == keys.kb_version_sk(head["version"]))
        return _article(current), SyncState(version=head["version"], indexed=head.get("indexed", 0),
                                            passes=head.get("passes", 0), lease_until=head.get("lease_until", 0))

    def versions(self, article_id: str, first: int, last: int) -> list[Article]:
        """Versions first..last, oldest first (an index pass reads those a crashed pass may have left)."""
        if last < max(first, 1):
            return []
        return [_article(i) for i in self.db.query_all(
            KeyConditionExpression="pk = :pk AND sk BETWEEN :lo AND :hi", ConsistentRead=True,
            values={":pk": keys.kb_article_pk(article_id), ":lo": keys.kb_version_sk(max(first, 1)),
                    ":hi": keys.kb_version_sk(last)})]

    def create_version(self, article: Article, previous: int, now_ms: int, lease_until: int) -> None:
        """The new version and the head, at once: the head moves to it only from `previous`, and only while no
        index pass of `previous` may still be writing (none began, or the last one's lease ran out). The head
        starts this version's pass (passes = 1) with its lease. Raises StaleRead if the head was not as read."""
        tx = self.db.tx()
        tx.put(_version_item(article), condition="attribute_not_exists(pk)")
        head_key = keys.kb_head_key(article.article_id)
        at = clock.iso(article.updated_at)
        values: dict[str, Any] = {":v": article.version, ":c": article.category, ":t": article.title,
                                  ":g": article.tags, ":u": at, ":by": article.updated_by, ":one": 1,
                                  ":l": lease_until, **_prefixed(keys.kb_category_keys(article.category, at,
                                                                                        article.article_id))}
        sets = ("#version = :v, #category = :c, #title = :t, #tags = :g, #updated_at = :u, #updated_by = :by, "
                "#passes = :one, #lease_until = :l, gsi1pk = :gsi1pk, gsi1sk = :gsi1sk")
        if previous == 0:
            tx.update(head_key, f"SET {sets}, #article_id = :a, #indexed = :zero, #type = :type",
                      condition="attribute_not_exists(pk)", names=_names(sets, "#article_id", "#indexed", "#type"),
                      values={**values, ":a": article.article_id, ":zero": 0, ":type": "kb_head"})
        else:
            tx.update(head_key, f"SET {sets}",
                      condition="#version = :prev AND (#passes = :zero OR #lease_until < :now)", names=_names(sets),
                      values={**values, ":prev": previous, ":zero": 0, ":now": now_ms})
        try:
            self.db.commit(tx)
        except TxCancelled:
            raise StaleRead() from None

    def begin_pass(self, article_id: str, version: int, lease_until: int) -> None:
        """Another pass over the current version (a retried PUT): passes of one version write the same values,
        so they may overlap one another; the lease now runs from this one's start."""
        done = self.db.update(keys.kb_head_key(article_id), "ADD #passes :one SET #lease_until = :l",
                              condition="#version = :v", names=_names("#passes #lease_until #version"),
                              values={":one": 1, ":l": lease_until, ":v": version})
        if done is None:
            raise StaleRead()

    def finish_pass(self, article_id: str, version: int) -> bool:
        """Report a pass's end: the postings are exactly the version's index. False: the head moved on (only
        after this pass's lease ran out: a request that outlived it; nothing is marked)."""
        return self.db.update(keys.kb_head_key(article_id), "ADD #passes :minus SET #indexed = :v",
                              condition="#version = :v AND #passes > :zero", names=_names("#passes #indexed #version"),
                              values={":minus": -1, ":v": version, ":zero": 0}) is not None

    def summaries(self, article_ids: list[str], consistent: bool = False) -> list[ArticleSummary]:
        """Heads by id, one BatchGetItem (at most 100), in no particular order; unknown ids are absent."""
        return self.db.batch_get([keys.kb_head_key(a) for a in article_ids], _summary, consistent=consistent)

    def category(self, category: str, limit: int) -> list[ArticleSummary]:
        items, _ = self.db.query(IndexName=keys.GSI_LOOKUP, KeyConditionExpression="gsi1pk = :p",
                                 values={":p": keys.kb_category_pk(category)}, ScanIndexForward=False, Limit=limit)
        return [_summary(i) for i in items]

    # ---- the index -------------------------------------------------------------------------------------------
    def postings(self, term: str, most: int) -> tuple[list[Posting], bool]:
        """A term's postings (eventually consistent: a search may trail an edit by a moment), at most `most`;
        the flag says whether that was all of them."""
        items, _ = self.db.query(KeyConditionExpression="pk = :pk", values={":pk": keys.kb_term_pk(term)},
                                 Limit=most + 1, ConsistentRead=False)
        return [_posting(i) for i in items[:most]], len(items) <= most

    def write_postings(self, article_id: str, plan: SyncPlan) -> int:
        """The pass's puts and deletes, BatchWriteItem 25 at a time (unprocessed ones sent again). Returns the
        number of requests made."""
        writes: list[dict[str, Any]] = [
            {"PutRequest": {"Item": to_item(_posting_item(term, article_id, counts, category))}}
            for term, (counts, category) in plan.puts.items()]
        writes += [{"DeleteRequest": {"Key": to_item(keys.kb_posting_key(term, article_id))}} for term in plan.deletes]
        calls = 0
        for start in range(0, len(writes), BATCH_WRITE):
            calls += self._batch_write(writes[start:start + BATCH_WRITE])
        return calls

    def _batch_write(self, chunk: list[dict[str, Any]]) -> int:
        request = {self.db.table: chunk}
        for n in range(UNPROCESSED_ROUNDS):
            try:
                resp = self.db.client.batch_write_item(RequestItems=request)
            except TRANSPORT_ERRORS:
                raise Unavailable("the database did not answer in time; retry", code="db_timeout") from None
            except ClientError as err:
                raise map_client_error(err) from err
            request = resp.get("UnprocessedItems") or {}
            if not request:
                return n + 1
            time.sleep(0.02 * 2 ** n)
        raise Unavailable("the database is busy; retry shortly", code="throttled")


def _names(*expressions: str) -> dict[str, str]:
    """`#name` placeholders for every attribute named so (DynamoDB reserves hundreds of words: `indexed` too)."""
    import re

    return {n: n[1:] for e in expressions for n in re.findall(r"#\w+", e)}


def _prefixed(values: dict[str, str]) -> dict[str, str]:
    return {f":{k}": v for k, v in values.items()}


def _version_item(article: Article) -> dict[str, Any]:
    return {**keys.kb_version_key(article.article_id, article.version), "type": "kb_version",
            "article_id": article.article_id, "version": article.version, "category": article.category,
            "title": article.title, "tags": article.tags, "body": article.body,
            "updated_at": clock.iso(article.updated_at), "updated_by": article.updated_by}


def _article(item: dict[str, Any]) -> Article:
    return Article(article_id=item["article_id"], version=item["version"], category=item["category"],
                   title=item["title"], tags=item.get("tags", []), body=item["body"], updated_at=item["updated_at"],
                   updated_by=item["updated_by"])


def _summary(item: dict[str, Any]) -> ArticleSummary:
    return ArticleSummary(article_id=item["article_id"], version=item["version"], category=item["category"],
                          title=item["title"], tags=item.get("tags", []), updated_at=item["updated_at"])


def _posting_item(term: str, article_id: str, counts: Counts, category: str) -> dict[str, Any]:
    # Zero counts are left out: most postings are body-only, and every byte is paid on each read of the term.
    return {**keys.kb_posting_key(term, article_id), "c": category, "t": counts.title or None,
            "g": counts.tags or None, "b": counts.body or None}


def _posting(item: dict[str, Any]) -> Posting:
    return Posting(item["sk"], item["c"], Counts(item.get("t", 0), item.get("g", 0), item.get("b", 0)))
