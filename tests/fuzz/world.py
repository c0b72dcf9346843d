"""The world the schema fuzzer runs in: an isolated table with the demo stores and a few real members,
orders and redemptions, coupon templates and coupons (some redeemed at the counter), service tickets with
tasks and queues, a bearer token for every kind of caller, and the budget knobs.

Isolation: the fuzzer PUTs random (valid) tiers, points rules and stores. It gets its own table (as
tests/conftest.py's `fresh_table` does, but for a whole module) so no other test file in the same xdist
worker ever sees that configuration; the table is switched back and dropped when the module ends.
"""
from __future__ import annotations

import json
import os
import random
import threading
import uuid
import zlib
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import requests

from testkit.ledger import order as order_body
from testkit.support import STORES, Tokens, create_stores, registration

# Budget. CI runs the defaults (bounded: the fuzz files take ~1 min on two cores); scripts/fuzz.sh raises
# them for a long run. The seed makes the stateless run reproducible (CI); the long run draws a fresh one.
# The stateful run always draws new sequences: its findings print the whole sequence that failed.
EXAMPLES = int(os.environ.get("CHAINCRM_FUZZ_EXAMPLES", "4"))  # per operation, fuzzing phase, per mode
STATEFUL_EXAMPLES = int(os.environ.get("CHAINCRM_FUZZ_STATEFUL_EXAMPLES", "60"))  # scenarios
STATEFUL_STEPS = int(os.environ.get("CHAINCRM_FUZZ_STATEFUL_STEPS", "10"))  # calls per scenario, at most
SEED = os.environ.get("CHAINCRM_FUZZ_SEED", "20261123")  # "random": a new seed each run
FUZZ_ARTICLES = ("fz-kb-0", "fz-kb-1")  # knowledge-base articles the seed writes (GETs name them)
FUZZ_TAGS = ("常客", "fz-vip", "爱喝 拿铁")  # manual tags the run gives and takes (POST and DELETE name them)
FUZZ_CALENDARS = ("fz-office", "fz-hotline")  # office calendars the seed writes (GETs name them; not `office`,
#                                              which the SLA code counts region and HQ queues in)

SEED_USED: int | None = None  # the stateless run's seed (CHAINCRM_FUZZ_SEED=<it> replays a long run)

# Every kind of caller. `member` is a registered member (token with member_id); `member_wechat` signed
# in through POST /auth/wechat but has no phone bound yet (the only caller POST /members/me/phone serves).
ROLES = ("member", "member_wechat", "staff", "store_manager", "region_manager", "integration", "hq")


def build_schema() -> Any:
    """The schema to fuzz: the app's generated OpenAPI document (the same bytes GET /openapi.json serves;
    test_served_document_is_the_fuzzed_one checks it), loaded at collection so that every operation is its
    own pytest item. Requests go to the live server of the `fuzz_world` fixture."""
    import schemathesis

    import app  # noqa: F401 - registers the routes the document is generated from
    from chalicelib.api.openapi import document

    schema = schemathesis.openapi.from_dict(json.loads(json.dumps(document())))
    global SEED_USED
    SEED_USED = seed = random.randrange(2**32) if SEED == "random" else int(SEED)
    schema.config.seed = seed
    schema.config.update(request_timeout=30)
    # Tokens are ours to choose (one per kind of caller, tests/fuzz/test_schema_fuzz.py), so schemathesis
    # does not generate Authorization headers: a "missing token" case would still carry the caller's token.
    # Missing and invalid tokens are probed by its ignored_auth check on every operation instead.
    schema.config.generation.update(max_examples=EXAMPLES, database="none", deterministic=SEED != "random",
                                    with_security_parameters=False)
    schema.config.phases.stateful.max_steps = STATEFUL_STEPS
    # Sequences are about valid calls feeding the next; invalid input is the stateless run's job.
    schema.config.phases.stateful.generation.update(modes=["positive"])
    # Business rules JSON Schema cannot state (amount = sum of the lines, paid_at within 90 days, a
    # mainland mobile number, tier thresholds increasing...) answer a documented 422 with field details:
    # schema-valid data may be refused with it. Everything else the check already allows stays as it is.
    schema.config.checks.positive_data_acceptance.expected_statuses = ["2xx", "401", "403", "404", "409", "422"]

    @schema.hook
    def filter_case(context: Any, case: Any) -> bool:
        # TRACE (and the draft QUERY) never reach our code: the local dev server (http.server) answers them
        # 501 itself, and on AWS API Gateway answers an undeclared method with its own gateway response
        # (infra/api.json). Every other undeclared method is still probed and must get 405.
        return (case.method or "").upper() not in {"TRACE", "QUERY"}

    @schema.hook
    def filter_failure(context: Any, failure: Any, case: Any, response: Any) -> bool:
        # A known bug (KNOWN_BUGS) is not reported again on every run: its own strict xfail in
        # test_fuzz_findings.py stays red-when-fixed, and the fuzzer keeps looking for everything else.
        return (known_bug(failure) is None and not _only_unknown_names(failure, case)
                and not _not_found_is_another_resource(failure, case, response))

    @schema.hook
    def map_case(context: Any, case: Any) -> Any:
        return shape(CURRENT, case) if CURRENT is not None else case

    return schema


# App bugs the fuzzer found and that are not fixed yet. Each has a strict xfail that reproduces it in
# test_fuzz_findings.py; the fuzz run drops only failures matching (operation, check code, every substring).
KNOWN_BUGS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    # (none open: "a number in a date query parameter read as Unix time" was fixed in routing._parse_query;
    # test_fuzz_findings.py::test_a_number_is_no_date_in_a_report_query pins it)
}


def _only_unknown_names(failure: Any, case: Any) -> bool:
    """An "invalid input accepted" whose only invalid part is an undeclared query parameter or header name
    (`?M3bxw=null`, `?=false`, a header `0:`). Unknown query parameters and headers are ignored by design
    (the query models say extra="ignore"; clients and gateways add their own), so accepting them is no
    finding; schemathesis' own filter for this misses names like these. A negated body or path, or any
    other keyword (a declared parameter's type, pattern, bounds) stays a finding."""
    from schemathesis.core.parameters import ParameterLocation

    meta = case.meta
    if failure.code != "ST201" or meta is None:
        return False
    negative = {loc for loc, component in meta.components.items() if component.mode.is_negative}
    if not negative or not negative <= {ParameterLocation.QUERY, ParameterLocation.HEADER, ParameterLocation.COOKIE}:
        return False
    mutations = getattr(meta.phase.data, "mutations", ())
    if mutations:
        return all(set(m.keywords) == {"additionalProperties"} for m in mutations)
    return failure.message.rstrip().endswith("Invalid component:")  # nothing named: only unknown names


def _not_found_is_another_resource(failure: Any, case: Any, response: Any) -> bool:
    """ST302 "created resource not found" when the 404 names ANOTHER resource than the one the link
    supplied: merging into a member just registered answers 404 for a SOURCE member (in the body) that is
    gone, and says which one in `details`. The created resource is there; the answer is documented."""
    if failure.code != "ST302" or response.status_code != 404:
        return False
    try:
        details = response.json().get("details") or {}
    except ValueError:
        return False
    named = {v for v in details.values() if isinstance(v, str)} if isinstance(details, dict) else set()
    linked = {v for v in (case.path_parameters or {}).values() if isinstance(v, str)}
    return bool(named) and not named & linked


def known_bug(failure: Any) -> str | None:
    text = f"{failure.title}\n{failure.message}"
    for name, (operation, code, needles) in KNOWN_BUGS.items():
        if failure.operation == operation and failure.code == code and all(n in text for n in needles):
            return name
    return None


@dataclass
class World:
    url: str
    table: str
    tokens: dict[str, str]
    members: list[str]  # registered at sh-001, with orders: what reads, edits, orders and redemptions use
    expendable: list[str]  # what DELETE and merges may consume
    orders: list[str]
    redemptions: list[tuple[str, str]]  # (member_id, redemption_id)
    templates: list[str] = field(default_factory=list)  # coupon templates: active, unlimited, exchangeable
    coupons: list[tuple[str, str]] = field(default_factory=list)  # (code, holder): issued available
    issues: list[str] = field(default_factory=list)  # bulk issues (member_ids, HQ's budget) whose progress is read
    redeemed: list[tuple[str, str]] = field(default_factory=list)  # (code, order_id): held for an order at sh-001
    articles: list[str] = field(default_factory=lambda: list(FUZZ_ARTICLES))  # knowledge base, seeded below
    tickets: list[str] = field(default_factory=list)  # opened by HQ at sh-001 about members[0], in store-sh-001
    tasks: list[str] = field(default_factory=list)  # open tasks for sh-001 (on those tickets)
    queues: list[str] = field(default_factory=list)  # queues a body may name: store, region (east) and HQ ones
    notifications: list[str] = field(default_factory=list)  # ids the SLA sweep wrote about those tickets
    stores: list[str] = field(default_factory=lambda: list(STORES))
    sent: Counter[tuple[str, str]] = field(default_factory=Counter)  # (operation, caller) -> requests
    statuses: Counter[tuple[str, int]] = field(default_factory=Counter)  # (operation, status) -> responses
    total: Counter[str] = field(default_factory=Counter)  # every request the fuzz session sent, checks' own too
    touched: set[str] = field(default_factory=set)  # members whose points a 2xx answer showed: audited at the end
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def session(self) -> requests.Session:
        """A session that counts every request it sends (schemathesis' checks re-send through it too)."""
        s = requests.Session()

        def count(resp: requests.Response, *_: Any, **__: Any) -> None:
            with self._lock:
                self.total["requests"] += 1
                self.total[f"{resp.status_code // 100}xx"] += 1

        s.hooks["response"].append(count)
        return s

    def record(self, operation: str, caller: str, status: int) -> None:
        with self._lock:
            self.sent[(operation, caller)] += 1
            self.statuses[(operation, status)] += 1

    def observe(self, response: Any) -> None:
        """Remember the members a successful answer names, for the ledger audit after the run."""
        if not 200 <= response.status_code < 300:
            return
        try:
            body = response.json()
        except ValueError:
            return
        if isinstance(body, dict):
            for key in ("member_id", "target_member_id", "source_member_id"):
                if isinstance(body.get(key), str):
                    with self._lock:
                        self.touched.add(body[key])

    def audit(self) -> int:
        """The ledger auditor (testkit/audit.py) over every member the run touched; merged-away
        tombstones are skipped (their points live on in the survivor, which is audited)."""
        from chalicelib import bootstrap
        from testkit.audit import audit_member

        audited = 0
        for member_id in sorted(self.touched | set(self.members) | set(self.expendable)):
            profile, _ = bootstrap.ledger().load_member(member_id)
            if profile is None or profile.status == "merged":
                continue
            audit_member(member_id)
            audited += 1
        return audited

    def report(self, title: str) -> str:
        ops = sorted({op for op, _ in self.sent})
        lines = [f"{title} (seed {SEED_USED}): {self.total['requests']} requests "
                 f"({', '.join(f'{k} {v}' for k, v in sorted(self.total.items()) if k != 'requests')}), "
                 f"{len(ops)} operations"]
        for op in ops:
            by_status = sorted((s, n) for (o, s), n in self.statuses.items() if o == op)
            lines.append(f"  {op:<70} " + " ".join(f"{s}x{n}" for s, n in by_status))
        return "\n".join(lines)

    def auth(self, caller: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[caller]}"} if caller != "anonymous" else {}


def write_report(name: str, text: str) -> None:
    """.local/fuzz-<name>.txt (scripts/fuzz.sh prints them): what was sent and answered, per operation."""
    from chalicelib.local.stack import LOCAL_DIR

    LOCAL_DIR.mkdir(exist_ok=True)
    (LOCAL_DIR / f"fuzz-{name}.txt").write_text(text + "\n")
    print(text)


@contextmanager
def isolated_world(stack: Any, live: Any) -> Iterator[World]:
    """Switch the app (the live server runs in this process) to a new table, seed it, hand it out, switch back."""
    import pytest

    from chalicelib import bootstrap

    name = f"chaincrm-fuzz-{uuid.uuid4().hex[:8]}"
    stack.ensure_table(name)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CHAINCRM_TABLE_NAME", name)
        bootstrap.reset()
        try:
            create_stores()
            yield _seed(stack, live.url, name)
        finally:
            mp.setenv("CHAINCRM_TABLE_NAME", stack.table_name)
            bootstrap.reset()
    bootstrap.reset()  # the monkeypatch restored the variable: forget the clients built for the fuzz table
    stack.client("dynamodb").delete_table(TableName=name)


def _seed(stack: Any, url: str, table: str) -> World:
    t = Tokens(stack.bundle)
    staff = t.staff(stores=["sh-001"])
    http = requests.Session()

    def post(path: str, body: dict, token: str, method: str = "POST") -> dict:
        resp = http.request(method, url + path, json=body, headers={"Authorization": f"Bearer {token}"},
                            timeout=30)
        assert resp.status_code in (200, 201), (path, resp.status_code, resp.text)
        return resp.json()

    members = [post("/members", registration(), staff)["member_id"] for _ in range(3)]
    expendable = [post("/members", registration(), staff)["member_id"] for _ in range(6)]
    orders, redemptions = [], []
    for m in members:
        for amount in (80_000, 12_345):
            orders.append(post("/orders", order_body(m, amount=amount), staff)["order_id"])
        rid = f"fz-{uuid.uuid4().hex[:10]}"
        post(f"/members/{m}/points/redemptions", {"redemption_id": rid, "points": 30, "reason": "fuzz seed",
                                                  "store_id": "sh-001"}, staff)
        redemptions.append((m, rid))
    # Coupons: two templates members may also buy with points, with quota for region east and store sh-001
    # (the managers' tokens); three coupons of each per member, and one coupon per member redeemed at sh-001
    # (the counter tokens' store) for an order not yet posted.
    hq = t.hq()
    templates = ["fz-cash", "fz-pct"]
    for template_id, terms in zip(templates, ({"kind": "cash", "value": 500, "points_price": 10},
                                              {"kind": "discount", "pct": 90, "cap": 1_000, "points_price": 20})):
        post(f"/coupon-templates/{template_id}", {"name": template_id, "valid_days": 30, "stackable": True, **terms},
             hq, "PUT")
        for scope, scope_id in (("region", "east"), ("store", "sh-001")):
            post("/benefit-pool/allocations", {"allocation_id": f"fz-{uuid.uuid4().hex[:10]}", "scope": scope,
                                               "template_id": template_id, "scope_id": scope_id, "quantity": 1_000},
                 hq)
    coupons, redeemed, issues = [], [], []
    for template_id in templates:
        for _ in range(3):
            issued = post("/coupon-issues", {"issue_id": f"fz-{uuid.uuid4().hex[:10]}", "template_id": template_id,
                                             "member_ids": members}, hq)
            coupons += [(c["code"], c["member_id"]) for c in issued["issued"]]
            issues.append(issued["issue_id"])
    for m in members:
        code = next(code for code, holder in coupons if holder == m)
        coupons.remove((code, m))
        order_id = f"fz-{uuid.uuid4().hex[:10]}"
        post(f"/coupons/{code}/redeem", {"member_id": m, "store_id": "sh-001", "order_id": order_id,
                                         "order_amount": 10_000}, staff)
        redeemed.append((code, order_id))
    # Tickets: a region queue of east beside the implicit store-sh-001 and hq-service; the staff token joins
    # sh-001's queue (not available: an agent to assign to, not one routing hands tickets to); three tickets
    # at sh-001 about the member token's member, each with a task for sh-001.
    queues = ["store-sh-001", "store-sh-002", "fz-east", "hq-service"]
    post("/queues/fz-east", {"kind": "region", "name": "fz-east", "region_id": "east"}, hq, "PUT")
    post("/queues/store-sh-001/agents/me", {"available": False}, staff, "PUT")
    tickets, tasks = [], []
    for n in range(3):
        ticket = post("/tickets", {"ticket_id": f"fz-t-{uuid.uuid4().hex[:8]}", "channel": "hotline",
                                   "type": "complaint", "subject": f"fuzz {n}", "description": "fuzz seed",
                                   "store_id": "sh-001", "member_id": members[0]}, hq)
        tickets.append(ticket["ticket_id"])
        task = post(f"/tickets/{ticket['ticket_id']}/tasks", {"task_id": f"fz-k-{uuid.uuid4().hex[:8]}",
                                                              "store_id": "sh-001", "title": "fuzz",
                                                              "due_at": "2030-01-01T09:00:00+08:00"}, hq)
        tasks.append(task["task_id"])
    # The knowledge base: two articles in category faq (FUZZ_ARTICLES), holding the words the searches name.
    for article_id, title in zip(FUZZ_ARTICLES, ("积分过期规则", "退款须知"), strict=True):
        post(f"/kb/articles/{article_id}", {"category": "faq", "title": title, "tags": ["fuzz"],
                                            "body": "会员积分一年后过期。请携带小票到门店办理退款。"}, hq, "PUT")
    # Calendars: two office calendars (FUZZ_CALENDARS); the run PUTs the brand calendar and closures itself.
    for calendar_id in FUZZ_CALENDARS:
        post(f"/calendars/{calendar_id}", {"name": calendar_id, "hours": {"mon": {"open": "09:00", "close": "18:00"}}},
             hq, "PUT")
    wechat = post("/auth/wechat", {"code": f"fuzz~{uuid.uuid4().hex[:8]}"}, staff)  # public route
    # SLA: the sweep run as of two days on (this table holds only the tickets above) takes their resolution
    # steps, so the notification routes and the at-risk and breached lists have something to answer with.
    from chalicelib.cli import _LocalContext
    from chalicelib.domain import clock
    from functions import sla_escalation

    swept = sla_escalation.handler({"now": (clock.now() + timedelta(days=2)).isoformat()},
                                   _LocalContext("sla-escalation"))
    assert swept["notified"] and not swept["failed"], swept
    notifications = [n["notification_id"] for n in
                     requests.get(f"{url}/notifications/me?limit=100", headers={"Authorization": f"Bearer {hq}"},
                                  timeout=30).json()["items"]]
    assert notifications, "the sweep told HQ nothing"
    tokens = {
        "member": t.member(members[0]),
        "member_wechat": wechat["token"],
        "staff": staff,
        "store_manager": t.staff("store_manager", stores=["sh-001"]),
        "region_manager": t.staff("region_manager", region="east"),
        "integration": t.staff("integration", stores=["mall"]),
        "hq": hq,
    }
    return World(url=url, table=table, tokens=tokens, members=members, expendable=expendable, orders=orders,
                 redemptions=redemptions, templates=templates, coupons=coupons, redeemed=redeemed, issues=issues,
                 tickets=tickets, tasks=tasks, queues=queues, notifications=notifications)


CURRENT: World | None = None  # set by the fuzz_world fixture while its module runs


# ---- shaping positive cases ---------------------------------------------------------------------------
# JSON Schema cannot say "amount equals the sum of the lines", "paid within the last 90 days", "a mainland
# mobile number" or "an id that exists". Left alone, nearly every schema-valid request would stop at a 404
# or 422 and the fuzzer would never reach the ledger. So two of every three POSITIVE cases are nudged into
# the world: known ids, a valid phone, consistent amounts. The third stays as generated. Negative
# components are never touched. The choice hangs on the generated data (crc32), so a failing example
# replays the same way.


def _pick(seed: int, pool: list[Any]) -> Any:
    return pool[seed % len(pool)]


def _phone(seed: int) -> str:
    return f"1{'3456789'[seed % 7]}{seed % 10**9:09d}"


def shape(world: World, case: Any) -> Any:
    from schemathesis.core.parameters import ParameterLocation

    meta = case.meta
    seed = zlib.crc32(json.dumps([case.path_parameters, case.query, case.body], default=str,
                                 sort_keys=True).encode())
    if meta is None or seed % 3 == 0:
        return case
    method, path = case.operation.method.upper(), case.operation.path
    params = dict(case.path_parameters or {})
    linked = meta.phase.name.value == "stateful"  # path ids come from the links: keep them
    if params and not linked and not meta.is_negative_at(ParameterLocation.PATH):
        consumes = path == "/members/{member_id}" and method == "DELETE" or path.endswith("/merge")
        if "member_id" in params:
            params["member_id"] = _pick(seed, world.expendable if consumes else world.members)
        if "order_id" in params:
            params["order_id"] = _pick(seed, world.orders)
        if "redemption_id" in params:
            params["member_id"], params["redemption_id"] = _pick(seed, world.redemptions)
        if "store_id" in params and (method == "GET" or path.endswith("/report-links")):
            params["store_id"] = _pick(seed, world.stores)
        if "template_id" in params:  # PUT: a new template, or one of a few the run keeps replacing
            params["template_id"] = f"fz-new-{seed % 20}" if method == "PUT" else _pick(seed, world.templates)
        if "code" in params:  # a cancel names a redeemed coupon; the counter's other calls an available one
            params["code"] = _pick(seed, world.redeemed if path.endswith("/cancel") else world.coupons)[0]
        if "article_id" in params:  # PUT: a new article, or one of a few the run keeps editing
            params["article_id"] = f"fz-kb-new-{seed % 10}" if method == "PUT" else _pick(seed, world.articles)
        if "ticket_id" in params:
            params["ticket_id"] = _pick(seed, world.tickets)
        if "issue_id" in params:
            params["issue_id"] = _pick(seed, world.issues)
        if "task_id" in params:
            params["task_id"] = _pick(seed, world.tasks)
        if "queue_id" in params:  # PUT a queue: a new one, or one of a few the run keeps replacing (not a store's)
            params["queue_id"] = _pick(seed, world.queues) if path.endswith("/me") else f"fz-q-{seed % 10}"
        if "calendar_id" in params:  # PUT: one of a few office calendars the run keeps replacing
            params["calendar_id"] = f"fz-cal-{seed % 5}" if method == "PUT" else _pick(seed, list(FUZZ_CALENDARS))
        if "store_id" in params and path.endswith("/closures"):  # a real store's closures, whatever the method
            params["store_id"] = _pick(seed, world.stores)
        if "tag" in params:  # one of the few tags POST /members/{id}/tags keeps giving (held or not by now)
            params["tag"] = _pick(seed >> 2, list(FUZZ_TAGS))
        case.path_parameters = params
    query = case.query
    if isinstance(query, dict) and "phone" in query and not meta.is_negative_at(ParameterLocation.QUERY):
        case.query = {**query, "phone": _phone(seed)}
    shaped = _shape_query(seed, path, query if isinstance(query, dict) else {})
    if shaped is not None and not meta.is_negative_at(ParameterLocation.QUERY):
        case.query = shaped
    if path in REPORT_PAGES and not meta.is_negative_at(ParameterLocation.QUERY):
        link = _report_link(world, seed, path, case.path_parameters or {})
        if link is not None:
            case.query = {**(case.query if isinstance(case.query, dict) else {}), "link": link}
    body = case.body
    if isinstance(body, dict) and not meta.is_negative_at(ParameterLocation.BODY):
        case.body = _shape_body(world, seed, method, path, _whole_numbers(body))
    return case


def _whole_numbers(value: Any) -> Any:
    """JSON Schema's "integer" admits 19096.0; the app reads integers strictly (StrictInt: no float ever
    reaches money or points) and answers 422. Valid either way; send the plain form to get further."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: _whole_numbers(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_whole_numbers(v) for v in value]
    return value


def _shape_body(world: World, seed: int, method: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
    from chalicelib.domain import clock

    store = _pick(seed >> 3, world.stores[:2])  # sh-001 / sh-002: where the counter tokens work
    if "phone" in body and isinstance(body["phone"], str):
        body["phone"] = _phone(seed)
    if path == "/members" and method == "POST":
        body["store_id"] = store
        body.pop("birthday", None)  # a valid date may still be in the future: a 422, not what we are after
    elif path in ("/orders", "/orders/preview"):
        items = body.get("items")
        if isinstance(items, list) and items and all(isinstance(i, dict) for i in items):
            for i in items:
                i["amount"] = (seed >> 5) % 50_000
            body["amount"] = sum(i["amount"] for i in items)
        body["paid_at"] = (clock.now() - timedelta(days=1 + seed % 30)).isoformat()
        body["store_id"] = store
        body.pop("phone", None)
        body["member_id"] = _pick(seed, world.members)
    elif path == "/orders/{order_id}/refunds":
        body["amount"] = 1 + (seed >> 4) % 5_000
        body.pop("items", None)
    elif path.endswith("/redemptions"):
        body["store_id"] = "sh-001"  # the staff token's store
        body["points"] = 1 + (seed >> 4) % 50
    elif path.endswith("/merge"):
        body["source_member_id"] = _pick(seed >> 2, world.expendable)
    elif path == "/members/me/phone":
        body["code"] = f"phone-{_phone(seed)}"
        body["store_id"] = store
    elif path == "/members/{member_id}" and method == "PATCH":
        body.pop("birthday", None)
    elif path == "/coupon-templates/{template_id}":
        _shape_template(seed, body)
    elif path == "/coupon-issues":
        body["template_id"] = _pick(seed, world.templates)
        if isinstance(body.get("audience"), dict) and (seed >> 5) % 2:  # a segment audience job (202)
            body.pop("member_ids", None)
            body["audience"] = {"home_store_id": "sh-001", **({"segment": "no_purchase"} if (seed >> 6) % 2 else {})}
        else:
            body.pop("audience", None)
            body["member_ids"] = world.members[: 1 + seed % len(world.members)]
        body.pop("region_id", None)
        if (seed >> 3) % 2:  # from store sh-001's quota (its managers' and HQ's); else HQ's budget
            body["store_id"] = "sh-001"
        else:
            body.pop("store_id", None)
    elif path == "/benefit-pool/allocations":
        body["template_id"] = _pick(seed, world.templates)
        body["scope"], body["scope_id"] = _pick(seed >> 3, [("store", "sh-001"), ("region", "east")])
        body["quantity"] = 1 + (seed >> 5) % 5
    elif path.endswith("/points/exchanges"):
        body["template_id"] = _pick(seed, world.templates)
    elif path == "/coupons/{code}/redeem":
        body["member_id"] = _pick(seed, world.coupons)[1]  # the holder of the code the path names
        body["store_id"] = "sh-001"
        body["order_amount"] = amount = 1 + (seed >> 4) % 50_000
        lines = body.get("lines")
        if isinstance(lines, list) and lines and all(isinstance(line, dict) for line in lines):
            for line in lines:
                line["amount"] = amount // len(lines)
            lines[0]["amount"] += amount - sum(line["amount"] for line in lines)
    elif path == "/coupons/{code}/redemption/cancel":
        body["order_id"] = _pick(seed, world.redeemed)[1]  # the order the code the path names is held for
    elif path == "/kb/articles/{article_id}":
        body.pop("base_version", None)  # an edit from whatever is there (a stale one is a documented 409)
    elif path == "/tickets":
        body["store_id"] = "sh-001"
        body["member_id"] = world.members[0]  # the member token's own member
        if body.get("order_id") is not None:
            body["order_id"] = world.orders[seed % 2]  # members[0]'s orders
    elif path == "/tickets/{ticket_id}/actions":
        _shape_action(world, seed, body)
    elif path == "/tickets/{ticket_id}/tasks":
        body["store_id"] = store
    elif path == "/queues/{queue_id}":
        body["kind"] = _pick(seed >> 3, ["region", "hq"])
        if body["kind"] == "region":
            body["region_id"] = "east"
        else:
            body.pop("region_id", None)
    elif path == "/sla-policies":
        body.pop("version", None)  # as the routing rules: replace what is there (a stale one is a documented 409)
        rules = [r for r in body.get("rules") or [] if isinstance(r, dict)]
        seen_cases: set[Any] = set()
        body["rules"] = [r for r in rules if not ((r.get("priority"), r.get("type")) in seen_cases
                                                  or seen_cases.add((r.get("priority"), r.get("type"))))]
    elif path.endswith("/report-links"):
        body.update({k: v for k, v in _report_range(seed).items() if k in body})  # the dates asked, in range
    elif path == "/notifications/me/read":
        body["notification_ids"] = world.notifications[: 1 + seed % len(world.notifications)]
    elif path == "/members/{member_id}/tags":
        body["tag"] = _pick(seed >> 2, list(FUZZ_TAGS))
    elif path == "/tag-rules":
        body.pop("version", None)  # as the routing rules: replace what is there (a stale one is a documented 409)
        _shape_tag_rules(seed, body)
    elif path == "/routing-rules":
        body.pop("version", None)  # the version is the run's own business: the rules replace what is there
        for rule in [r for r in body.get("rules") or [] if isinstance(r, dict)]:
            rule["queue_id"] = _pick(seed >> 2, ["{store}", *world.queues])
    elif path == "/stores/{store_id}" and isinstance(body.get("business_hours"), dict):
        body["business_hours"] = _shape_hours(seed, body["business_hours"])
    elif path == "/calendars/{calendar_id}" and isinstance(body.get("hours"), dict):
        body["hours"] = _shape_hours(seed, body["hours"])
    elif path == "/calendars/brand":
        _shape_brand_calendar(body)
    elif path == "/stores/{store_id}/closures" and isinstance(body.get("closures"), list):
        for span in [c for c in body["closures"] if isinstance(c, dict)]:
            span.pop("end", None)  # one day each: a range must not run backwards or past 366 days
    elif path == "/tiers" and isinstance(body.get("tiers"), list):
        tiers = [t for t in body["tiers"] if isinstance(t, dict)]
        seen: set[Any] = set()
        tiers = [t for t in tiers if not (t.get("tier_id") in seen or seen.add(t.get("tier_id")))]
        for n, tier in enumerate(tiers):
            tier["threshold"] = n * 100_000
        if tiers:
            body["tiers"] = tiers
    return body


ACTION_FIELDS = ("body", "article_ids", "assignee", "queue_id", "score")


def _shape_action(world: World, seed: int, body: dict[str, Any]) -> None:
    """An action with just the fields its type takes (the rest is the state's and the caller's business)."""
    kind = _pick(seed >> 3, ["reply", "comment", "assign", "transfer", "hold", "resume", "resolve", "reopen",
                             "close", "rate"])
    for key in ACTION_FIELDS:
        body.pop(key, None)
    body["type"] = kind
    if kind in ("reply", "comment"):
        body["body"] = "fuzz"
    elif kind == "assign":
        body["assignee"] = "staff-1"  # the staff token: an agent of store-sh-001
    elif kind == "transfer":
        body["queue_id"] = _pick(seed >> 5, world.queues)
    elif kind == "rate":
        body["score"] = 1 + (seed >> 5) % 5


def _shape_tag_rules(seed: int, body: dict[str, Any]) -> None:
    """Rules the checks admit: each tag once, each condition's op and value of its field's kind (a share in
    permille, a segment by name, a category where a share needs one)."""
    from chalicelib.domain.tags import SEGMENT_NAMES, SHARE_FIELDS, TEXT_FIELDS

    rules = [r for r in body.get("rules") or [] if isinstance(r, dict)]
    for n, rule in enumerate(rules):
        rule["tag"] = f"fz-rule-{n}"
        for i, cond in enumerate(c for c in rule.get("all") or [] if isinstance(c, dict)):
            field, pick = cond.get("field"), (seed >> (i % 16)) + n
            cond.pop("category", None)
            if field in TEXT_FIELDS:
                cond["op"] = _pick(pick, ["eq", "in"])
                value = _pick(pick >> 1, list(SEGMENT_NAMES)) if field == "segment" else "gold"
            else:
                cond["op"] = _pick(pick, ["gte", "lte", "eq", "in"])
                value = pick % 1001 if field in SHARE_FIELDS else pick % 100_000
                if field == "category_share":
                    cond["category"] = "fuzz"
            cond["value"] = [value] if cond["op"] == "in" else value
    body["rules"] = rules


def _shape_hours(seed: int, hours: dict[str, Any]) -> dict[str, Any]:
    """The days generated, each one window the rules admit (generated windows overlap, or carry an offset)."""
    start = seed % 12
    return {day: {"open": f"{start:02d}:00", "close": f"{start + 1 + (seed >> 4) % 11:02d}:30"} for day in hours}


def _shape_brand_calendar(body: dict[str, Any]) -> None:
    """Holidays of one day each, and working days on other dates, each date once (as the rules ask)."""
    holidays = [h for h in body.get("holidays") or [] if isinstance(h, dict)]
    for holiday in holidays:
        holiday.pop("end", None)
    closed = {h.get("start") for h in holidays}
    workdays, seen = [], set()
    for day in [w for w in body.get("workdays") or [] if isinstance(w, dict)]:
        if day.get("date") not in closed and day.get("date") not in seen:
            seen.add(day.get("date"))
            workdays.append(day)
    body["holidays"], body["workdays"] = holidays, workdays


def _shape_template(seed: int, body: dict[str, Any]) -> None:
    """A template the rules admit: one kind with just its fields, valid for N days, for every store."""
    for key in ("value", "pct", "cap", "gift", "valid_from", "valid_to", "region_ids", "store_ids"):
        body.pop(key, None)
    kind = ("cash", "threshold", "discount", "gift")[seed % 4]
    body.update(kind=kind, store_scope="all", valid_days=(seed >> 2) % 60)
    if kind in ("cash", "threshold"):
        body["value"] = 1 + (seed >> 4) % 5_000
        body["min_spend"] = 2 * body["value"] if kind == "threshold" else 0
    elif kind == "discount":
        body.update(pct=1 + (seed >> 4) % 99, cap=1 + (seed >> 8) % 5_000)
    else:
        body["gift"] = {"name": "fuzz", "cost": (seed >> 4) % 1_000}


def _report_range(seed: int) -> dict[str, str]:
    """A report's range: up to 366 days, ending at most a month before today."""
    from chalicelib.domain import clock

    last = clock.business_day(clock.now()) - timedelta(days=(seed >> 3) % 30)
    return {"from": (last - timedelta(days=seed % 366)).isoformat(), "to": last.isoformat()}


# A report page opens through a signed link only (10 minutes): a positive case gets a fresh one, made through
# the link route by a caller who may see the page (HQ; east's manager for its stores and the KPIs).
REPORT_PAGES = {"/stores/{store_id}/report.html": "/stores/{store_id}/report-links",
                "/analytics/report.html": "/analytics/report-links"}


def _report_link(world: World, seed: int, path: str, params: dict[str, Any]) -> str | None:
    store_id = params.get("store_id")
    if "{store_id}" in path and store_id not in world.stores:
        return None  # a generated store id: no link can name it
    maker = _pick(seed >> 4, ["hq", "region_manager"]) if store_id in (None, "sh-001", "sh-002") else "hq"
    body: dict[str, Any] = _report_range(seed)
    if store_id is None:
        body["group_by"] = _pick(seed >> 6, ["region", "city", "store", "store_type", "day"])
    made = requests.post(world.url + REPORT_PAGES[path].replace("{store_id}", str(store_id)), json=body,
                         headers=world.auth(maker), timeout=30)
    assert made.status_code == 201, (made.status_code, made.text)
    return made.json()["path"].split("?link=", 1)[1]


def _shape_query(seed: int, path: str, query: dict[str, Any]) -> dict[str, Any] | None:
    """Queries that name where the caller stands: sh-001 (the counter and managers' tokens) or, every other
    time, nothing (HQ's whole brand, a region manager's own region); dates in range. None: left as it is."""
    from chalicelib.domain import clock

    if path == "/coupons/{code}":  # a counter lookup names the store it is at
        return {**query, "store_id": "sh-001"}
    if path == "/kb/articles":  # a word the seeded articles hold, alone or with their category, or the category
        limit = query.get("limit")
        shaped = _pick(seed >> 2, [{"q": "积分过期"}, {"q": "退款 门店", "category": "faq"}, {"category": "faq"}])
        return {**shaped, **({"limit": limit} if limit is not None else {})}
    if path == "/tickets":  # one filter at a time: the queue, the store (the counter tokens'), my own, an SLA stage
        shaped = {k: v for k, v in query.items() if k not in ("queue", "store_id", "assignee", "sla")}
        key, value = _pick(seed >> 2, [("queue", "store-sh-001"), ("store_id", "sh-001"), ("assignee", "me"),
                                       ("sla", "at_risk"), ("sla", "breached")])
        if key == "sla":  # alone (a status with it is a 422 unsupported_filter)
            shaped.pop("status", None)
        return {**shaped, key: value}
    if path in ("/stores/{store_id}/report", "/analytics/kpis"):  # a range of up to 366 days, any grouping
        return {**query, **_report_range(seed)}
    if path == "/tickets/stats":  # up to 92 days ending today (the seeded tickets' day), any grouping
        today = clock.business_day(clock.now())
        return {**query, "from": (today - timedelta(days=seed % 92)).isoformat(), "to": today.isoformat()}
    if path not in ("/benefit-pool", "/coupon-templates/{template_id}/stats", "/coupons/settlement"):
        return None
    shaped = {k: v for k, v in query.items() if k not in ("store_id", "region_id")}
    if (seed >> 2) % 2:
        shaped["store_id"] = "sh-001"
    today = clock.business_day(clock.now())
    if path.endswith("/stats"):
        shaped.update({"from": (today - timedelta(days=seed % 30)).isoformat(), "to": today.isoformat()})
    elif path == "/coupons/settlement":
        shaped["month"] = today.strftime("%Y-%m")
    return shaped
