"""Store reports, HQ/region KPIs, and their pages behind short-lived signed links (docs/reports.md)."""
from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from .. import bootstrap
from ..domain import clock
from ..domain.errors import Unauthorized
from ..services import reports
from . import report_html
from .routing import Call, Html, Reply, route

TAG = "reports"
GroupBy = Literal["region", "city", "store", "store_type", "day"]


class _Out(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RangeQuery(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)
    from_: date | None = Field(default=None, alias="from", description="first business day (YYYY-MM-DD); "
                                                                        "default: 29 days before `to`")
    to: date | None = Field(default=None, description="last business day, included; default: yesterday "
                                                      "(Asia/Shanghai)")


class KpiQuery(RangeQuery):
    group_by: GroupBy = Field(default="store", description="one row per region, city, store, store type or day")


class RangeBody(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    from_: date | None = Field(default=None, alias="from")
    to: date | None = None


class KpiLinkBody(RangeBody):
    group_by: GroupBy = "store"


class PageQuery(BaseModel):
    model_config = ConfigDict(extra="ignore")
    link: str | None = Field(default=None, max_length=2000,
                             description="the signed link's token, as POST …/report-links gave it (none: 401)")


class Kpis(_Out):
    sales_fen: int = Field(description="orders paid in the range, fen (refunds not taken off)")
    refunds_fen: int = Field(description="refunds made in the range")
    net_sales_fen: int
    orders: int
    member_orders: int = Field(description="orders by a member at the time of the sale")
    guest_orders: int
    attached_orders: int = Field(description="guest orders credited to a member who registered in the range")
    refunds: int
    average_ticket_fen: int = Field(description="sales / orders, rounded")
    member_share_permille: int
    new_members: int = Field(description="registrations (home store), a merged duplicate taken off again")
    coupons_issued: int = Field(description="from the store's own quota")
    coupons_redeemed: int = Field(description="used on orders at the store (any issuer)")
    coupon_orders: int
    discount_fen: int
    own_redeemed: int = Field(description="coupons from the store's quota used anywhere")
    coupon_redemption_permille: int = Field(description="own_redeemed / coupons_issued")
    points_issued: int
    points_reversed: int


class StoreInfo(_Out):
    store_id: str
    name: str
    region_id: str
    city: str
    store_type: str


class DayRow(_Out):
    day: date
    sales_fen: int
    refunds_fen: int
    net_sales_fen: int
    orders: int
    member_orders: int
    new_members: int


class SegmentCounts(_Out):
    as_of: date = Field(description="the night the counts are from (the latest finished)")
    counts: dict[str, int]
    change: dict[str, int] | None = Field(description="minus the night before's (None: no night before)")
    members: int


class RepurchaseView(_Out):
    buyers: int
    repeat_buyers: int
    rate_permille: int


class TopMember(_Out):
    member_id: str
    name: str | None = Field(description="masked: the first character")
    phone_masked: str | None
    monetary: int = Field(description="net spend in the nightly window (12 months), fen")
    frequency: int
    recency_days: int
    segment: str
    tier: str | None


class ChurnMember(_Out):
    member_id: str
    name: str | None
    phone_masked: str | None
    monetary: int
    lifetime_spend: int
    usual_gap_days: str
    days_since_purchase: int
    tier: str | None


class StoreReport(_Out):
    store: StoreInfo
    from_: date = Field(alias="from")
    to: date
    days: int
    generated_at: datetime
    kpis: Kpis
    daily: list[DayRow]
    hours: list[int] = Field(description="orders by the hour they were paid, Asia/Shanghai (24)")
    segments: SegmentCounts | None = Field(description="None until the nightly job has run")
    repurchase: RepurchaseView | None = Field(description="the as-of month's home-store buyers buying again")
    top_members: list[TopMember] = Field(description="home-store members by spend, from the nightly job (≤ 50)")
    churn: list[ChurnMember]


class KpiRow(_Out):
    key: str
    label: str
    kpis: Kpis


class KpiReport(_Out):
    from_: date = Field(alias="from")
    to: date
    group_by: str
    scope: str = Field(description="brand (HQ) or region <id> (a region manager: only their stores)")
    stores: int = Field(description="stores in the caller's scope")
    rows: list[KpiRow]
    total: Kpis
    generated_at: datetime


class LinkView(_Out):
    url: str = Field(description="open this in a browser within 10 minutes; it carries no bearer token")
    path: str = Field(description="the same, relative to the API's base URL")
    expires_at: datetime


def _dump(model: BaseModel) -> dict[str, Any]:
    return model.model_dump(mode="json", by_alias=True)


@route("/stores/{store_id}/report", "GET", op="reports.store", tag=TAG, query=RangeQuery, response=StoreReport,
       errors=(404, 422), summary="A store's figures for a range: sales, members, coupons, hours, segments, best "
                                  "members and the churn list")
def store_report(call: Call, store_id: str) -> Reply:
    q: RangeQuery = call.query
    body = reports.store_report(call.principal, store_id, q.from_, q.to, stores=bootstrap.stores(),  # type: ignore[arg-type]
                                rollups=bootstrap.rollups(), rfm=bootstrap.rfm(), members=bootstrap.members())
    return Reply(_dump(StoreReport.model_validate(body)))


@route("/analytics/kpis", "GET", op="analytics.kpis", tag=TAG, query=KpiQuery, response=KpiReport,
       errors=(422,), summary="The KPIs side by side per region, city, store, store type or day (a region manager: "
                              "their region's stores only)")
def kpi_report(call: Call) -> Reply:
    q: KpiQuery = call.query
    body = reports.kpis(call.principal, q.from_, q.to, q.group_by, stores=bootstrap.stores(),  # type: ignore[arg-type]
                        rollups=bootstrap.rollups())
    return Reply(_dump(KpiReport.model_validate(body)))


def _link(call: Call, asked: str, page: str, token: str, exp: int) -> LinkView:
    """The page's URL on the host and stage the request came through (a custom domain has no stage prefix)."""
    full = str(call.context.get("path") or "")
    prefix = full[: -len(asked)] if asked and full.endswith(asked) else ""
    path = f"{page}?link={token}"
    headers = {k.lower(): v for k, v in call.headers.items()}
    host = headers.get("host")
    local = (host or "").split(":")[0] in ("127.0.0.1", "localhost")  # `make run` serves plain HTTP
    proto = headers.get("x-forwarded-proto") or ("http" if local else "https")  # API Gateway always sends it
    return LinkView(url=f"{proto}://{host}{prefix}{path}" if host else path, path=path,
                    expires_at=datetime.fromtimestamp(exp, UTC).astimezone(clock.BUSINESS_TZ))


@route("/stores/{store_id}/report-links", "POST", op="reports.store_link", tag=TAG, body=RangeBody,
       response=LinkView, status=201, errors=(404,),
       summary="A link to the store's report page, valid for 10 minutes, bound to your scope")
def store_report_link(call: Call, store_id: str) -> Reply:
    b: RangeBody = call.body
    token, exp = reports.store_link(call.principal, store_id, b.from_, b.to, bootstrap.stores(),  # type: ignore[arg-type]
                                    bootstrap.links().sign)
    view = _link(call, f"/stores/{store_id}/report-links", f"/stores/{store_id}/report.html", token, exp)
    return Reply(view, 201)


@route("/analytics/report-links", "POST", op="analytics.report_link", tag=TAG, body=KpiLinkBody,
       response=LinkView, status=201, summary="A link to the KPI page, valid for 10 minutes, bound to your scope")
def kpi_report_link(call: Call) -> Reply:
    b: KpiLinkBody = call.body
    token, exp = reports.analytics_link(call.principal, b.from_, b.to, b.group_by, bootstrap.links().sign)  # type: ignore[arg-type]
    return Reply(_link(call, "/analytics/report-links", "/analytics/report.html", token, exp), 201)


def _claims(call: Call) -> dict[str, Any]:
    q: PageQuery = call.query
    if not q.link:
        raise Unauthorized("a report page opens through a link from POST …/report-links", code="link_required")
    return bootstrap.links().verify(q.link)


@route("/stores/{store_id}/report.html", "GET", op="reports.store_page", tag=TAG, query=PageQuery,
       media="text/html", errors=(401, 403, 404, 422),
       summary="The store's report as a page (charts, no script), opened through a signed link")
def store_report_page(call: Call, store_id: str) -> Html:
    body = reports.store_page(_claims(call), store_id, stores=bootstrap.stores(), rollups=bootstrap.rollups(),
                              rfm=bootstrap.rfm(), members=bootstrap.members())
    return Html(report_html.store_page(_dump(StoreReport.model_validate(body))))


@route("/analytics/report.html", "GET", op="analytics.page", tag=TAG, query=PageQuery, media="text/html",
       errors=(401, 403, 422), summary="The KPI comparison as a page, opened through a signed link")
def kpi_report_page(call: Call) -> Html:
    body = reports.analytics_page(_claims(call), stores=bootstrap.stores(), rollups=bootstrap.rollups())
    return Html(report_html.analytics_page(_dump(KpiReport.model_validate(body))))
