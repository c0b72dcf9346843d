"""THE access policy: for every operation, which roles may call it and which scope rule applies to each.

One table answers "who may refund an order of store B?": find `orders.refund`. The route decorator reads
the roles from here (a role not listed is refused before the body is read); a service checks the
data-dependent part by naming its operation (`authorize("orders.refund", actor, store=...)`), never by
re-coding a rule. docs/access-policy.md is generated from this module (`python -m chalicelib.cli policy`).

The access-matrix test keeps its own hand-written expectations: it must never read this table.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from .access import COUNTER_ROLES, Principal, Role
from .errors import Forbidden


class Scope(StrEnum):
    """What a caller of a given role may reach within an operation."""

    ANY = "any"  # nothing data-dependent: the role is enough (counter staff serve any member)
    SELF = "self"  # a member: only their own record (or one merged into it)
    STORE = "store"  # the resource's store: staff/managers/integrations their stores, region managers
    #                  their region's stores, HQ all
    QUEUE = "queue"  # a ticket's queue: a store's queue its staff and managers, a region's queue (or a
    #                  queue of one of its stores) the region manager, an HQ queue HQ; where a store is
    #                  also given (a ticket's own store), that store's scope reaches it too


class StoreFacts(Protocol):
    store_id: str
    region_id: str | None


class QueueFacts(Protocol):
    kind: str  # store | region | hq
    store_id: str | None
    region_id: str | None  # a store queue: its store's region


@dataclass(frozen=True)
class StoreRef:
    """A store known only by id (its item not read, or gone): in scope only by id, never by region."""

    store_id: str
    region_id: str | None = None


@dataclass(frozen=True)
class Permission:
    scopes: Mapping[Role, Scope]  # the roles that may call, each with its scope rule
    rule: str  # the rule in words, for the generated table
    # The refusal a caller outside `scopes` gets (a stricter rule on a route others may call, such as the
    # phone of a profile, names its own code).
    denied_code: str = "role_not_allowed"
    denied_message: str | None = None

    @property
    def roles(self) -> frozenset[Role]:
        return frozenset(self.scopes)


def _all(scope: Scope = Scope.ANY) -> dict[Role, Scope]:
    return {role: scope for role in Role}


ANY, SELF, STORE, QUEUE = Scope.ANY, Scope.SELF, Scope.STORE, Scope.QUEUE
MEMBER, STAFF, MANAGER = Role.MEMBER, Role.STAFF, Role.STORE_MANAGER
REGION, HQ, INTEGRATION = Role.REGION_MANAGER, Role.HQ, Role.INTEGRATION

# The report pages carry no bearer token: a signed link (adapters/links.py) made by reports.store_link or
# analytics.report_link stands in for it, and the page is authorised with the scope the link names.
PUBLIC: frozenset[str] = frozenset({"meta.health", "meta.openapi", "sessions.wechat_sign_in", "reports.store_page",
                                    "analytics.page"})

POLICY: dict[str, Permission] = {
    # ---- the organisation
    "stores.put": Permission({HQ: ANY}, "HQ maintains the stores"),
    "stores.list": Permission(_all(), "every signed-in caller (a store locator)"),
    "stores.get": Permission(_all(), "every signed-in caller"),
    # ---- members
    "members.register": Permission({STAFF: STORE, MANAGER: STORE, INTEGRATION: STORE, HQ: ANY},
                                   "at one of the caller's stores (the body's store_id); HQ anywhere"),
    "members.lookup": Permission({STAFF: ANY, MANAGER: ANY, INTEGRATION: ANY, HQ: ANY},
                                 "counter roles at any store: a member walks into any store"),
    "members.view": Permission({MEMBER: SELF, STAFF: ANY, MANAGER: ANY, HQ: ANY},
                               "the member themself; counter staff of any store; HQ"),
    "members.update": Permission({MEMBER: SELF, STAFF: ANY, MANAGER: ANY, HQ: ANY},
                                 "as members.view (the phone: members.change_phone)"),
    "members.change_phone": Permission(
        {HQ: ANY}, "HQ only; a member changes it through WeChat's verified number (sessions.bind_phone)",
        denied_code="phone_not_editable",
        denied_message="the phone changes only through the verified WeChat flow or HQ"),
    "members.merge": Permission({HQ: ANY}, "HQ only"),
    "members.export": Permission({MEMBER: SELF, HQ: ANY}, "the member themself, HQ (PIPL access right)"),
    "members.erase": Permission({MEMBER: SELF, HQ: ANY}, "the member themself, HQ (PIPL deletion right)"),
    # ---- sessions
    "sessions.bind_phone": Permission({MEMBER: ANY}, "a signed-in mini-program member (token bound to an openid)"),
    # ---- orders
    "orders.post": Permission({STAFF: STORE, MANAGER: STORE, INTEGRATION: STORE, HQ: ANY},
                              "at one of the caller's stores (the body's store_id); HQ anywhere"),
    "orders.preview": Permission({STAFF: STORE, MANAGER: STORE, INTEGRATION: STORE, HQ: ANY}, "as orders.post"),
    "orders.get": Permission({MEMBER: SELF, STAFF: ANY, MANAGER: ANY, INTEGRATION: STORE, HQ: ANY},
                             "its member; counter staff of any store; an integration its stores' orders; HQ"),
    "orders.refund": Permission({STAFF: ANY, MANAGER: ANY, INTEGRATION: STORE, HQ: ANY},
                                "counter staff at any store (returns are taken anywhere); an integration "
                                "its stores' orders; HQ"),
    "orders.history": Permission({MEMBER: SELF, STAFF: ANY, MANAGER: ANY, HQ: ANY}, "as members.view"),
    # ---- points and tiers
    "points.view": Permission({MEMBER: SELF, STAFF: ANY, MANAGER: ANY, HQ: ANY}, "as members.view"),
    "points.tier": Permission({MEMBER: SELF, STAFF: ANY, MANAGER: ANY, HQ: ANY}, "as members.view"),
    "points.redeem": Permission({MEMBER: SELF, STAFF: STORE, MANAGER: STORE},
                                "the member themself; counter staff at one of their stores (the body's "
                                "store_id); not HQ"),
    "points.cancel_redemption": Permission({MEMBER: SELF, STAFF: ANY, MANAGER: ANY, HQ: ANY},
                                           "the member themself; counter staff of any store; HQ"),
    "points.adjust": Permission({HQ: ANY}, "HQ only (audited)"),
    # ---- the loyalty program
    "program.tiers": Permission(_all(), "every signed-in caller"),
    "program.put_tiers": Permission({HQ: ANY}, "HQ only"),
    "program.rules": Permission(_all(), "every signed-in caller"),
    "program.put_rules": Permission({HQ: ANY}, "HQ only"),
    # ---- coupons
    "coupons.put_template": Permission({HQ: ANY}, "HQ only"),
    "coupons.read_template": Permission({STAFF: ANY, MANAGER: ANY, REGION: ANY, HQ: ANY, INTEGRATION: ANY},
                                        "every signed-in caller except members (they see the terms on their "
                                        "coupons)"),
    "coupons.list_templates": Permission({STAFF: ANY, MANAGER: ANY, REGION: ANY, HQ: ANY, INTEGRATION: ANY},
                                         "as coupons.read_template"),
    "coupons.issue": Permission({HQ: ANY, REGION: STORE, MANAGER: STORE},
                                "HQ from the template's budget (or any quota); a region manager from their "
                                "region's quota, a store manager from their store's (store_id / region_id); "
                                "a manager's audience only reaches home members of their own stores"),
    "coupons.read_issue": Permission({HQ: ANY, REGION: STORE, MANAGER: STORE},
                                     "an issue's progress: HQ; the manager of the region or store whose quota it "
                                     "was issued from (an issue from HQ's budget: HQ only)"),
    "coupons.exchange": Permission({MEMBER: SELF, STAFF: ANY, MANAGER: ANY},
                                   "the member themself; counter staff of any store (points are spent at the "
                                   "counter as in points.redeem's member flow); not HQ"),
    "coupons.read": Permission({MEMBER: SELF, STAFF: STORE, MANAGER: STORE, INTEGRATION: STORE, HQ: ANY},
                               "the coupon's holder; counter roles and integrations at one of their stores "
                               "(the query's store_id); HQ"),
    "coupons.redeem": Permission({STAFF: STORE, MANAGER: STORE, INTEGRATION: STORE, HQ: ANY},
                                 "counter roles and integrations at one of their stores (the body's store_id); "
                                 "HQ anywhere"),
    "coupons.cancel": Permission({STAFF: STORE, MANAGER: STORE, INTEGRATION: STORE, HQ: ANY},
                                 "at the store the coupon was redeemed at (staff, managers, integrations of it); "
                                 "HQ"),
    "coupons.stats": Permission({HQ: ANY, REGION: STORE, MANAGER: STORE},
                                "HQ (any level, or the whole brand); a region manager their region's quota and "
                                "its stores'; a store manager their store's"),
    "coupons.settlement": Permission({HQ: ANY, REGION: STORE, MANAGER: STORE},
                                     "HQ all rows; a region manager the rows their region's stores issued or "
                                     "redeemed; a store manager their store's, as issuer or redeemer"),
    # ---- the benefit pool
    "pool.allocate": Permission({HQ: ANY, REGION: STORE},
                                "HQ from the budget to regions and stores; a region manager from their region's "
                                "allocation to its stores"),
    "pool.read": Permission({HQ: ANY, REGION: STORE, MANAGER: STORE, STAFF: STORE},
                            "HQ any level; a region manager their region and its stores; store managers and staff "
                            "their stores"),
    "coupons.member_list": Permission({MEMBER: SELF, STAFF: ANY, MANAGER: ANY, HQ: ANY},
                                      "the member themself; counter staff of any store (as at the counter); HQ"),
    # ---- service tickets (queue scope: see Scope.QUEUE)
    "tickets.create": Permission({MEMBER: SELF, STAFF: STORE, MANAGER: STORE, INTEGRATION: STORE, HQ: ANY},
                                 "a member about themself; staff and integrations (hotline, social connectors) "
                                 "for one of their stores (the body's store_id); HQ anywhere"),
    "tickets.read": Permission({MEMBER: SELF, STAFF: QUEUE, MANAGER: QUEUE, REGION: QUEUE, INTEGRATION: STORE,
                                HQ: ANY},
                               "its member (public replies only); whoever works its queue or serves its store; "
                               "an integration its stores' tickets; HQ"),
    "tickets.list": Permission({STAFF: QUEUE, MANAGER: QUEUE, REGION: QUEUE, HQ: ANY},
                               "a queue's or a store's list: whoever works that queue or serves that store; "
                               "?assignee=me: any agent role; HQ"),
    "tickets.member_list": Permission({MEMBER: SELF, STAFF: QUEUE, MANAGER: QUEUE, REGION: QUEUE, HQ: ANY},
                                      "the member themself; staff and managers see the member's tickets they may "
                                      "read (tickets.read); HQ all"),
    "tickets.reply": Permission({MEMBER: SELF, STAFF: QUEUE, MANAGER: QUEUE, REGION: QUEUE, HQ: ANY},
                                "its member; the agents and managers of its queue; HQ"),
    "tickets.work": Permission({STAFF: QUEUE, MANAGER: QUEUE, REGION: QUEUE, HQ: ANY},
                               "comment, hold, resume, resolve, close, add a task: the agents and managers of "
                               "its queue; HQ"),
    "tickets.manage": Permission({MANAGER: QUEUE, REGION: QUEUE, HQ: ANY},
                                 "assign and transfer: the store manager of a store queue, the region manager "
                                 "of the region's queues and its stores' queues; HQ"),
    "tickets.reopen": Permission({MEMBER: SELF, STAFF: QUEUE, MANAGER: QUEUE, REGION: QUEUE, HQ: ANY},
                                 "its member within 7 days of the resolve; the agents and managers of its queue, "
                                 "any time; HQ"),
    "tickets.rate": Permission({MEMBER: SELF}, "its member, once, after the resolve"),
    "tickets.act": Permission({MEMBER: SELF, STAFF: QUEUE, MANAGER: QUEUE, REGION: QUEUE, HQ: ANY},
                              "the route of every action: each type is then held to its own row "
                              "(tickets.reply / work / manage / reopen / rate)"),
    "tickets.stats": Permission({HQ: ANY, REGION: STORE},
                                "HQ every group; a region manager their region's stores (group_by=store) and "
                                "their region's row (group_by=region), not the brand-wide type and channel "
                                "breakdowns"),
    "queues.put": Permission({HQ: ANY}, "HQ only"),
    "queues.agent": Permission({STAFF: QUEUE, MANAGER: QUEUE, REGION: QUEUE, HQ: ANY},
                               "the caller themself: staff and managers for their store's queue, the region "
                               "manager for the region's queues (and its stores'), HQ any queue"),
    "routing.put": Permission({HQ: ANY}, "HQ only"),
    "routing.read": Permission({MANAGER: ANY, REGION: ANY, HQ: ANY}, "managers and HQ"),
    "sla.put": Permission({HQ: ANY}, "HQ only"),
    "sla.read": Permission({MANAGER: ANY, REGION: ANY, HQ: ANY}, "managers and HQ"),
    "notifications.read": Permission({STAFF: ANY, MANAGER: ANY, REGION: ANY, HQ: ANY},
                                     "the caller's own: addressed to them, or to a role and scope they hold"),
    "notifications.mark": Permission({STAFF: ANY, MANAGER: ANY, REGION: ANY, HQ: ANY},
                                     "the caller marks read for themself (read state is per person)"),
    "tasks.list": Permission({STAFF: STORE, MANAGER: STORE, REGION: STORE, HQ: ANY},
                             "the store's staff and managers, its region's manager, HQ"),
    "tasks.complete": Permission({STAFF: STORE, MANAGER: STORE, REGION: STORE, HQ: ANY}, "as tasks.list"),
    "tasks.assign": Permission({STAFF: STORE, MANAGER: STORE, REGION: STORE, HQ: ANY}, "as tasks.list"),
    # ---- the knowledge base
    "kb.put": Permission({HQ: ANY}, "HQ only (every edit is a new version; the old ones are kept)"),
    "kb.read": Permission({STAFF: ANY, MANAGER: ANY, REGION: ANY, HQ: ANY},
                          "staff, store and region managers, HQ (not members, not integrations)"),
    "kb.search": Permission({STAFF: ANY, MANAGER: ANY, REGION: ANY, HQ: ANY}, "as kb.read"),
    # ---- calendars (what SLA business time counts in)
    "calendars.put_brand": Permission({HQ: ANY}, "HQ only (public holidays and adjusted working days)"),
    "calendars.read_brand": Permission({STAFF: ANY, MANAGER: ANY, REGION: ANY, HQ: ANY},
                                       "staff, store and region managers, HQ (not members, not integrations)"),
    "calendars.put_office": Permission({HQ: ANY}, "HQ only (the hours of HQ's and the regions' queues)"),
    "calendars.read_office": Permission({STAFF: ANY, MANAGER: ANY, REGION: ANY, HQ: ANY},
                                        "as calendars.read_brand"),
    "calendars.put_closures": Permission({MANAGER: STORE, REGION: STORE, HQ: ANY},
                                         "the store's manager, its region's manager, HQ (not staff: a closure "
                                         "moves every deadline of the store's queue)"),
    "calendars.read_closures": Permission({STAFF: STORE, MANAGER: STORE, REGION: STORE, HQ: ANY},
                                          "the store's staff and managers, its region's manager, HQ"),
    # ---- member tags (the tags themselves are read with the member: members.view)
    "tags.put_rules": Permission({HQ: ANY}, "HQ only (the nightly job tags every member by them)"),
    "tags.read_rules": Permission({MANAGER: ANY, REGION: ANY, HQ: ANY},
                                  "store and region managers and HQ: managers see why a member carries a rule's "
                                  "tag (as routing.read); not counter staff, members or integrations"),
    "tags.add": Permission({STAFF: ANY, MANAGER: ANY, REGION: ANY, HQ: ANY},
                           "staff and managers of any store, region managers, HQ (staff serve any member at the "
                           "counter); not members, not integrations"),
    "tags.remove": Permission({STAFF: ANY, MANAGER: ANY, REGION: ANY, HQ: ANY}, "as tags.add"),
    # ---- the nightly segmentation
    "analytics.rfm": Permission({STAFF: STORE, MANAGER: STORE, REGION: STORE, HQ: ANY},
                                "a store's distribution: its staff and managers, its region's manager, HQ; a "
                                "region's: its manager, HQ; the brand's: HQ"),
    # ---- reports (docs/reports.md)
    "reports.store": Permission({STAFF: STORE, MANAGER: STORE, REGION: STORE, HQ: ANY},
                                "the store's staff and managers, its region's manager, HQ"),
    "reports.store_link": Permission({STAFF: STORE, MANAGER: STORE, REGION: STORE, HQ: ANY},
                                     "as reports.store (the page it opens is authorised again with the caller's "
                                     "scope when opened)"),
    "analytics.kpis": Permission({REGION: ANY, HQ: ANY},
                                 "HQ: every store; a region manager: only their region's stores, whatever the "
                                 "grouping (the service keeps the rows to their stores)"),
    "analytics.report_link": Permission({REGION: ANY, HQ: ANY}, "as analytics.kpis"),
    "rfm.settings_put": Permission({HQ: ANY}, "HQ only"),
    "rfm.settings_read": Permission({MANAGER: ANY, REGION: ANY, HQ: ANY}, "managers and HQ"),
}


def permission(operation: str) -> Permission:
    try:
        return POLICY[operation]
    except KeyError:
        raise LookupError(f"operation {operation!r} has no row in the access policy") from None


def allow_role(operation: str, actor: Principal) -> Scope:
    """The caller's role may call the operation: its scope rule; else 403 (the route does this first)."""
    perm = permission(operation)
    scope = perm.scopes.get(actor.role)
    if scope is None:
        raise Forbidden(perm.denied_message or f"role {actor.role.value} may not do this", code=perm.denied_code)
    return scope


def authorize(operation: str, actor: Principal, *, member_id: str | None = None,
              store: StoreFacts | Callable[[], StoreFacts] | None = None, queue: QueueFacts | None = None) -> None:
    """The whole check for one operation: role, then the role's scope rule against the facts given.

    `member_id` is the member the request is about (resolved through merges by the caller where an old id
    may be used); `store` the store it is about, or a loader that is called only when the rule needs it.
    A rule whose fact was not given is a programming error, never a silent pass."""
    scope = allow_role(operation, actor)
    if scope is Scope.SELF:
        if member_id is None:
            raise LookupError(f"{operation}: the self rule needs the member_id")
        if actor.member_id != member_id:
            raise Forbidden("members may only access their own data", code="not_your_member")
    elif scope is Scope.STORE:
        if store is None:
            raise LookupError(f"{operation}: the store rule needs the store")
        facts = store() if callable(store) else store
        if not in_store_scope(actor, facts.store_id, facts.region_id):
            raise Forbidden("store is outside your scope", code="store_out_of_scope",
                            details={"store_id": facts.store_id})
    elif scope is Scope.QUEUE:
        if queue is None and store is None:
            raise LookupError(f"{operation}: the queue rule needs the queue or the store")
        facts = store() if callable(store) else store
        if not ((queue is not None and in_queue_scope(actor, queue))
                or (facts is not None and in_store_scope(actor, facts.store_id, facts.region_id))):
            if queue is None and facts is not None:  # asked about a store (a store's ticket list): say so
                raise Forbidden("store is outside your scope", code="store_out_of_scope",
                                details={"store_id": facts.store_id})
            raise Forbidden("this queue is outside your scope", code="queue_out_of_scope")


def in_queue_scope(actor: Principal, queue: QueueFacts) -> bool:
    if actor.role is Role.HQ:
        return True
    if actor.role is Role.REGION_MANAGER:
        return actor.region_id is not None and queue.kind in ("store", "region") and queue.region_id == actor.region_id
    if actor.role in COUNTER_ROLES:
        return queue.kind == "store" and queue.store_id in actor.store_ids
    return False


def in_store_scope(actor: Principal, store_id: str, region_id: str | None) -> bool:
    if actor.role is Role.HQ:
        return True
    if actor.role is Role.REGION_MANAGER:
        return actor.region_id is not None and region_id == actor.region_id
    if actor.role in COUNTER_ROLES or actor.role is Role.INTEGRATION:
        return store_id in actor.store_ids
    return False


def scope_of(operation: str, actor: Principal) -> Scope | None:
    """The caller's scope rule for the operation (None: not allowed), for services whose steps differ by
    rule (a counter redemption needs a store; a member's own does not)."""
    return permission(operation).scopes.get(actor.role)


def markdown_table() -> str:
    """docs/access-policy.md: one row per operation, one column per role."""
    roles = list(Role)
    head = "| operation | " + " | ".join(r.value for r in roles) + " | rule |"
    rows = [head, "|" + "---|" * (len(roles) + 2)]
    for op in sorted(PUBLIC):
        rows.append(f"| `{op}` | " + " | ".join("public" for _ in roles) + " | no token needed |")
    for op, perm in sorted(POLICY.items()):
        cells = [perm.scopes[r].value if r in perm.scopes else "—" for r in roles]
        rows.append(f"| `{op}` | " + " | ".join(cells) + f" | {perm.rule} |")
    return "\n".join(rows) + "\n"
