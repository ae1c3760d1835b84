"""Settings of the enforcer (env prefix `SPENDPIPE_`, `__` between section and field)."""

from pydantic import Field, model_validator

from spendpipe.platform.settings import PipelineSettings


class EnforcerSettings(PipelineSettings):
    enforcer_group_id: str = Field(default="spendpipe-enforcer", min_length=1)
    """Consumer group the enforcer reads flush announcements with."""
    tick_interval_ms: int = Field(default=100, ge=10, le=1000)
    """How often blocks are checked for a window reset and budget changes applied; resets lift
    within this long (plus one ClickHouse query) of the boundary."""

    @model_validator(mode="after")
    def _signing_keys(self) -> "EnforcerSettings":
        """The enforcer signs its decisions and verifies budgets and its own decisions read back."""
        self.signing.require(writes=True, reads=True)
        return self
