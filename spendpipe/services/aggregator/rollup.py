"""Turning a batch of events into windowed totals per scope: pure, no I/O.

Three steps keep the per-event cost flat: events are summed per (minute, attribution, model);
each of those groups is added to its scopes x {all models, its model} per minute; each
(minute, scope, model) total fans out to the calendar windows. A batch of thousands of events
from a few hundred keys becomes a few thousand rows, inserted as one block.
"""

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, localcontext
from functools import lru_cache
from typing import TypeVar

from spendpipe.schemas.events import SpendEvent
from spendpipe.schemas.money import MONEY_CONTEXT
from spendpipe.schemas.scopes import ALL_MODELS, Scope, scopes_of
from spendpipe.schemas.windows import Window, window_start

WATERMARK_WINDOW = "watermark"
INGEST_SCOPE_TYPE = "ingest"
NO_OFFSET = -1

TOTALS_COLUMNS = (
    "window",
    "window_start",
    "scope_type",
    "scope_id",
    "model",
    "spend",
    "requests",
    "failures",
    "cache_hits",
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
    "ingest_offset",
)


@dataclass(slots=True)
class Totals:
    spend: Decimal = Decimal(0)
    requests: int = 0
    failures: int = 0
    cache_hits: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0

    def add(self, other: "Totals") -> None:
        self.spend += other.spend
        self.requests += other.requests
        self.failures += other.failures
        self.cache_hits += other.cache_hits
        self.prompt_tokens += other.prompt_tokens
        self.completion_tokens += other.completion_tokens
        self.total_tokens += other.total_tokens

    def add_event(self, event: SpendEvent) -> None:
        self.spend += event.cost
        self.requests += 1
        self.failures += event.status == "failure"
        self.cache_hits += event.cache_hit
        self.prompt_tokens += event.prompt_tokens
        self.completion_tokens += event.completion_tokens
        self.total_tokens += event.total_tokens


TotalsKey = tuple[Window, int, Scope, str]
"""(window, window start in Unix seconds, scope, model or '' for all models)"""

K = TypeVar("K")

_GroupKey = tuple[int, str | None, str | None, str | None, str | None, str | None, str]


@dataclass
class Rollup:
    totals: dict[TotalsKey, Totals] = field(default_factory=dict)

    @property
    def scopes(self) -> set[Scope]:
        return {key[2] for key in self.totals}

    @property
    def models(self) -> set[str]:
        return {key[3] for key in self.totals if key[3] != ALL_MODELS}


def roll_up(events: Iterable[SpendEvent]) -> Rollup:
    """Exact totals of `events` per window, scope and model. Raises `decimal.Inexact` rather
    than round a sum."""
    with localcontext(MONEY_CONTEXT):
        groups: dict[_GroupKey, Totals] = {}
        for event in events:
            minute = window_start(Window.MINUTE, int(event.occurred_at.timestamp()))
            key = (
                minute,
                event.key_hash,
                event.user_id,
                event.team_id,
                event.org_id,
                event.end_user,
                event.billed_model,
            )
            group = groups.get(key)
            if group is None:
                group = groups[key] = Totals()
            group.add_event(event)
        # per minute and scope first: the global, org and team scopes of many groups collapse here
        minutes: dict[tuple[int, Scope, str], Totals] = {}
        for (minute, key_hash, user, team, org, end_user, model), group in groups.items():
            for scope in scopes_of(key_hash, user, team, org, end_user):
                _accumulate(minutes, (minute, scope, ALL_MODELS), group)
                _accumulate(minutes, (minute, scope, model), group)
        rollup = Rollup()
        for (minute, scope, model), totals in minutes.items():
            for window, start in _window_starts(minute):
                _accumulate(rollup.totals, (window, start, scope, model), totals)
        return rollup


def _accumulate(totals: dict[K, Totals], key: K, group: Totals) -> None:
    existing = totals.get(key)
    if existing is None:
        existing = totals[key] = Totals()
    existing.add(group)


@lru_cache(maxsize=4096)
def _window_starts(minute: int) -> tuple[tuple[Window, int], ...]:
    return tuple((window, window_start(window, minute)) for window in Window)


def totals_columns(rollup: Rollup, watermarks: dict[str, int]) -> list[Sequence[object]]:
    """Column-oriented rows for `spend_totals`: the totals, then one watermark row per
    `<topic>:<partition>` with the highest offset the totals include."""
    rows: list[tuple[object, ...]] = [
        (
            window.value,
            start,
            scope.type.value,
            scope.id,
            model,
            t.spend,
            t.requests,
            t.failures,
            t.cache_hits,
            t.prompt_tokens,
            t.completion_tokens,
            t.total_tokens,
            NO_OFFSET,
        )
        for (window, start, scope, model), t in rollup.totals.items()
    ]
    rows.extend(
        (WATERMARK_WINDOW, 0, INGEST_SCOPE_TYPE, source, ALL_MODELS, Decimal(0), 0, 0, 0, 0, 0, 0, offset)
        for source, offset in watermarks.items()
    )
    return [list(column) for column in zip(*rows, strict=True)] if rows else []
