"""Calendar windows, the grain of the totals the aggregator keeps, on a deployment's calendar.

A `Calendar` is the deployment-wide pair `SPENDPIPE_BUDGET_TIMEZONE` (an IANA zone, default UTC)
and `SPENDPIPE_WEEK_START` (sunday or monday, default sunday), LiteLLM's `timezone` setting and the
day its weeks reset on. `day` starts at midnight in the zone, `week` at midnight of the week's
first day, `month` on the 1st at midnight, each on the zone's wall clock: a day across a DST
change lasts 23 or 25 hours. Where midnight does not exist (a zone that moves its clocks at
00:00) the day starts at the change, its first instant. `minute` and `hour` are the same in every
zone: on the UTC clock (every zone's offset is whole minutes; in a zone whose offset is not whole
hours, such as +05:30, an hour window starts on the UTC hour, not on the zone's).

Every window start and end in spendpipe comes from here; the aggregator's rollup SQL computes the
same starts in ClickHouse (`aggregator/rollup.py`, held to these in several zones by
tests/integration/test_calendar_windows.py).

Hand-written, not LiteLLM's `duration_parser.get_next_standardized_reset_time`: that gives only
the next reset (a window's start is needed too), imports all of LiteLLM, and its hour arithmetic
replaces wall-clock fields, which around a DST change is not a partition of time. Its day, week
(Monday) and month resets are held to these in tests/unit/test_calendar_windows.py. Pure: pass the
instant in.
"""

import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

_DAY = 86_400
_EPOCH_DATE = date(1970, 1, 1)
_ZONE_NAME = re.compile(r"^[A-Za-z0-9_+\-/]{1,64}$")


class Window(StrEnum):
    MINUTE = "minute"
    HOUR = "hour"
    DAY = "day"
    WEEK = "week"
    MONTH = "month"


class WeekStart(StrEnum):
    SUNDAY = "sunday"
    MONDAY = "monday"

    @property
    def weekday(self) -> int:
        """The day's number in `date.weekday()` (Monday 0)."""
        return 6 if self is WeekStart.SUNDAY else 0


@dataclass(frozen=True)
class Calendar:
    """The zone and week start every day, week and month window is computed on."""

    timezone: str = "UTC"
    """An IANA zone name, as LiteLLM's `litellm_settings.timezone` takes it."""
    week_start: WeekStart = WeekStart.SUNDAY
    zone: ZoneInfo = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "week_start", WeekStart(self.week_start))
        unknown = f"unknown time zone {self.timezone!r}: use an IANA name such as UTC or Europe/Berlin"
        if not _ZONE_NAME.match(self.timezone):  # the name also goes into the rollup's SQL
            raise ValueError(unknown)
        try:
            zone = ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(unknown) from None
        object.__setattr__(self, "zone", zone)

    @property
    def is_utc(self) -> bool:
        return self.timezone == "UTC"

    def __str__(self) -> str:
        return f"timezone {self.timezone}, weeks from {self.week_start.value}"


UTC_SUNDAY = Calendar()
"""The default: UTC, weeks from Sunday (the reference's semantics)."""


def window_start(window: Window, epoch_seconds: int, calendar: Calendar = UTC_SUNDAY) -> int:
    """Start, in Unix seconds, of the `window` that contains `epoch_seconds`."""
    if window is Window.MINUTE:
        return epoch_seconds - epoch_seconds % 60
    if window is Window.HOUR:
        return epoch_seconds - epoch_seconds % 3600
    day = local_date(epoch_seconds, calendar)
    if window is Window.DAY:
        return midnight(day, calendar)
    if window is Window.WEEK:
        return midnight(day - timedelta(days=(day.weekday() - calendar.week_start.weekday) % 7), calendar)
    return midnight(day.replace(day=1), calendar)


def window_end(window: Window, epoch_seconds: int, calendar: Calendar = UTC_SUNDAY) -> int:
    """End (exclusive) of the `window` that contains `epoch_seconds`: when it resets."""
    if window is Window.MINUTE:
        return window_start(window, epoch_seconds) + 60
    if window is Window.HOUR:
        return window_start(window, epoch_seconds) + 3600
    first = local_date(window_start(window, epoch_seconds, calendar), calendar)
    if window is Window.DAY:
        return midnight(first + timedelta(days=1), calendar)
    if window is Window.WEEK:
        return midnight(first + timedelta(days=7), calendar)
    return midnight((first + timedelta(days=32)).replace(day=1), calendar)


def window_bounds(window: Window, at: datetime, calendar: Calendar = UTC_SUNDAY) -> tuple[datetime, datetime]:
    """The [start, end) of the `window` containing the aware datetime `at`, in UTC."""
    seconds = int(at.timestamp())
    return (
        datetime.fromtimestamp(window_start(window, seconds, calendar), UTC),
        datetime.fromtimestamp(window_end(window, seconds, calendar), UTC),
    )


def days_bounds(epoch_seconds: int, days: int, calendar: Calendar = UTC_SUNDAY) -> tuple[int, int]:
    """[start, end) of the run of `days` whole days of the zone containing the instant, counted
    from 1970-01-01 in the zone: an epoch-aligned duration of whole days (`2d`, `2w`), which the
    day rows tile exactly. In UTC that is a multiple of `days` * 86,400 seconds since the epoch."""
    if calendar.is_utc:
        start = epoch_seconds - epoch_seconds % (days * _DAY)
        return start, start + days * _DAY
    number = (local_date(epoch_seconds, calendar) - _EPOCH_DATE).days
    first = _EPOCH_DATE + timedelta(days=number - number % days)
    return midnight(first, calendar), midnight(first + timedelta(days=days), calendar)


def local_date(epoch_seconds: int, calendar: Calendar) -> date:
    """The zone's date at the instant."""
    if calendar.is_utc:
        return _EPOCH_DATE + timedelta(days=epoch_seconds // _DAY)
    return datetime.fromtimestamp(epoch_seconds, calendar.zone).date()


def midnight(day: date, calendar: Calendar) -> int:
    """The first instant of `day` in the zone, in Unix seconds: its midnight, or where midnight
    does not exist (clocks moved forward at 00:00), the change (Python's fold=0 reading)."""
    if calendar.is_utc:
        return (day - _EPOCH_DATE).days * _DAY
    return int(datetime(day.year, day.month, day.day, tzinfo=calendar.zone).timestamp())
