"""The nightly segmentation's read side: the brand's settings (HQ) and the segment distribution of a store, a
region or the brand, from the counts the nightly run wrote (no numpy here; the run itself: rfm_job.py)."""
from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from ..domain.access import Principal
from ..domain.errors import Conflict, NotFound
from ..domain.policy import StoreRef, authorize
from ..domain.segments import ALL_SEGMENTS, RfmSettings
from .ports import RfmRepository, StoreRepository


def get_settings(actor: Principal, rfm: RfmRepository) -> tuple[RfmSettings, int]:
    authorize("rfm.settings_read", actor)
    return rfm.settings()


def put_settings(settings: RfmSettings, version: int | None, actor: Principal, rfm: RfmRepository) -> int:
    """Replace the settings (from the next night on: a night already planned keeps the ones it started with)."""
    authorize("rfm.settings_put", actor)
    _, current = rfm.settings()
    if version is not None and version != current:
        raise Conflict("the settings changed since you read them", code="version_conflict",
                       details={"version": current})
    return rfm.put_settings(settings, current, actor.sub)


def distribution(actor: Principal, rfm: RfmRepository, stores: StoreRepository, *, store_id: str | None,
                 region_id: str | None, as_of: date | None) -> dict[str, Any]:
    """The night's segment counts (and, for a store, its repurchase rate and churn list) with the change since
    the night before. Staff and store managers: their stores; a region manager: their region or its stores."""
    if store_id is not None:
        store = stores.get(store_id)
        authorize("analytics.rfm", actor, store=store or StoreRef(store_id))
        level, ident = "STORE", store_id
    elif region_id is not None:
        authorize("analytics.rfm", actor, store=StoreRef("", region_id))
        level, ident = "REGION", region_id
    else:
        authorize("analytics.rfm", actor, store=StoreRef(""))
        level, ident = "BRAND", "ALL"
    night = as_of or rfm.latest()
    if night is None:
        raise NotFound("the nightly segmentation has not run yet", code="no_segmentation")
    body = rfm.night(night, level, ident)
    if body is None:
        if as_of is not None and rfm.run(as_of) is None:
            raise NotFound("no segmentation for that night", code="no_segmentation",
                           details={"as_of": as_of.isoformat()})
        body = {"as_of": night.isoformat(), "segments": dict.fromkeys(ALL_SEGMENTS, 0), "members": 0,
                "repurchase": {"buyers": 0, "repeat_buyers": 0, "rate_permille": 0}}
        if level == "STORE":
            body["churn"] = []
    body.pop("top", None)  # the store report's best members (services/reports.py), not this distribution's
    before = rfm.night(night - timedelta(days=1), level, ident)
    change = None
    if before is not None:
        change = {s: body["segments"].get(s, 0) - before["segments"].get(s, 0) for s in ALL_SEGMENTS}
    return {**body, "level": level.lower(), "id": None if level == "BRAND" else ident, "change": change}
