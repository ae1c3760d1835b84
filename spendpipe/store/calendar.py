"""The calendar a store's totals were built on, recorded in the store, and the refusal of a
service configured with another one.

The day, week and month rows of `spend_totals` start on the deployment's calendar
(`SPENDPIPE_BUDGET_TIMEZONE`, `SPENDPIPE_WEEK_START`). Rows built on one calendar read on another
give wrong windows without any error, so the store records the calendar in `store_calendar`
(migration 0009) and every service compares its own with it:

- `settle_calendar` (the processes that migrate the store: `spendpipe run ...`, and the aggregator
  before its first rollup) records the calendar if none is recorded yet, then compares. The first
  row wins, so two processes that start together with different settings cannot both win. A store
  that already holds totals but no calendar was built before the setting existed, on UTC and Sunday:
  that is what gets recorded for it.
- `check_calendar` (read-only readers: the enforcer, `spendpipe spend` and `report`, the
  BudgetManager) compares when a calendar is recorded.

Either raises `CalendarMismatchError` naming both calendars and what to do.

Once agreed, `settle_calendar` also writes the calendar's day, week and month windows from a year
back to ten years ahead into `calendar_windows` (migration 0010), computed by `windows.window_start`
and `window_end`: the SQL views find the zone's current windows there (`top_spenders`,
`budget_utilisation`), so no SQL computes a window start of its own.
"""

import time

from spendpipe.contracts.windows import UTC_SUNDAY, Calendar, Window, local_date, window_end, window_start
from spendpipe.platform.clickhouse import ClickhouseStore
from spendpipe.platform.settings import SettingsError
from spendpipe.store.sql_endpoint.client import SqlSource

_EPOCH_DAY = local_date(0, UTC_SUNDAY)
_BACK_S = 400 * 86_400
_AHEAD_S = 3_660 * 86_400
_RECORDED = "SELECT timezone, week_start FROM store_calendar ORDER BY recorded_at, timezone, week_start LIMIT 1"
_HAS_TOTALS = "SELECT count() > 0 FROM (SELECT 1 FROM spend_totals WHERE window != 'watermark' LIMIT 1)"


class CalendarMismatchError(SettingsError):
    """The service's calendar is not the one the store's totals were built on: a setting to fix."""


def recorded_calendar(sql: SqlSource) -> Calendar | None:
    _, rows = sql.query(_RECORDED)
    return Calendar(str(rows[0][0]), str(rows[0][1])) if rows else None  # type: ignore[arg-type]


def settle_calendar(store: ClickhouseStore, calendar: Calendar) -> Calendar:
    """Record `calendar` in a store that has none, then refuse if the store's is another one.
    Also checks that ClickHouse knows the zone (its zone data is its own, not Python's)."""
    store.query("SELECT toTimeZone(now(), {zone:String})", {"zone": calendar.timezone})
    recorded = recorded_calendar(store)
    if recorded is None:
        _, rows = store.query(_HAS_TOTALS)
        first = UTC_SUNDAY if rows and rows[0][0] else calendar
        store.command(
            "INSERT INTO store_calendar (timezone, week_start) VALUES ({zone:String}, {week:String})",
            {"zone": first.timezone, "week": first.week_start.value},
        )
        recorded = recorded_calendar(store)
    agreed = _agree(recorded, calendar)
    _write_windows(store, agreed, int(time.time()))
    return agreed


def _write_windows(store: ClickhouseStore, calendar: Calendar, now: int) -> None:
    """The calendar's day, week and month windows around `now` into `calendar_windows` (again at
    every start: the table keeps one row per window and start)."""
    windows: list[str] = []
    starts: list[int] = []
    numbers: list[int] = []
    for window in (Window.DAY, Window.WEEK, Window.MONTH):
        at = window_start(window, now - _BACK_S, calendar)
        while at < now + _AHEAD_S:
            windows.append(window.value)
            starts.append(at)
            numbers.append((local_date(at, calendar) - _EPOCH_DAY).days if window is Window.DAY else 0)
            at = window_end(window, at, calendar)
    store.insert_columns("calendar_windows", [windows, starts, numbers], ["window", "start", "day_number"])


def check_calendar(sql: SqlSource, calendar: Calendar) -> None:
    """Refuse if the store records a calendar other than `calendar` (nothing recorded: no totals
    to disagree with yet; the first process that migrates the store records its own)."""
    recorded = recorded_calendar(sql)
    if recorded is not None:
        _agree(recorded, calendar)


def _agree(recorded: Calendar | None, calendar: Calendar) -> Calendar:
    if recorded is None or recorded == calendar:
        return calendar
    raise CalendarMismatchError(
        f"this store's totals are built on {recorded} but this service is configured with {calendar}: "
        f"set SPENDPIPE_BUDGET_TIMEZONE={recorded.timezone} and SPENDPIPE_WEEK_START={recorded.week_start.value} "
        "as the store has them, or start from a new store (docs/budgets.md#timezone-and-week-start)"
    )
