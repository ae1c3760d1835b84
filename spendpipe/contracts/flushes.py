"""`ScopesFlushed`: the aggregator's announcement, once ClickHouse holds a flush, of which
scopes' totals changed. The enforcer re-evaluates exactly those scopes."""

from datetime import datetime
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict

MESSAGE_TYPE = "spendpipe.scopes_flushed.v1"


class ScopeRef(BaseModel):
    """One scope: its type (`key`, `user`, `team`, `team_member`, `org`, `end_user`, `tag`,
    `provider`, `global`) and its id (empty for `global`)."""

    model_config = ConfigDict(frozen=True)

    type: str
    id: str


class ScopesFlushed(BaseModel):
    """Which scopes' totals changed in one flush, announced once ClickHouse holds it. The enforcer
    re-evaluates exactly these scopes. Best effort: the totals are in ClickHouse either way."""

    model_config = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)

    schema_version: Literal[1] = 1
    flush_id: str
    flushed_at: AwareDatetime
    events: int
    """Events newly counted by this flush."""
    scopes: tuple[ScopeRef, ...]
    models: tuple[str, ...]
    """Models whose per-model totals changed."""
    latest_occurred_at: datetime | None = None
