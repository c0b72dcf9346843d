"""The one place that knows the DynamoDB key layout (see docs/access-patterns.md).

Single table, generic key names so every entity shares the table's indexes:
  pk / sk            primary key
  gsi1pk / gsi1sk    lookup index: PHONE#<hmac>  -> the member (profile or tombstone) holding that phone
  gsi2pk / gsi2sk    sparse work index: items that a scheduled job must find without a scan
  gsi3pk / gsi3sk    sparse purchase-history index (keys only): HIST#<member> -> the member's earn entries,
                     newest paid first
"""
from __future__ import annotations

from datetime import date

PROFILE = "PROFILE"
ORG_PK = "ORG"
MERGE_PENDING = "MERGE#PENDING"

MEMBER_PREFIX = "MEMBER#"
AUDIT_PREFIX = "AUDIT#"
MERGE_PREFIX = "MERGE#"
STORE_PREFIX = "STORE#"

LEDGER_PREFIX = "LEDGER#"
EVENT_PREFIX = "EVENT#"
MEMBER_STATE = "PROFILE#STATE"  # next to PROFILE: one query reads both (begins_with PROFILE)
TIER_MARKER = "PROFILE#TIER"  # exists while the member is above the lowest tier: the monthly review's index
TIER_SHARDS = 8

# What a merge moves from the source's partition to the survivor's, in this order: the kinds whose sort key
# ends in a ULID, so a moved item can never find its key taken at the survivor. Everything else stays where
# it is: the PROFILE family (the merge folds it), merge records (MERGE#<source>: the bookkeeping of merges
# into this member, found again by that key), and documents (REDEEM#, ADJUST#, FACT#: their ids are made by
# clients or by day, two members can hold the same one; they are read through the id they were written
# for, see the ledger repository's find_document).
MERGE_MOVES = (AUDIT_PREFIX, EVENT_PREFIX, LEDGER_PREFIX)

GSI_LOOKUP = "gsi1"
GSI_WORK = "gsi2"
GSI_HISTORY = "gsi3"  # KEYS_ONLY: a lot's progress updates never rewrite its copy here
HISTORY_PREFIX = "HIST#"


def member_pk(member_id: str) -> str:
    return f"{MEMBER_PREFIX}{member_id}"


def member_profile(member_id: str) -> dict[str, str]:
    return {"pk": member_pk(member_id), "sk": PROFILE}


def phone_lookup_pk(phone_hash: str) -> str:
    return f"PHONE#{phone_hash}"


def phone_marker(phone_hash: str) -> dict[str, str]:
    """Uniqueness marker: exists iff some member holds this phone; names that member."""
    return {"pk": phone_lookup_pk(phone_hash), "sk": "PHONE"}


def openid_marker(openid_hash: str) -> dict[str, str]:
    return {"pk": f"OPENID#{openid_hash}", "sk": "OPENID"}


def audit_key(member_id: str, at_iso: str, entry_id: str) -> dict[str, str]:
    return {"pk": member_pk(member_id), "sk": f"{AUDIT_PREFIX}{at_iso}#{entry_id}"}


def merge_key(target_id: str, source_id: str) -> dict[str, str]:
    return {"pk": member_pk(target_id), "sk": f"{MERGE_PREFIX}{source_id}"}


def store_key(store_id: str) -> dict[str, str]:
    return {"pk": ORG_PK, "sk": f"{STORE_PREFIX}{store_id}"}


def record_kind(sk: str) -> str:
    """The entity kind of an item in a member's partition, from its sort key prefix ('AUDIT', 'MERGE', ...)."""
    return sk.split("#", 1)[0].lower()


# ---- points ledger --------------------------------------------------------------------------------------
def expiry_bucket(day: date) -> str:
    """gsi2 partition of the lots whose last valid day is `day` (sparse: only lots with points remaining)."""
    return f"EXPIRY#{day.isoformat()}"


def ledger_key(member_id: str, at_iso: str, entry_id: str) -> dict[str, str]:
    """Newest last in the member's partition. An entry that credited points is also that lot: the lot is
    found again by the entry's time and id."""
    return {"pk": member_pk(member_id), "sk": f"{LEDGER_PREFIX}{at_iso}#{entry_id}"}


def history_pk(member_id: str) -> str:
    """gsi3 partition of a member's purchase history: one earn entry per order. A merge moves the source's
    entries into the survivor's partition and rewrites this key to the survivor's."""
    return f"{HISTORY_PREFIX}{member_id}"


def history_keys(member_id: str, paid_at_iso: str, posted_at_iso: str, order_id: str) -> dict[str, str]:
    """The index keys an order's earn entry carries: sorted by when it was paid (not when the POS posted it),
    ties by posting, then the order id. Times share one offset (clock.iso), so text order is time order."""
    return {"gsi3pk": history_pk(member_id), "gsi3sk": f"{paid_at_iso}#{posted_at_iso}#{order_id}"}


def history_order_id(gsi3sk: str) -> str:
    """The order id back from a history sort key (times hold no '#'; order ids cannot either)."""
    return gsi3sk.split("#", 2)[2]


def ledger_sk_from(at_iso: str) -> str:
    """The lowest ledger sort key at or after `at_iso` (times share one offset, so text order is time order)."""
    return f"{LEDGER_PREFIX}{at_iso}"


_DOCUMENT_SK = {"redemption": "REDEEM#{}", "redemption_cancel": "REDEEM#{}#CANCEL", "adjustment": "ADJUST#{}",
                "fact": "FACT#{}", "exchange": "EXCHANGE#{}"}


def document_key(kind: str, owner: str, doc_id: str) -> dict[str, str]:
    """Idempotency documents: refunds live with their order, the rest in the partition of the member they were
    written for, for good (merges do not move them: MERGE_MOVES)."""
    if kind == "refund":
        return refund_key(owner, doc_id)
    return {"pk": member_pk(owner), "sk": _DOCUMENT_SK[kind].format(doc_id)}


def event_key(member_id: str, at_iso: str) -> dict[str, str]:
    from ..domain.ids import new_id

    return {"pk": member_pk(member_id), "sk": f"{EVENT_PREFIX}{at_iso}#{new_id()}"}


def order_key(order_id: str) -> dict[str, str]:
    """The order item is its own idempotency marker: written with attribute_not_exists on this key."""
    return {"pk": f"ORDER#{order_id}", "sk": "ORDER"}


def refund_key(order_id: str, refund_id: str) -> dict[str, str]:
    return {"pk": f"ORDER#{order_id}", "sk": f"REFUND#{refund_id}"}


def guest_orders_pk(phone_hash: str) -> str:
    return f"GUEST#{phone_hash}"


# The day item a bulk load writes whole (the demo's history, an import): apart from the live shards (0..15),
# so a load never overwrites what live orders added, and a load run again writes the same item again.
IMPORT_SHARD = 99


def store_day_key(store_id: str, day: date, shard: int = 0) -> dict[str, str]:
    """A store's day rollup (domain/rollups.py): shard 0 is DAY#<day>, the others DAY#<day>#<nn>, so one
    Query of DAY#<first> .. DAY#<last>#~ reads every shard of a range, whatever the store's shard count was."""
    suffix = f"#{shard:02d}" if shard else ""
    return {"pk": f"STORE#{store_id}", "sk": f"DAY#{day.isoformat()}{suffix}"}


def store_days_range(store_id: str, first: date, last: date) -> tuple[str, str, str]:
    """(pk, lowest sk, highest sk) of a store's day items first..last."""
    return f"STORE#{store_id}", f"DAY#{first.isoformat()}", f"DAY#{last.isoformat()}#~"


def tier_shard_pk(shard: int) -> str:
    return f"TIERED#{shard}"


def tier_shard(member_id: str) -> str:
    """gsi2 partition of a tiered member: spread over a few shards (the review reads them in turn)."""
    return tier_shard_pk(int(member_id[-1], 36) % TIER_SHARDS)


def config_key(name: str) -> dict[str, str]:
    return {"pk": "CONFIG", "sk": name}


# ---- service tickets ----------------------------------------------------------------------------------------
# A ticket's partition holds its head (the derived state, versioned by the count of its events) and one item
# per event, keyed by the action id that made it (so a retried action finds its event). Lists are index
# queries on the head: gsi1 by queue and status, gsi4 by store and status, gsi3 (keys only) by assignee; a
# member's tickets are pointer items in the partition of the member they were opened for (a merge leaves
# them there; the list reads the partitions of the members merged into the survivor too).
GSI_LISTS = "gsi4"
TICKET_PREFIX = "TICKET#"
TICKET_EVENT_PREFIX = "ACT#"
MEMBER_TICKET_PREFIX = "TKT#"


def ticket_key(ticket_id: str) -> dict[str, str]:
    return {"pk": f"{TICKET_PREFIX}{ticket_id}", "sk": "TICKET"}


def ticket_event_key(ticket_id: str, action_id: str) -> dict[str, str]:
    return {"pk": f"{TICKET_PREFIX}{ticket_id}", "sk": f"{TICKET_EVENT_PREFIX}{action_id}"}


def ticket_list_keys(queue_id: str, store_id: str | None, assignee: str | None, status: str,
                     created_iso: str, ticket_id: str) -> dict[str, str]:
    """The head's index keys: newest last in every list (created times share one offset, so text order is
    time order). No store, no gsi4 entry; no assignee, no gsi3 entry."""
    sort = f"{created_iso}#{ticket_id}"
    out = {"gsi1pk": ticket_queue_list(queue_id, status), "gsi1sk": sort}
    if store_id:
        out |= {"gsi4pk": ticket_store_list(store_id, status), "gsi4sk": sort}
    if assignee:
        out |= {"gsi3pk": ticket_assignee_list(assignee), "gsi3sk": f"{status}#{sort}"}
    return out


def ticket_queue_list(queue_id: str, status: str) -> str:
    return f"TQUEUE#{queue_id}#{status}"


def ticket_store_list(store_id: str, status: str) -> str:
    return f"TSTORE#{store_id}#{status}"


def ticket_assignee_list(sub: str) -> str:
    return f"TAGENT#{sub}"


def member_ticket_key(member_id: str, created_iso: str, ticket_id: str) -> dict[str, str]:
    return {"pk": member_pk(member_id), "sk": f"{MEMBER_TICKET_PREFIX}{created_iso}#{ticket_id}"}


def ticket_sla_keys(stage: str, shard: int, next_check_iso: str, ticket_id: str) -> dict[str, str]:
    """gsi2 (sparse): a ticket with an escalation step still to come, under its stage, by when that step falls
    due. The sweep reads `<= now` of each stage's shards; the at-risk and breached lists read a stage whole."""
    return {"gsi2pk": ticket_sla_pk(stage, shard), "gsi2sk": f"{next_check_iso}#{ticket_id}"}


def ticket_sla_pk(stage: str, shard: int) -> str:
    return f"SLA#{stage}#{shard}"


def sla_policy_key() -> dict[str, str]:
    return {"pk": ORG_PK, "sk": "SLA_POLICY"}


def notification_key(recipient: str, at_iso: str, ticket_id: str, step: str) -> dict[str, str]:
    """A notification in its addressee's partition (a person `sub:<sub>`, or a role in a scope): the step's own
    due time and name make its key, so a re-run of the sweep finds it taken instead of notifying twice."""
    return {"pk": notifications_pk(recipient), "sk": f"N#{at_iso}#{ticket_id}#{step}"}


def notifications_pk(recipient: str) -> str:
    return f"NOTIFY#{recipient}"


def notification_read_key(sub: str, notification_id: str) -> dict[str, str]:
    return {"pk": notifications_pk(f"sub:{sub}"), "sk": f"READ#{notification_id}"}


def queue_key(queue_id: str) -> dict[str, str]:
    return {"pk": ORG_PK, "sk": f"QUEUE#{queue_id}"}


def agent_key(queue_id: str, sub: str) -> dict[str, str]:
    """An agent of a queue: available or not, open tickets in this queue, when last assigned."""
    return {"pk": f"QUEUE#{queue_id}", "sk": f"AGENT#{sub}"}


def routing_rules_key() -> dict[str, str]:
    return {"pk": ORG_PK, "sk": "ROUTING"}


def task_key(task_id: str) -> dict[str, str]:
    return {"pk": f"TASK#{task_id}", "sk": "TASK"}


def task_list_keys(store_id: str, state: str, due_iso: str, task_id: str) -> dict[str, str]:
    """gsi1: a store's tasks by state, soonest due first (times in one offset: 'overdue' is a range below now)."""
    return {"gsi1pk": task_store_list(store_id, state), "gsi1sk": f"{due_iso}#{task_id}"}


def task_store_list(store_id: str, state: str) -> str:
    return f"STASK#{store_id}#{state}"


# ---- coupons ----------------------------------------------------------------------------------------------
TEMPLATE_PREFIX = "CTPL#"
HQ_LEVEL = "HQ"


def template_key(template_id: str) -> dict[str, str]:
    """Templates sit in the organisation's partition (listed with one query, beside the stores)."""
    return {"pk": ORG_PK, "sk": f"{TEMPLATE_PREFIX}{template_id}"}


def budget_key(template_id: str, level: str = HQ_LEVEL) -> dict[str, str]:
    """A budget counter of a template: `HQ` is the template's whole budget; the benefit pool adds one item per
    region (`REGION#<id>`) and store (`STORE#<id>`) in the same partition, taken by the same conditional
    update (`left` >= n), so levels are added without changing how a take is written."""
    return {"pk": f"{TEMPLATE_PREFIX}{template_id}", "sk": f"BUDGET#{level}"}


def coupon_key(code: str) -> dict[str, str]:
    """The coupon is keyed by its code: the counter finds it in one GetItem, and the code is unique by this key."""
    return {"pk": f"COUPON#{code}", "sk": "COUPON"}


def member_coupons_pk(member_id: str) -> str:
    """gsi1 partition of the coupons issued to a member (a merge does not rewrite it: the survivor's list
    reads its merged-away members' partitions too)."""
    return f"MCOUPONS#{member_id}"


def member_coupons_sk(state: str, valid_to_iso: str, code: str) -> str:
    return f"{state}#{valid_to_iso}#{code}"


def coupon_expiry_bucket(day: date) -> str:
    """gsi2 partition of the available coupons whose last valid day is `day` (sparse: only available ones)."""
    return f"CPNEXP#{day.isoformat()}"


def coupon_counts_key(member_id: str) -> dict[str, str]:
    """How many coupons of each template a member was ever issued (per-member limits). Stays put in a merge,
    which folds it into the survivor's and marks it `merged_into` (so no issue can count on it after)."""
    return {"pk": member_pk(member_id), "sk": "COUPONS"}


def basket_key(order_id: str) -> dict[str, str]:
    """The coupons redeemed for an order before it is posted, beside the order item's key."""
    return {"pk": f"ORDER#{order_id}", "sk": "COUPONS"}


def issue_key(issue_id: str) -> dict[str, str]:
    return {"pk": f"CISSUE#{issue_id}", "sk": "ISSUE"}


# ---- the benefit pool and coupon numbers ------------------------------------------------------------------
def pool_lookup_pk(level: str) -> str:
    """gsi1 partition of a level's budget items (one per template): the pool read of a store or region."""
    return f"POOL#{level}"


def allocation_key(allocation_id: str) -> dict[str, str]:
    """An allocation's idempotency document (and the pool's history: the auditor sums them)."""
    return {"pk": f"ALLOC#{allocation_id}", "sk": "ALLOC"}


def coupon_stats_key(template_id: str, level: str, day: date) -> dict[str, str]:
    """A template's numbers for one day, for coupons issued from one level; level `ALL#<shard>` is the
    brand-wide total spread over shards (a busy template's every redemption writes it)."""
    return {"pk": f"CSTAT#{template_id}#{level}", "sk": day.isoformat()}


def settlement_key(month: str, shard: int, template_id: str, issuer: str, redeemer: str) -> dict[str, str]:
    """A month's settlement row (template, issuing level, redeeming store), its partition spread over shards."""
    return {"pk": f"SETTLE#{month}#{shard}", "sk": f"{template_id}#{issuer}#{redeemer}"}


def settlement_pk(month: str, shard: int) -> str:
    return f"SETTLE#{month}#{shard}"


# ---- knowledge base ---------------------------------------------------------------------------------------
# An article's partition holds its versions (`V#<8 digits>`, kept) and its head (`~HEAD`: the current version's
# summary and the index's bookkeeping), which sorts after every version: one descending query of two items
# reads the head and the current version. The inverted index is one partition per term (`KBTERM#<term>`),
# one posting per article holding it (sort key: the article id). Heads are on the lookup index by category,
# newest edit first.
KB_ARTICLE_PREFIX = "KBART#"
KB_HEAD = "~HEAD"
KB_VERSION_PREFIX = "V#"
KB_TERM_PREFIX = "KBTERM#"


def kb_article_pk(article_id: str) -> str:
    return f"{KB_ARTICLE_PREFIX}{article_id}"


def kb_head_key(article_id: str) -> dict[str, str]:
    return {"pk": kb_article_pk(article_id), "sk": KB_HEAD}


def kb_version_sk(version: int) -> str:
    return f"{KB_VERSION_PREFIX}{version:08d}"


def kb_version_key(article_id: str, version: int) -> dict[str, str]:
    return {"pk": kb_article_pk(article_id), "sk": kb_version_sk(version)}


def kb_term_pk(term: str) -> str:
    """Terms hold no '#': CJK characters or ASCII letters and digits (domain/kb.tokens)."""
    return f"{KB_TERM_PREFIX}{term}"


def kb_posting_key(term: str, article_id: str) -> dict[str, str]:
    return {"pk": kb_term_pk(term), "sk": article_id}


def kb_category_keys(category: str, updated_at_iso: str, article_id: str) -> dict[str, str]:
    """gsi1 keys of an article's head: its category's partition, newest edit first (times share one offset)."""
    return {"gsi1pk": kb_category_pk(category), "gsi1sk": f"{updated_at_iso}#{article_id}"}


def kb_category_pk(category: str) -> str:
    return f"KBCAT#{category}"


# ---- calendars ----------------------------------------------------------------------------------------------
# One small partition for the calendars SLA clocks count in: the brand calendar (holidays, adjusted working
# days), office calendars by id, and each store's own closures (apart from the store item: HQ replaces the
# store, its managers its closures). Read through a per-container cache, so the partition is never hot.
CALENDAR_PK = "CAL"


def brand_calendar_key() -> dict[str, str]:
    return {"pk": CALENDAR_PK, "sk": "BRAND"}


def office_calendar_key(calendar_id: str) -> dict[str, str]:
    return {"pk": CALENDAR_PK, "sk": f"OFFICE#{calendar_id}"}


def store_closures_key(store_id: str) -> dict[str, str]:
    return {"pk": CALENDAR_PK, "sk": f"CLOSURES#{store_id}"}


# ---- ticket stats -----------------------------------------------------------------------------------------------
# Day rollups of ticket numbers, one partition per dimension (store, region, type, channel), one item per
# (day, group value[, shard]) under it: a range of days of one dimension is one Query (sk BETWEEN). The
# dimensions every ticket writes to (region, type, channel) spread a day's value over a few shards (see
# domain/ticket_stats.SHARDED): a partition takes 1,000 writes a second, far above a brand's ticket traffic,
# but two transactions holding one item conflict, so the items, not the partitions, are what is spread.
def ticket_stats_pk(dim: str) -> str:
    return f"TSTAT#{dim}"


def ticket_stats_key(dim: str, day: date, value: str, shard: int | None) -> dict[str, str]:
    sk = f"{day.isoformat()}#{value}" + (f"#{shard}" if shard is not None else "")
    return {"pk": ticket_stats_pk(dim), "sk": sk}


def ticket_stats_range(first: date, last: date) -> tuple[str, str]:
    """Sort keys BETWEEN these hold the days first..last ('$' follows '#': every key of the last day is below)."""
    return f"{first.isoformat()}#", f"{last.isoformat()}$"


def ticket_stats_parts(sk: str) -> tuple[str, str]:
    """(day, group value) back from a sort key (values hold no '#')."""
    day, value = sk.split("#")[:2]
    return day, value


# ---- nightly RFM, segments and tags -------------------------------------------------------------------------
# gsi5 (KEYS_ONLY, hash key only) holds one entry per live member's points state: gsi5pk = the member id (a key
# of high cardinality, so a parallel Scan splits it evenly). Its entry never changes after the state's first
# write (KEYS_ONLY ignores updates of other attributes), so an order post pays no index write for it; the
# nightly pass scans it in segments and reads the states it names with BatchGetItem. A merged-away member's
# state is deleted and an erased member's state drops its gsi5pk: neither is classified.
GSI_MEMBERS = "gsi5"
# A member's nightly result and staff tags sort after the PROFILE# family ('~' > '#'): the member read
# (begins_with PROFILE) returns them, the order path's read (PROFILE .. PROFILE#~) does not pay for them.
MEMBER_RFM = "PROFILE~RFM"
MEMBER_TAGS = "PROFILE~TAGS"
ORDER_PATH_LAST_SK = "PROFILE#~"


def member_rfm_key(member_id: str) -> dict[str, str]:
    return {"pk": member_pk(member_id), "sk": MEMBER_RFM}


def member_tags_key(member_id: str) -> dict[str, str]:
    return {"pk": member_pk(member_id), "sk": MEMBER_TAGS}


def tag_rules_key() -> dict[str, str]:
    return config_key("TAG_RULES")


def rfm_settings_key() -> dict[str, str]:
    return config_key("RFM_SETTINGS")


def rfm_latest_key() -> dict[str, str]:
    """Names the as-of day of the last finished nightly run (the readers' 'tonight')."""
    return config_key("RFM#LATEST")


def rfm_run_pk(as_of: date) -> str:
    return f"RFMRUN#{as_of.isoformat()}"


def rfm_run_key(as_of: date) -> dict[str, str]:
    """The run's head: its settings, segment count, phase and (once measured) thresholds."""
    return {"pk": rfm_run_pk(as_of), "sk": "RUN"}


def rfm_cursor_key(as_of: date, phase: str, segment: int) -> dict[str, str]:
    """A segment's checkpoint in one phase: the scan cursor after its last committed page, and whether done."""
    return {"pk": rfm_run_pk(as_of), "sk": f"{phase}#{segment:05d}"}


def rfm_page_key(as_of: date, phase: str, segment: int, page: int) -> dict[str, str]:
    """One committed page's partial result (written with its cursor in one transaction)."""
    return {"pk": rfm_run_pk(as_of), "sk": f"{phase}#{segment:05d}#P{page:06d}"}


def rfm_pages_prefix(phase: str) -> str:
    return f"{phase}#"


def rfm_night_pk(as_of: date) -> str:
    return f"RFMNIGHT#{as_of.isoformat()}"


def rfm_night_key(as_of: date, level: str, ident: str) -> dict[str, str]:
    """The night's segment counts of a home store (STORE), a region (REGION) or the brand (BRAND#ALL)."""
    return {"pk": rfm_night_pk(as_of), "sk": f"{level}#{ident}"}


# ---- segment audiences of coupon issues ---------------------------------------------------------------------
# An audience issue is a job on its issue item (issue_key: status, audience, counters) with one cursor item per
# parallel-scan segment of the member index beside it; each chunk of matched members is a bulk issue of its own
# under a sub-issue id no client can send ('~' is not in a DocId), so a chunk retried after a crash finds its plan.
def audience_cursor_key(issue_id: str, segment: int) -> dict[str, str]:
    """A segment's checkpoint: the gsi5 scan's start key after its last committed chunk, the next page, done."""
    return {"pk": f"CISSUE#{issue_id}", "sk": f"SEG#{segment:05d}"}


def audience_chunk_id(issue_id: str, segment: int, page: int) -> str:
    return f"{issue_id}~{segment}~{page}"
