"""The queries behind `spendpipe spend`: a scope's (or every scope's) totals in one window."""

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from spendpipe.contracts.scopes import ScopeType
from spendpipe.contracts.windows import Window, window_bounds


@dataclass(frozen=True)
class SpendQuery:
    scope_type: ScopeType
    scope_id: str | None
    """None lists every scope of the type."""
    window: Window
    at: datetime
    model: str | None = None
    """None: the all-models total; '*': one row per model; a name: that model."""
    limit: int = 50

    def sql(self) -> tuple[str, dict[str, Any]]:
        start, _ = window_bounds(self.window, self.at)
        where = [
            "window = {window:String}",
            "window_start = toDateTime({start:UInt32})",
            "scope_type = {scope_type:String}",
        ]
        parameters: dict[str, Any] = {
            "window": self.window.value,
            "start": int(start.timestamp()),
            "scope_type": self.scope_type.value,
            "limit": self.limit,
        }
        if self.scope_id is not None:
            where.append("scope_id = {scope_id:String}")
            parameters["scope_id"] = self.scope_id
        if self.model is None:
            where.append("model = ''")
        elif self.model != "*":
            where.append("model = {model:String}")
            parameters["model"] = self.model
        else:
            where.append("model != ''")
        sql = (
            "SELECT scope_id, model, sum(spend) AS spend, sum(requests) AS requests, "
            "sum(failures) AS failures, sum(prompt_tokens) AS prompt_tokens, "
            "sum(completion_tokens) AS completion_tokens, sum(total_tokens) AS total_tokens "
            f"FROM spend_totals WHERE {' AND '.join(where)} "
            "GROUP BY scope_id, model ORDER BY spend DESC, scope_id LIMIT {limit:UInt32}"
        )
        return sql, parameters
