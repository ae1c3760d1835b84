"""The messages on `spend.alerts`, told apart by the type header (`TYPE_HEADER`):

- `SoftBudgetAlert` (`spendpipe.soft_budget_alert.v1`): a scope's spend reached its
  `soft_budget` (an alert, not a block), keyed by `<scope>@<window start>`, once per window.
- `BurnRateAlert` (`spendpipe.burn_rate_alert.v1`): at its current spend rate a scope will reach
  a cap before the cap's window resets, keyed by `burn_rate|<scope>|<model>|<window>@<window
  start>`, once per window per cap.

A reader dispatches on the header and skips a type it does not know: the topic may carry more
types later, and `SoftBudgetAlert` (which forbids extra fields) does not parse a burn-rate alert."""

from decimal import Decimal
from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, PlainSerializer

from spendpipe.contracts.events import Cost

Rate = Annotated[Decimal, Field(ge=0), PlainSerializer(lambda d: format(d, "f"), return_type=str, when_used="json")]
"""Dollars per second, exact decimal string on the wire."""

MESSAGE_TYPE = "spendpipe.soft_budget_alert.v1"
BURN_RATE_MESSAGE_TYPE = "spendpipe.burn_rate_alert.v1"


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


class BurnRateAlert(BaseModel):
    """At the spend rate of the last minutes, a scope reaches a cap before the cap's window
    resets (a warning, not a block), once per window per cap. The rate comes from the totals
    (`enforcer/burn_rate.py`, docs/budgets.md#burn-rate-warnings)."""

    model_config = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)

    schema_version: Literal[1] = 1
    scope: str
    model: str
    """'' for the scope's spend over all models; else the model a `model_max_budget` caps."""
    cap: Cost
    spend: Cost
    """Spend in the window when the alert was raised."""
    rate_per_second: Rate
    """Dollars per second over the lookback (rounded at 60 significant digits)."""
    lookback_start: AwareDatetime
    """The rate is the spend from here to `alerted_at` over those seconds."""
    projected_exhaustion_at: AwareDatetime
    """When spend reaches `cap` at that rate: before `window_end`."""
    window: str
    """The cap's duration (`24h`, `1mo`...)."""
    window_start: AwareDatetime
    window_end: AwareDatetime
    alerted_at: AwareDatetime

    @property
    def key(self) -> str:
        return f"burn_rate|{self.scope}|{self.model}|{self.window}@{self.window_start.isoformat()}"
