"""`Decision`: the enforcer's verdict on one scope (optionally one model), the message on the
compacted `spend.decisions` topic, keyed by `decision_key(scope, model)`.

Decisions are versioned per key: a reader keeps the highest version it has seen and ignores
older ones, so a late or replayed message never overrides a newer verdict. A block carries the
instant it expires (`expires_at`: the reset of the window that was exceeded); readers lift it
by themselves then, even if the unblock message is late.
"""

from datetime import datetime
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict

from spendpipe.schemas.events import Cost

MESSAGE_TYPE = "spendpipe.decision.v1"


def decision_key(scope: str, model: str = "") -> str:
    return f"{scope}|{model}" if model else scope


class Decision(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: Literal[1] = 1
    scope: str
    """`key:<hash>`, `team:eng`, `team_member:eng/alice`, `end_user:acme`, `global`..."""
    model: str = ""
    """The model a per-model budget caps; empty for the scope's spend over all models."""
    version: int
    blocked: bool
    reason: str
    window: str | None = None
    """The budget duration that decided (`24h`, `1mo`...), `lifetime`, or None when not blocked."""
    spend: Cost | None = None
    cap: Cost | None = None
    expires_at: AwareDatetime | None = None
    """When a block lifts by itself; None for a lifetime cap (until the budget changes)."""
    decided_at: AwareDatetime

    @property
    def key(self) -> str:
        return decision_key(self.scope, self.model)

    def in_force(self, now: datetime) -> bool:
        """A block that has not expired yet."""
        return self.blocked and (self.expires_at is None or now < self.expires_at)
