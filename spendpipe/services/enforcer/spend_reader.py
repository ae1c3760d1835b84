"""Reading a target's spend in each of its caps' current windows from `spend_totals`.

A calendar duration reads its own window's row. An epoch-aligned duration sums the finest
rows that tile it (days for multiples of a day, hours for multiples of an hour, else minutes).
A lifetime cap sums every month. One query per target, one scan of the scope's rows.
"""

from decimal import Decimal
from typing import Any

from spendpipe.platform.clickhouse import ClickhouseStore
from spendpipe.schemas.budgets import Cap
from spendpipe.schemas.windows import Window
from spendpipe.services.enforcer.targets import Target
from spendpipe.services.enforcer.verdict import Measurement

_FOREVER = 2**32 - 1


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
        grains = [grain(cap, now) for cap in target.caps]
        parameters: dict[str, Any] = {
            "scope_type": target.scope.type.value,
            "scope_id": target.scope.id,
            "model": target.model,
        }
        sums = []
        for n, (window, start, end, _) in enumerate(grains):
            sums.append(
                f"sumIf(spend, window = {{w{n}:String}} AND window_start >= toDateTime({{s{n}:UInt32}}) "
                f"AND window_start < toDateTime({{e{n}:UInt32}}))"
            )
            parameters |= {f"w{n}": window.value, f"s{n}": start, f"e{n}": end}
        row = self._clickhouse.rows(
            f"SELECT {', '.join(sums)} FROM spend_totals WHERE scope_type = {{scope_type:String}} "
            "AND scope_id = {scope_id:String} AND model = {model:String}",
            parameters,
        )[0]
        return [
            Measurement(cap, Decimal(spend), reset)
            for cap, spend, (_, _, _, reset) in zip(target.caps, row, grains, strict=True)
        ]
