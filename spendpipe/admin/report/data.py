"""What the report shows, read once: spend per bucket by team and by model, each budgeted scope's
spend against its caps, decisions, top spenders. Every amount stays a Decimal.

Reads go through the analyst views (`spend_by_scope`, `spend_by_model`) on the `SqlSource` the
CLI has, budgets through `BudgetAdmin.current()`, and the caps' exact current spend through
`SpendTotals.measure_many`, the enforcer's own read: the burn-down's numbers are the ones the
enforcer decides on. Each cap's burn-rate projection (when it is reached at the current rate) is
the enforcer's too (`enforcer.burn_rate.cap_projection`, over the same lookback setting).
"""

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from spendpipe.contracts.budgets import Budget, Cap
from spendpipe.contracts.decisions import Decision
from spendpipe.contracts.scopes import Scope
from spendpipe.contracts.windows import UTC_SUNDAY, Calendar, Window, window_bounds, window_end
from spendpipe.enforcer.burn_rate import Projection, cap_projection, lookback_start
from spendpipe.store.sql_endpoint.client import SqlSource
from spendpipe.store.totals import Measurement, SpendTotals

SERIES_SHOWN = 8
"""Series drawn one by one; the rest are summed into `OTHERS` so a chart stays readable."""
OTHERS = "(all others)"
TOP_SPENDERS = 5
"""Per scope type."""


@dataclass(frozen=True)
class Period:
    window: Window
    start: datetime
    end: datetime
    grain: Window
    """The rows each bar sums: hours over up to two days, days beyond."""
    calendar: Calendar = UTC_SUNDAY

    @classmethod
    def of(
        cls, window: Window, now: datetime, since: datetime | None = None, calendar: Calendar = UTC_SUNDAY
    ) -> "Period":
        start, end = window_bounds(window, now, calendar)
        start = since or start
        grain = Window.HOUR if end - start <= timedelta(days=2) else Window.DAY
        return cls(window, start, end, grain, calendar)

    def buckets(self) -> list[datetime]:
        """The start of each bar's row: a day bar is a day of the calendar (23 or 25 hours across DST)."""
        first, _ = window_bounds(self.grain, self.start, self.calendar)
        at, end, found = int(first.timestamp()), int(self.end.timestamp()), []
        while at < end:
            found.append(datetime.fromtimestamp(at, UTC))
            at = window_end(self.grain, at, self.calendar)
        return found

    def label(self, at: datetime) -> str:
        return f"{at:%H:%M}" if self.grain is Window.HOUR else f"{at:%m-%d}"


@dataclass(frozen=True)
class Burn:
    """A budgeted scope: its spend per bucket, and each cap's exact spend now."""

    budget: Budget
    per_bucket: list[Decimal]
    caps: list[Measurement]
    projections: list[Projection | None]
    """One per cap: when it is reached at the current rate (None: reached, lifetime, no rate yet)."""


@dataclass
class ReportData:
    period: Period
    generated_at: datetime
    buckets: list[datetime]
    by_team: dict[str, list[Decimal]] = field(default_factory=dict)
    by_model: dict[str, list[Decimal]] = field(default_factory=dict)
    team_totals: dict[str, Decimal] = field(default_factory=dict)
    burns: list[Burn] = field(default_factory=list)
    blocks: list[Decision] = field(default_factory=list)
    recent: list[Decision] = field(default_factory=list)
    top: list[Sequence[Any]] = field(default_factory=list)


@dataclass(frozen=True)
class _Target:
    scope: Scope
    model: str
    caps: tuple[Cap, ...]


_IN_PERIOD = "window = {g:String} AND window_start >= toDateTime({s:UInt32}) AND window_start < toDateTime({e:UInt32})"


class _Reader:
    """The period's rows of one view, bucketed: `{name: [spend per bucket]}`."""

    def __init__(self, sql: SqlSource, period: Period, buckets: list[datetime]) -> None:
        self.sql = sql
        self.calendar = period.calendar
        self.span = {"g": period.grain.value, "s": int(period.start.timestamp()), "e": int(period.end.timestamp())}
        self._index = {int(at.timestamp()): n for n, at in enumerate(buckets)}

    def series(
        self, name: str, view: str, where: str, parameters: dict[str, Any] | None = None
    ) -> dict[str, list[Decimal]]:
        query = f"SELECT {name}, toUInt32(window_start), spend FROM {view} WHERE {_IN_PERIOD} AND {where}"
        series: dict[str, list[Decimal]] = {}
        for key, start, spend in self.sql.query(query, {**self.span, **(parameters or {})})[1]:
            values = series.setdefault(str(key), [Decimal(0)] * len(self._index))
            if int(start) in self._index:
                values[self._index[int(start)]] += Decimal(spend)
        return series


def gather(
    sql: SqlSource,
    budgets: list[Budget],
    decisions: list[Decision],
    period: Period,
    now: datetime,
    *,
    lookback_minutes: int,
) -> ReportData:
    data = ReportData(period=period, generated_at=now, buckets=period.buckets())
    reader = _Reader(sql, period, data.buckets)
    teams = reader.series("scope_id", "spend_by_scope", "scope_type = 'team'")
    data.team_totals = {name: sum(values, Decimal(0)) for name, values in teams.items()}
    data.by_team = _fold(teams)
    data.by_model = _fold(reader.series("model", "spend_by_model", "scope_type = 'global'"))
    _, top = sql.query(
        "SELECT scope_type, scope_id, sum(spend) AS spend, sum(requests) AS requests FROM spend_by_scope "
        f"WHERE {_IN_PERIOD} AND scope_type != 'global' GROUP BY scope_type, scope_id "
        "ORDER BY scope_type, spend DESC, scope_id LIMIT {n:UInt32} BY scope_type",
        {**reader.span, "n": TOP_SPENDERS},
    )
    data.top = list(top)
    data.burns = _burns(reader, budgets, len(data.buckets), int(now.timestamp()), lookback_minutes)
    data.blocks = sorted((d for d in decisions if d.in_force(now)), key=lambda d: d.key)
    data.recent = sorted(decisions, key=lambda d: d.decided_at, reverse=True)[:20]
    return data


def _fold(series: dict[str, list[Decimal]]) -> dict[str, list[Decimal]]:
    """The biggest `SERIES_SHOWN` series by total, then the rest summed."""
    ranked = sorted(series.items(), key=lambda item: (-sum(item[1], Decimal(0)), item[0]))
    shown = dict(ranked[:SERIES_SHOWN])
    rest = [values for _, values in ranked[SERIES_SHOWN:]]
    if rest:
        shown[OTHERS] = [sum(column, Decimal(0)) for column in zip(*rest, strict=True)]
    return shown


def _burns(reader: _Reader, budgets: list[Budget], buckets: int, now: int, lookback_minutes: int) -> list[Burn]:
    capped = [b for b in budgets if b.hard_caps()]
    if not capped:
        return []
    scopes = [Scope.parse(b.scope) for b in capped]
    per_scope = reader.series(
        "concat(toString(scope_type), ':', scope_id)",
        "spend_by_scope",
        "(toString(scope_type), scope_id) IN {keys:Array(Tuple(String, String))}",
        {"keys": [(s.type.value, s.id) for s in scopes]},
    )
    targets = [_Target(scope, "", b.hard_caps()) for scope, b in zip(scopes, capped, strict=True)]
    totals = SpendTotals(sql=reader.sql, calendar=reader.calendar)
    measured = totals.measure_many(targets, now)
    since = lookback_start(0, now, lookback_minutes)
    recent = totals.spent_since(targets, since)
    return [
        Burn(
            b,
            per_scope.get(f"{s.type.value}:{s.id}", [Decimal(0)] * buckets),
            caps,
            [cap_projection(m, spent, since, now, reader.calendar) for m in caps],
        )
        for b, s, caps, spent in zip(capped, scopes, measured, recent, strict=True)
    ]


def utc(at: datetime) -> datetime:
    return at.replace(tzinfo=at.tzinfo or UTC)
