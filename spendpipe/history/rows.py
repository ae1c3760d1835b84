"""What one budget or decision record becomes in `budget_history` / `decision_history`.

A budget gives one row per cap the enforcer checks for its own scope (`enforcer.targets`,
`direct_targets`: `max_budget`, each `budget_limits` entry, each `model_max_budget` model), with
the rows of `spend_totals` that make up the cap's window (`store.totals.grain`), so the
`budget_utilisation` view sums exactly what the enforcer sums. A record with no cap on spend
(a deletion, or rate limits only) still gives one row, with a NULL cap: the latest record of a
scope decides whether it has a budget in force.
"""

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from spendpipe.contracts.budgets import Budget, Cap
from spendpipe.contracts.decisions import Decision
from spendpipe.contracts.scopes import Scope
from spendpipe.enforcer.targets import direct_targets
from spendpipe.store.totals import grain

DECISION_TABLE = "decision_history"
DECISION_COLUMNS = (
    "scope",
    "scope_type",
    "scope_id",
    "model",
    "kind",
    "rate_limit_type",
    "version",
    "blocked",
    "reason",
    "window",
    "spend",
    "cap",
    "decided_at",
    "expires_at",
)
BUDGET_TABLE = "budget_history"
BUDGET_COLUMNS = (
    "topic",
    "partition",
    "offset",
    "cap_index",
    "published_at",
    "scope",
    "scope_type",
    "scope_id",
    "deleted",
    "model",
    "duration",
    "calendar",
    "period_s",
    "rows_window",
    "cap",
    "spend_reset_at",
    "budget",
    "version",
)
LIFETIME = "lifetime"


@dataclass(frozen=True)
class RecordAt:
    """Where a budget record sits: its identity in `budget_history`, and when it was published."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int


def decision_row(decision: Decision) -> tuple[Any, ...]:
    scope_type, scope_id = _scope_parts(decision.scope)
    return (
        decision.scope,
        scope_type,
        scope_id,
        decision.model,
        decision.kind,
        decision.rate_limit_type or "",
        decision.version,
        decision.blocked,
        decision.reason,
        decision.window or "",
        decision.spend,
        decision.cap,
        decision.decided_at,
        decision.expires_at,
    )


def budget_rows(
    at: RecordAt, scope: str, budget: Budget | None, document: str, version: int = 0
) -> list[tuple[Any, ...]]:
    """The rows of one budget record; `budget` None is a deletion of `scope`'s budget. `version`
    is the record's, which orders a scope's records (`budget_utilisation` takes the highest): the
    record's Kafka timestamp is its writer's choice, and a replayed copy may carry any."""
    scope_type, scope_id = _scope_parts(scope)
    published = datetime.fromtimestamp(at.timestamp_ms / 1000, UTC)
    head = (at.topic, at.partition, at.offset)
    caps = [(target.model, cap) for target in direct_targets(budget) for cap in target.caps] if budget else []
    reset = budget.spend_reset if budget else None
    reset_at = datetime.fromtimestamp(reset.at, UTC) if reset else None
    if not caps:
        return [
            (
                *head,
                0,
                published,
                scope,
                scope_type,
                scope_id,
                budget is None,
                "",
                "",
                "",
                0,
                "",
                None,
                None,
                document,
                version,
            )
        ]
    return [
        (
            *head,
            n,
            published,
            scope,
            scope_type,
            scope_id,
            False,
            model,
            *_window(cap),
            cap.limit,
            reset_at,
            document,
            version,
        )
        for n, (model, cap) in enumerate(caps)
    ]


def _window(cap: Cap) -> tuple[str, str, int, str]:
    """duration, calendar, period_s, rows_window."""
    rows = grain(Cap(cap.duration, cap.limit), 0).rows.value  # without a reset: the whole window's rows
    if cap.duration is None:
        return "", LIFETIME, 0, rows
    calendar = cap.duration.calendar.value if cap.duration.calendar is not None else ""
    return cap.duration.text, calendar, cap.duration.seconds, rows


def _scope_parts(scope: str) -> tuple[str, str]:
    try:
        parsed = Scope.parse(scope)
    except ValueError:
        return "", scope
    return parsed.type.value, parsed.id
