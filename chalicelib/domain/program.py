"""The loyalty program's configuration: earn rules, expiry, promotions and tiers. Data, not code: HQ
edits it through the API. Multipliers are integers in permille (1500 = ×1.5) so no float ever reaches
money or points."""
from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, model_validator

Permille = Annotated[StrictInt, Field(ge=0, le=100_000, description="multiplier in permille: 1000 = x1, 1500 = x1.5")]


class ExpiryRule(BaseModel):
    """months_after: valid N months from the earning day; end_of_month: until the end of the Nth month."""

    model_config = ConfigDict(extra="forbid")
    mode: Literal["months_after", "end_of_month"] = "end_of_month"
    months: StrictInt = Field(default=12, ge=1, le=120)


class Promotions(BaseModel):
    """Promotion multipliers do not stack: the highest active one applies."""

    model_config = ConfigDict(extra="forbid")
    member_day: StrictInt | None = Field(default=8, ge=1, le=28, description="day of month, Asia/Shanghai")
    member_day_multiplier: Permille = 2000
    birthday_month_multiplier: Permille = 1500


class PointsRules(BaseModel):
    model_config = ConfigDict(extra="forbid")
    points_per_yuan: StrictInt = Field(default=1, ge=0, le=100, description="base rate: points per ¥1 paid")
    expiry: ExpiryRule = Field(default_factory=ExpiryRule)
    promotions: Promotions = Field(default_factory=Promotions)
    expiring_soon_days: StrictInt = Field(default=30, ge=1, le=365)


class Benefits(BaseModel):
    model_config = ConfigDict(extra="forbid")
    discount_permille: Permille = Field(default=1000, description="price paid in permille: 950 = 5% off")
    points_multiplier: Permille = 1000
    birthday_benefit: str | None = Field(default=None, max_length=200)
    free_delivery: bool = False
    perks: list[Annotated[str, Field(min_length=1, max_length=100)]] = Field(default_factory=list, max_length=20)


class Tier(BaseModel):
    model_config = ConfigDict(extra="forbid")
    tier_id: str = Field(pattern=r"^[a-z0-9_-]{1,30}$")
    name: str = Field(min_length=1, max_length=30)
    threshold: StrictInt = Field(ge=0, description="rolling-12-month spend in fen (basis spend) or order count")
    benefits: Benefits = Field(default_factory=Benefits)


class TierProgram(BaseModel):
    """Ordered lowest first; the first tier's threshold is 0 (everyone holds at least it)."""

    model_config = ConfigDict(extra="forbid")
    basis: Literal["spend", "orders"] = "spend"
    tiers: list[Tier] = Field(min_length=1, max_length=20)

    @model_validator(mode="after")
    def _ordered(self) -> TierProgram:
        if self.tiers[0].threshold != 0:
            raise ValueError("the first tier must have threshold 0")
        if any(b.threshold <= a.threshold for a, b in zip(self.tiers, self.tiers[1:], strict=False)):
            raise ValueError("tier thresholds must strictly increase")
        if len({t.tier_id for t in self.tiers}) != len(self.tiers):
            raise ValueError("tier ids must be unique")
        return self

    def index(self, tier_id: str | None) -> int:
        """Position of a tier; an unknown id (removed from the program) counts as the lowest."""
        for i, t in enumerate(self.tiers):
            if t.tier_id == tier_id:
                return i
        return 0

    def get(self, tier_id: str | None) -> Tier:
        return self.tiers[self.index(tier_id)]

    def qualified(self, progress: int) -> Tier:
        """The highest tier whose threshold `progress` (spend in fen or order count) reaches."""
        best = self.tiers[0]
        for t in self.tiers:
            if progress >= t.threshold:
                best = t
        return best


DEFAULT_TIERS = TierProgram(tiers=[
    Tier(tier_id="regular", name="普通", threshold=0),
    Tier(tier_id="silver", name="白银", threshold=100_000,
         benefits=Benefits(discount_permille=980, points_multiplier=1200, perks=["生日饮品券"])),
    Tier(tier_id="gold", name="黄金", threshold=300_000,
         benefits=Benefits(discount_permille=950, points_multiplier=1500, free_delivery=True,
                           birthday_benefit="生日月双倍积分", perks=["生日饮品券", "新品优先购"])),
    Tier(tier_id="diamond", name="钻石", threshold=800_000,
         benefits=Benefits(discount_permille=900, points_multiplier=2000, free_delivery=True,
                           birthday_benefit="生日月双倍积分", perks=["生日饮品券", "新品优先购", "专属客服"])),
])
