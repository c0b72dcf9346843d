"""The nightly coupon expiry: available coupons past their last valid day are marked expired, found through the
sparse expiry index (no scan); then 'coupon expiring' facts for the coupons whose last day is in 3 days.

A coupon past its end already reads as expired everywhere (Coupon.state_at): the sweep makes it so in the
table too, so the member's list by state and the index stay small and true."""
from __future__ import annotations

from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import date, timedelta
from itertools import islice
from typing import Any

from ..domain import clock
from ..domain.coupons import Coupon, CouponState
from ..domain.errors import DocumentExists
from ..domain.ledger import Change, Document
from ..observability import metrics
from .expiry import EXPIRY_LOOKBACK_DAYS
from .ledger_common import live_members
from .ports import CouponRepository, LedgerRepository

# The days swept, as the points job does: an available coupon can sit in a past day's bucket because the job
# missed nights, a redemption was cancelled at the counter after the coupon's last day (it goes back to
# available), or a bulk issue used a template whose fixed window had already ended. An empty day is one cheap
# query; a coupon older than this still reads as expired (state_at), it only keeps its index entry.
COUPON_EXPIRY_LOOKBACK_DAYS = EXPIRY_LOOKBACK_DAYS
EXPIRING_NOTICE_DAYS = 3  # the fact is written this many days before the coupon's last valid day
PAGE = 100  # coupons handled together: one BatchGetItem of their holders' profiles
WORKERS = 8  # parallel writes: a campaign's 100,000 coupons ending the same day fit in one run
ATTEMPTS = 3  # an expire that finds the coupon changed re-reads it; a coupon changing every time is left


def expire_due_coupons(coupons: CouponRepository, ledger: LedgerRepository, today: date,
                       lookback_days: int = COUPON_EXPIRY_LOOKBACK_DAYS) -> dict[str, int]:
    """Mark expired every available coupon whose last valid day (Asia/Shanghai) is before `today`, bucket by
    bucket from the oldest day looked back to yesterday; then write the 'coupon expiring' facts. Safe to run
    again for the same day: an expired coupon has left the index, a fact is written once per coupon."""
    expired = 0
    with ThreadPoolExecutor(max_workers=WORKERS) as pool:
        for back in range(lookback_days, 0, -1):
            for page in _pages(coupons.due_coupons(today - timedelta(days=back))):
                expired += sum(pool.map(lambda c: _expire(coupons, c, today), page))
        facts = _expiring_facts(coupons, ledger, today, pool)
    metrics.add_metric(name="CouponsExpired", unit="Count", value=expired)
    return {"coupons_expired": expired, "expiring_facts": facts}


def _pages(found: Iterable[Coupon]) -> Iterator[list[Coupon]]:
    it = iter(found)
    while page := list(islice(it, PAGE)):
        yield page


def _expire(coupons: CouponRepository, coupon: Coupon | None, today: date) -> bool:
    """Expire one coupon on the version read. The index lags its table: a coupon found changed (redeemed,
    released, already expired by a twin run) is read again and expired only if it is still available."""
    for _ in range(ATTEMPTS):
        if coupon is None or coupon.state is not CouponState.AVAILABLE:
            return False
        if clock.business_day(coupon.valid_to) >= today:
            return False  # still valid today (never the case for a coupon found in a past day's bucket)
        if coupons.expire(coupon):
            return True
        coupon = coupons.get_coupon(coupon.code)
    return False


def _expiring_facts(coupons: CouponRepository, ledger: LedgerRepository, today: date,
                    pool: ThreadPoolExecutor) -> int:
    """One 'coupon_expiring' fact per available coupon whose last valid day is today + 3, for its live holder.
    The fact is an idempotency document keyed by the code under the member the coupon was issued to (that
    never changes, merges or not): a second run, or a retry, finds it and writes nothing. Returns how many
    facts this run wrote."""
    day = today + timedelta(days=EXPIRING_NOTICE_DAYS)
    written = 0
    for page in _pages(coupons.due_coupons(day)):
        holders = {m: live for m, (live, _) in live_members(ledger, sorted({c.member_id for c in page})).items()}
        told = [(c, holder) for c in page if (holder := holders.get(c.member_id))]  # not an erased holder
        written += sum(pool.map(lambda told_one: _tell(ledger, *told_one, day), told))
    return written


def _tell(ledger: LedgerRepository, coupon: Coupon, holder: str, day: date) -> bool:
    body: dict[str, Any] = {"type": "coupon_expiring", "member_id": holder, "code": coupon.code,
                            "template_id": coupon.template_id, "name": coupon.terms.name,
                            "valid_to": clock.iso(coupon.valid_to), "last_day": day.isoformat()}
    if holder != coupon.member_id:
        body["issued_to"] = coupon.member_id  # merged away since: the survivor holds the coupon
    try:
        ledger.apply(Change(member_id=coupon.member_id, documents=[Document(
            kind="fact", owner=coupon.member_id, doc_id=f"coupon_expiring#{coupon.code}", body=body)]))
    except DocumentExists:
        return False  # told on an earlier run
    return True
