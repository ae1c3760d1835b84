"""`SoftBudgetAlert`: a scope's spend reached its `soft_budget` (an alert, not a block); the
message on `spend.alerts`, keyed by `<scope>@<window start>`. Sent once per window."""

from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict

from spendpipe.contracts.events import Cost

MESSAGE_TYPE = "spendpipe.soft_budget_alert.v1"


class SoftBudgetAlert(BaseModel):
    """A scope's spend reached its `soft_budget` (an alert, not a block), once per window."""

    model_config = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)

    schema_version: Literal[1] = 1
    scope: str
    soft_budget: Cost
    spend: Cost
    window: str
    """The budget's duration (`24h`, `1mo`...) or `lifetime`."""
    window_start: AwareDatetime | None
    window_end: AwareDatetime | None
    alerted_at: AwareDatetime

    @property
    def key(self) -> str:
        start = self.window_start.isoformat() if self.window_start else "lifetime"
        return f"{self.scope}@{start}"
