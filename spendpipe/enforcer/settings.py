"""Settings of the enforcer (env prefix `SPENDPIPE_`, `__` between section and field)."""

from pydantic import Field

from spendpipe.platform.settings import PipelineSettings


class EnforcerSettings(PipelineSettings):
    enforcer_group_id: str = Field(default="spendpipe-enforcer", min_length=1)
    """Consumer group the enforcer reads flush announcements with."""
    tick_interval_ms: int = Field(default=100, ge=10, le=1000)
    """How often blocks are checked for a window reset and budget changes applied; resets lift
    within this long (plus one ClickHouse query) of the boundary."""
