"""The read model of `spend_totals`: which rows hold spend, and how a scope's spend is read.

After merges the table has one row per (window, window_start, scope_type, scope_id, model);
`model = ''` is the total over all models. It is an `AggregatingMergeTree`, so every read sums.
The rows of `WATERMARK_WINDOW` are the aggregator's bookkeeping and hold no spend; every read
here names a calendar window, so none of them sees one.

A cap's spend comes from the rows of one grain (`grain`): a calendar duration reads its own
window's row; an epoch-aligned duration sums the finest rows that tile it (days for multiples of
a day, hours for multiples of an hour, else minutes); a lifetime cap sums every month. Day, week
and month rows start on the deployment's calendar (`windows.Calendar`), which the store records
(`store/calendar.py`): a reader passes the same calendar, so a window's rows are the ones it names. A cap
whose budget was reset inside its window (`SpendReset`, after the window's start) sums the
minutes from the reset's minute to the window's end, less what that minute held at the reset:
reads after a reset cost up to one row per minute since it (a month's is about 43,000).

The enforcer, `spendpipe spend` and the BudgetManager all read through `SpendTotals`, each on
the `SqlSource` it has: the store itself, the SQL endpoint, or a ClickHouse server.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, NamedTuple, Protocol

from spendpipe.contracts.budgets import Cap
from spendpipe.contracts.durations import Duration
from spendpipe.contracts.scopes import Scope, ScopeType
from spendpipe.contracts.windows import UTC_SUNDAY, Calendar, Window, window_bounds
from spendpipe.store.sql_endpoint.client import Result, SqlSource

WATERMARK_WINDOW = "watermark"
"""The `window` of the aggregator's bookkeeping rows: one per `<topic>:<partition>` (the
`scope_id`), whose `ingest_offset` is the highest offset the totals include."""
INGEST_SCOPE_TYPE = "ingest"
"""The `scope_type` of the bookkeeping rows."""

_FOREVER = 2**32 - 1

_RowsKey = tuple[str, str, str, str]
"""(scope type, scope id, model, window) of `spend_totals` rows."""


class Grain(NamedTuple):
    """The rows to sum for a cap's window: those of `rows` starting in [start, end)."""

    rows: Window
    start: int
    end: int
    reset: int | None
    """When the cap's window ends; None for a lifetime cap."""


def grain(cap: Cap, now: int, calendar: Calendar = UTC_SUNDAY) -> Grain:
    """The rows that make up the cap's window containing `now`, from its reset on if any."""
    whole = _window_grain(cap, now, calendar)
    if cap.reset is not None and cap.reset.at >= whole.start:
        return Grain(Window.MINUTE, cap.reset.at, whole.end, whole.reset)
    return whole


def reset_applies(cap: Cap, now: int, calendar: Calendar = UTC_SUNDAY) -> bool:
    """The cap's budget was reset after its current window started."""
    return cap.reset is not None and cap.reset.at >= _window_grain(cap, now, calendar).start


def spent_before_reset(cap: Cap, model: str, now: int, calendar: Calendar = UTC_SUNDAY) -> Decimal:
    """What to take off the rows `grain` names: the reset minute's spend before the reset."""
    if cap.reset is None or not reset_applies(cap, now, calendar):
        return Decimal(0)
    return cap.reset.model_spent_before.get(model, Decimal(0)) if model else cap.reset.spent_before


MOST_STARTS = 8
"""Sets of keys a read asks for at most: caps reset at many different minutes (one per user of a
BudgetManager) would otherwise each add a condition to the statement."""


def _by_start(since: dict[_RowsKey, int]) -> list[tuple[int, list[_RowsKey]]]:
    """The keys grouped by the start their rows are read from: the `MOST_STARTS - 1` largest
    groups as they are, the rest in one group read from the earliest of their starts (more rows
    than they need; `measure_many` sums only each cap's own)."""
    groups: dict[int, list[_RowsKey]] = {}
    for key, start in since.items():
        groups.setdefault(start, []).append(key)
    ordered = sorted(groups.items(), key=lambda group: len(group[1]), reverse=True)
    if len(ordered) <= MOST_STARTS:
        return ordered
    kept, rest = ordered[: MOST_STARTS - 1], ordered[MOST_STARTS - 1 :]
    return [*kept, (min(start for start, _ in rest), [key for _, keys in rest for key in keys])]


def _window_grain(cap: Cap, now: int, calendar: Calendar) -> Grain:
    if cap.duration is None:
        return Grain(Window.MONTH, 0, _FOREVER, None)
    start, end = cap.duration.bounds(now, calendar)
    if cap.duration.calendar is not None:
        return Grain(cap.duration.calendar, start, end, end)
    seconds = cap.duration.seconds
    rows = Window.DAY if seconds % 86_400 == 0 else Window.HOUR if seconds % 3600 == 0 else Window.MINUTE
    return Grain(rows, start, end, end)


@dataclass(frozen=True)
class Measurement:
    """A cap's spend in its current window."""

    cap: Cap
    spend: Decimal
    end: int | None
    """When the cap's window resets, in Unix seconds; None for a lifetime cap."""


class Capped(Protocol):
    """A scope's spend on one model ('' for all models), under some caps."""

    @property
    def scope(self) -> Scope: ...

    @property
    def model(self) -> str: ...

    @property
    def caps(self) -> tuple[Cap, ...]: ...


@dataclass(frozen=True)
class SpendQuery:
    """A scope's (or every scope's) totals in one window: the query behind `spendpipe spend`."""

    scope_type: ScopeType
    scope_id: str | None
    """None lists every scope of the type."""
    window: Window
    at: datetime
    model: str | None = None
    """None: the all-models total; '*': one row per model; a name: that model."""
    limit: int = 50

    def sql(self, calendar: Calendar = UTC_SUNDAY) -> tuple[str, dict[str, Any]]:
        start, _ = window_bounds(self.window, self.at, calendar)
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


@dataclass(frozen=True)
class ModelSpend:
    """A scope's spend per model, and the watermarks (partition -> highest offset) of the events
    topic, read from one snapshot: an event at or below its partition's mark is in `spend`."""

    spend: dict[str, Decimal]
    watermarks: dict[int, int]


class SpendTotals:
    """Reads `spend_totals` through `sql`, whose day, week and month rows start on `calendar`.
    Blocking calls; no I/O until one is made."""

    def __init__(self, *, sql: SqlSource, calendar: Calendar = UTC_SUNDAY) -> None:
        self._sql = sql
        self.calendar = calendar

    def in_window(self, query: SpendQuery) -> Result:
        return self._sql.query(*query.sql(self.calendar))

    def by_model(self, scope: Scope, cap: Cap, now: int, *, events_topic: str) -> "ModelSpend":
        """The scope's spend per model (the all-models row apart) in the rows `grain` names for
        the cap at `now` (before taking off `spent_before_reset`), and the watermark of each
        partition of `events_topic`, in one query: one snapshot of the table, so the spend is
        exactly that of the events at or below the watermarks."""
        window, start, end, _ = grain(cap, now, self.calendar)
        _, rows = self._sql.query(
            "SELECT window = {mark:String} AS is_mark, if(is_mark, scope_id, model), sum(spend), "
            "max(ingest_offset) FROM spend_totals WHERE (scope_type = {scope_type:String} "
            "AND scope_id = {scope_id:String} AND model != '' AND window = {w:String} "
            "AND window_start >= toDateTime({s:UInt32}) AND window_start < toDateTime({e:UInt32})) "
            "OR (window = {mark:String} AND scope_type = {ingest:String} AND startsWith(scope_id, {topic:String})) "
            "GROUP BY is_mark, if(is_mark, scope_id, model)",
            {
                "scope_type": scope.type.value,
                "scope_id": scope.id,
                "w": window.value,
                "s": start,
                "e": end,
                "mark": WATERMARK_WINDOW,
                "ingest": INGEST_SCOPE_TYPE,
                "topic": f"{events_topic}:",
            },
        )
        spend: dict[str, Decimal] = {}
        watermarks: dict[int, int] = {}
        for is_mark, name, total, offset in rows:
            if is_mark:
                partition = str(name).removeprefix(f"{events_topic}:")
                if partition.isdigit():
                    watermarks[int(partition)] = int(offset)
            else:
                spend[str(name)] = Decimal(str(total))
        return ModelSpend(spend, watermarks)

    def measure(self, target: Capped, now: int) -> list[Measurement]:
        return self.measure_many([target], now)[0]

    def measure_many(self, targets: Sequence[Capped], now: int) -> list[list[Measurement]]:
        """Each target's spend in each of its caps' current windows, in one query: the rows of
        every (scope, model, window) read since the earliest start any cap needs of it. Rows are
        asked for in one set per distinct start (caps of one duration share it; `_by_start`), so
        the query costs a set lookup per row, whatever the number of targets. It binds arrays of tuples:
        every `SqlSource` carries them, the SQL endpoint too (as ClickHouse query parameters)."""
        shared: dict[tuple[Duration | None, int | None], Grain] = {}

        def grain_of(cap: Cap) -> Grain:
            """Caps of one duration and reset share their grain: computed once per read."""
            key = (cap.duration, cap.reset.at if cap.reset else None)
            if key not in shared:
                shared[key] = grain(cap, now, self.calendar)
            return shared[key]

        grains = [[grain_of(cap) for cap in target.caps] for target in targets]
        since: dict[_RowsKey, int] = {}
        for target, target_grains in zip(targets, grains, strict=True):
            for window, start, _, _ in target_grains:
                key = (target.scope.type.value, target.scope.id, target.model, window.value)
                since[key] = min(start, since.get(key, start))
        if not since:
            return [[] for _ in targets]
        parameters: dict[str, Any] = {}
        conditions = []
        for n, (start, keys) in enumerate(_by_start(since)):
            parameters[f"keys{n}"], parameters[f"since{n}"] = keys, start
            conditions.append(
                f"((scope_type, scope_id, model, window) IN {{keys{n}:Array(Tuple(String, String, String, String))}} "
                f"AND window_start >= toDateTime({{since{n}:UInt32}}))"
            )
        _, rows = self._sql.query(
            "SELECT toString(scope_type), scope_id, model, toString(window), toUInt32(window_start), sum(spend) "
            f"FROM spend_totals WHERE {' OR '.join(conditions)} GROUP BY ALL",
            parameters,
        )
        found: dict[_RowsKey, list[tuple[int, Decimal]]] = {}
        for scope_type, scope_id, model, window, window_start, spend in rows:
            found.setdefault((scope_type, scope_id, model, window), []).append((int(window_start), Decimal(spend)))
        measured = []
        for target, target_grains in zip(targets, grains, strict=True):
            measurements = []
            for cap, (window, start, end, reset) in zip(target.caps, target_grains, strict=True):
                key = (target.scope.type.value, target.scope.id, target.model, window.value)
                spend = sum((s for at, s in found.get(key, ()) if start <= at < end), Decimal(0))
                spend = max(spend - spent_before_reset(cap, target.model, now, self.calendar), Decimal(0))
                measurements.append(Measurement(cap, spend, reset))
            measured.append(measurements)
        return measured

    def spent_since(self, targets: Sequence[Capped], since: int) -> list[Decimal]:
        """Each target's spend in the minutes that start at or after `since` (the minute rows,
        the one under way included), in one query: the recent spend a burn rate is read from."""
        keys = sorted({(t.scope.type.value, t.scope.id, t.model) for t in targets})
        if not keys:
            return [Decimal(0) for _ in targets]
        _, rows = self._sql.query(
            "SELECT toString(scope_type), scope_id, model, sum(spend) FROM spend_totals "
            "WHERE window = {minute:String} AND window_start >= toDateTime({since:UInt32}) "
            "AND (scope_type, scope_id, model) IN {keys:Array(Tuple(String, String, String))} "
            "GROUP BY ALL",
            {"minute": Window.MINUTE.value, "since": since, "keys": keys},
        )
        found = {(scope_type, scope_id, model): Decimal(spend) for scope_type, scope_id, model, spend in rows}
        return [found.get((t.scope.type.value, t.scope.id, t.model), Decimal(0)) for t in targets]
