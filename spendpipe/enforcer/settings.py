"""Settings of the enforcer (env prefix `SPENDPIPE_`, `__` between section and field)."""

from pydantic import BaseModel, Field, model_validator

from spendpipe.contracts.leases import LeaseSettings
from spendpipe.platform.settings import PipelineSettings


class BudgetMetricsSettings(BaseModel):
    """`SPENDPIPE_BUDGET_METRICS__MAX_SERIES` / `__REFRESH_INTERVAL_S`."""

    max_series: int = Field(default=500, ge=0, le=10_000)
    """Most (scope, model, window) readings exported; each is three series (spend, remaining, cap)."""
    refresh_interval_s: float = Field(default=15.0, gt=0, le=3600)
    """How often the budgets' spend is read from the totals (one query)."""


class BurnRateSettings(BaseModel):
    """`SPENDPIPE_BURN_RATE__LOOKBACK_MINUTES`."""

    lookback_minutes: int = Field(default=15, ge=1, le=1440)
    """Whole minutes of per-minute totals (plus the minute under way) a cap's spend rate is read
    over; a window that began more recently is rated over its time so far (docs/budgets.md)."""


class EnforcerSettings(PipelineSettings):
    enforcer_group_id: str = Field(default="spendpipe-enforcer", min_length=1)
    """Consumer group the enforcer reads flush announcements with."""
    tick_interval_ms: int = Field(default=100, ge=10, le=1000)
    """How often blocks are checked for a window reset and budget changes applied; resets lift
    within this long (plus one ClickHouse query) of the boundary."""
    budget_metrics: BudgetMetricsSettings = BudgetMetricsSettings()
    """The spend and budget gauges on /metrics (`enforcer/budget_gauges.py`)."""
    burn_rate: BurnRateSettings = BurnRateSettings()
    """Burn-rate warnings and the projected exhaustion gauge (`enforcer/burn_rate.py`)."""
    leases: LeaseSettings = LeaseSettings()
    """Headroom leases of budgets that set `headroom_leases` (docs/leases.md)."""

    @model_validator(mode="after")
    def _signing_keys(self) -> "EnforcerSettings":
        """The enforcer signs its decisions and verifies budgets and its own decisions read back."""
        self.signing.require(writes=True, reads=True)
        return self
