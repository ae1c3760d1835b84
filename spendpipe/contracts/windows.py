"""Calendar windows in UTC, the grain of the totals the aggregator keeps.

`week` starts on Sunday 00:00 UTC and `month` on the 1st at 00:00 UTC, as LiteLLM's
`7d` and `30d` budget durations reset. Everything here is pure: pass the instant in.
"""

from datetime import UTC, datetime, timedelta
from enum import StrEnum

_DAY = 86_400
_EPOCH_WEEKDAY_FROM_SUNDAY = 4  # 1970-01-01 was a Thursday: four days after a Sunday


class Window(StrEnum):
    MINUTE = "minute"
    HOUR = "hour"
    DAY = "day"
    WEEK = "week"
    MONTH = "month"


def window_start(window: Window, epoch_seconds: int) -> int:
    """Start, in Unix seconds, of the `window` that contains `epoch_seconds`."""
    if window is Window.MINUTE:
        return epoch_seconds - epoch_seconds % 60
    if window is Window.HOUR:
        return epoch_seconds - epoch_seconds % 3600
    day = epoch_seconds // _DAY
    if window is Window.DAY:
        return day * _DAY
    if window is Window.WEEK:
        return (day - (day + _EPOCH_WEEKDAY_FROM_SUNDAY) % 7) * _DAY
    moment = datetime.fromtimestamp(epoch_seconds, UTC)
    return int(datetime(moment.year, moment.month, 1, tzinfo=UTC).timestamp())


def window_end(window: Window, epoch_seconds: int) -> int:
    """End (exclusive) of the `window` that contains `epoch_seconds`: when it resets."""
    start = window_start(window, epoch_seconds)
    lengths = {Window.MINUTE: 60, Window.HOUR: 3600, Window.DAY: _DAY, Window.WEEK: 7 * _DAY}
    if window in lengths:
        return start + lengths[window]
    first = datetime.fromtimestamp(start, UTC)
    following = (first + timedelta(days=32)).replace(day=1)
    return int(following.timestamp())


def window_bounds(window: Window, at: datetime) -> tuple[datetime, datetime]:
    """The [start, end) of the `window` containing the aware datetime `at`, in UTC."""
    seconds = int(at.timestamp())
    return (
        datetime.fromtimestamp(window_start(window, seconds), UTC),
        datetime.fromtimestamp(window_end(window, seconds), UTC),
    )
