"""Budget durations (`budget_duration` in LiteLLM) and the window each one means at an instant.

Calendar durations reset on UTC boundaries as LiteLLM's do: `1h` every hour, `24h`/`1d` daily at
midnight, `7d` every Sunday at midnight, `30d`/`1mo` on the 1st of the month. Any other duration
(`15m`, `2h`, `3d`) is a fixed length aligned to multiples of it since the Unix epoch.
"""

import re
from dataclasses import dataclass

from spendpipe.contracts.windows import Window, window_end, window_start

_PATTERN = re.compile(r"^(\d{1,6})(m|h|d|mo)$")
_SECONDS = {"m": 60, "h": 3600, "d": 86_400}
_CALENDAR_BY_LENGTH = {
    60: Window.MINUTE,
    3600: Window.HOUR,
    86_400: Window.DAY,
    7 * 86_400: Window.WEEK,
    30 * 86_400: Window.MONTH,  # LiteLLM's 30d resets on the 1st
}


@dataclass(frozen=True)
class Duration:
    text: str
    calendar: Window | None
    """The calendar window this duration resets on, or None for an epoch-aligned length."""
    seconds: int
    """Length of an epoch-aligned duration (0 for calendar ones)."""

    @property
    def window_key(self) -> tuple[Window | None, int]:
        """Equal for durations that mean the same window (`24h` and `1d`)."""
        return self.calendar, self.seconds

    def bounds(self, epoch_seconds: int) -> tuple[int, int]:
        """[start, end) in Unix seconds of this duration's window containing the instant."""
        if self.calendar is not None:
            return window_start(self.calendar, epoch_seconds), window_end(self.calendar, epoch_seconds)
        start = epoch_seconds - epoch_seconds % self.seconds
        return start, start + self.seconds

    def __str__(self) -> str:
        return self.text


def parse_duration(text: str) -> Duration:
    """`"30d"` -> Duration. Raises ValueError saying what is accepted."""
    match = _PATTERN.match(text.strip())
    if not match or int(match[1]) == 0:
        raise ValueError(
            f"unknown duration {text!r}: use a whole number and a unit, m, h, d or mo (e.g. 15m, 1h, 24h, 7d, 1mo)"
        )
    count, unit = int(match[1]), match[2]
    normal = f"{count}{unit}"
    if unit == "mo":
        if count != 1:
            raise ValueError(f"unknown duration {text!r}: months reset on the 1st, so only 1mo (or 30d) works")
        return Duration(normal, Window.MONTH, 0)
    seconds = count * _SECONDS[unit]
    calendar = _CALENDAR_BY_LENGTH.get(seconds)
    return Duration(normal, calendar, 0) if calendar else Duration(normal, None, seconds)
