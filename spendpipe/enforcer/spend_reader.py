"""Reading a target's spend in each of its caps' current windows from `spend_totals`.

A calendar duration reads its own window's row. An epoch-aligned duration sums the finest
rows that tile it (days for multiples of a day, hours for multiples of an hour, else minutes).
A lifetime cap sums every month. One query reads every target a flush touched.
"""

from collections.abc import Sequence
from decimal import Decimal

from spendpipe.contracts.budgets import Cap
from spendpipe.contracts.windows import Window
from spendpipe.enforcer.targets import Target
from spendpipe.enforcer.verdict import Measurement
from spendpipe.platform.clickhouse import ClickhouseStore

_FOREVER = 2**32 - 1

_RowsKey = tuple[str, str, str, str]
"""(scope type, scope id, model, window) of `spend_totals` rows."""


def grain(cap: Cap, now: int) -> tuple[Window, int, int, int | None]:
    """(window rows to sum, from, to, reset) for the cap's window containing `now`."""
    if cap.duration is None:
        return Window.MONTH, 0, _FOREVER, None
    start, end = cap.duration.bounds(now)
    if cap.duration.calendar is not None:
        return cap.duration.calendar, start, end, end
    seconds = cap.duration.seconds
    rows = Window.DAY if seconds % 86_400 == 0 else Window.HOUR if seconds % 3600 == 0 else Window.MINUTE
    return rows, start, end, end


class SpendReader:
    def __init__(self, *, clickhouse: ClickhouseStore) -> None:
        self._clickhouse = clickhouse

    def measure(self, target: Target, now: int) -> list[Measurement]:
        return self.measure_many([target], now)[0]

    def measure_many(self, targets: Sequence[Target], now: int) -> list[list[Measurement]]:
        """Each target's spend in each of its caps' current windows, in one query: the rows of
        every (scope, model, window) read since the earliest start any cap needs of it."""
        grains = [[grain(cap, now) for cap in target.caps] for target in targets]
        since: dict[_RowsKey, int] = {}
        for target, target_grains in zip(targets, grains, strict=True):
            for window, start, _, _ in target_grains:
                key = (target.scope.type.value, target.scope.id, target.model, window.value)
                since[key] = min(start, since.get(key, start))
        if not since:
            return [[] for _ in targets]
        rows = self._clickhouse.rows(
            "SELECT toString(scope_type), scope_id, model, toString(window), toUInt32(window_start), sum(spend) "
            "FROM spend_totals "
            "WHERE (scope_type, scope_id, model, window) IN {keys:Array(Tuple(String, String, String, String))} "
            "AND window_start >= toDateTime({since:Array(UInt32)}[indexOf({keys:Array(Tuple(String, String, String, "
            "String))}, (toString(scope_type), scope_id, model, toString(window)))]) "
            "GROUP BY ALL",
            {"keys": list(since), "since": list(since.values())},
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
                measurements.append(Measurement(cap, spend, reset))
            measured.append(measurements)
        return measured
