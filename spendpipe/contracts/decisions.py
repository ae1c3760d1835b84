"""`Decision`: the enforcer's verdict on one scope (optionally one model), the message on the
compacted `spend.decisions` topic, keyed by `decision_key(scope, model, kind)`.

A scope has two independent verdicts, so two keys: its budget (`kind="budget"`, keyed
`<scope>` or `<scope>|<model>`) and its rate limits (`kind="rate_limit"`, keyed
`rate_limit|<scope>[|<model>]`). Lifting one never lifts the other.

Decisions are versioned per key: a reader keeps the highest version it has seen and ignores
older ones (`LatestDecisions`), so a late or replayed message never overrides a newer verdict.
A block carries the instant it expires (`expires_at`: the reset of the window that was
exceeded); readers lift it by themselves then, even if the unblock message is late.
"""

from collections.abc import Iterator
from datetime import datetime
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict

from spendpipe.contracts.events import Cost
from spendpipe.contracts.rate_limits import RateLimitType

MESSAGE_TYPE = "spendpipe.decision.v1"

DecisionKind = Literal["budget", "rate_limit"]
RATE_LIMIT_PREFIX = "rate_limit|"
"""No scope starts with it, so rate-limit keys never collide with budget keys."""


def decision_key(scope: str, model: str = "", kind: DecisionKind = "budget") -> str:
    base = f"{scope}|{model}" if model else scope
    return RATE_LIMIT_PREFIX + base if kind == "rate_limit" else base


class Decision(BaseModel):
    """The enforcer's verdict on one scope's budget or rate limits, over all models or one. Keep
    the highest `version` per key: an older or replayed decision never overrides a newer one.
    A block lifts by itself at `expires_at`, even if the unblock is late."""

    model_config = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)

    schema_version: Literal[1] = 1
    scope: str
    """`key:<hash>`, `team:eng`, `team_member:eng/alice`, `end_user:acme`, `tag:batch`, `provider:openai`,
    `global`..."""
    model: str = ""
    """The model a per-model budget caps; empty for the scope's spend over all models."""
    kind: DecisionKind = "budget"
    """`rate_limit`: refused with LiteLLM's 429 rather than its budget error."""
    rate_limit_type: RateLimitType | None = None
    """On a rate-limit block: what was exceeded, `requests` (rpm) or `tokens` (tpm)."""
    version: int
    blocked: bool
    reason: str
    window: str | None = None
    """The budget duration that decided (`24h`, `1mo`...), `lifetime`, or None when not blocked."""
    spend: Cost | None = None
    """Dollars spent, or for a rate-limit block the requests or tokens in the sliding minute."""
    cap: Cost | None = None
    """The cap in dollars, or the rpm/tpm limit."""
    expires_at: AwareDatetime | None = None
    """When a block lifts by itself; None for a lifetime cap (until the budget changes)."""
    decided_at: AwareDatetime

    @property
    def key(self) -> str:
        return decision_key(self.scope, self.model, self.kind)

    def in_force(self, now: datetime) -> bool:
        """A block that has not expired yet."""
        return self.blocked and (self.expires_at is None or now < self.expires_at)


class LatestDecisions:
    """The decision per key with the highest version seen: every reader of `spend.decisions`
    keeps its decisions here. An older version is late or replayed, and an equal one is the same
    decision read again; neither changes anything. Not locked: an owner that shares it across
    threads offers under its own lock (reads need none)."""

    def __init__(self) -> None:
        self._by_key: dict[str, Decision] = {}

    def offer(self, decision: Decision) -> bool:
        """Keep `decision` if its version is higher than the one known for its key. True if kept."""
        known = self._by_key.get(decision.key)
        if known is not None and decision.version <= known.version:
            return False
        self._by_key[decision.key] = decision
        return True

    def get(self, key: str) -> Decision | None:
        return self._by_key.get(key)

    def __iter__(self) -> Iterator[Decision]:
        return iter(list(self._by_key.values()))  # a copy: another thread may offer meanwhile

    def __len__(self) -> int:
        return len(self._by_key)
