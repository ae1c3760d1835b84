"""Budget durations (`budget_duration` in LiteLLM) and the window each one means at an instant.

The text is read as LiteLLM reads it (`litellm/litellm_core_utils/duration_parser.py`): a whole
number and a unit, `s`, `m`, `h`, `d`, `w` or `mo`, or one of LiteLLM's words `hourly`, `daily`,
`weekly`, `monthly` (`1h`, `24h`, `7d`, `30d`). Calendar durations reset on the deployment's
calendar (`windows.Calendar`, UTC and Sunday by default) as LiteLLM's do: `1h` every hour,
`24h`/`1d` daily at midnight, `7d`/`1w` at midnight of the week's first day, `30d`/`1mo` on the 1st
of the month. Any other duration is a fixed length aligned to multiples of it: whole days (`3d`,
`2w`) counted in the zone's days since 1970-01-01, others (`15m`, `2h`) in seconds since the Unix
epoch.

Hand-written, not LiteLLM's `duration_in_seconds`: importing any LiteLLM module imports all of
LiteLLM (seconds, and a price-map download unless `LITELLM_LOCAL_MODEL_COST_MAP` is set), and the
enforcer, the aggregator and the CLI parse durations without ever calling an LLM. Its matching is
also looser than a budget may be (it reads `1dx` as `1d` and `1H` fails only later); here the
whole text must be the duration, and a refusal says what is accepted. tests/unit/test_durations.py
holds every length to LiteLLM's parser. Two of LiteLLM's forms are refused, saying why: a
duration that is not whole minutes (`30s`: spend is counted per minute, so no window can be
shorter or end mid-minute) and months other than one (`2mo`: the month window resets on the 1st).
"""

import re
from dataclasses import dataclass

from spendpipe.contracts.windows import UTC_SUNDAY, Calendar, Window, days_bounds, window_end, window_start

_PATTERN = re.compile(r"^(\d{1,6})(s|m|h|d|w|mo)$")
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 7 * 86_400}
_WORDS = {"hourly": "1h", "daily": "24h", "weekly": "7d", "monthly": "30d"}
"""LiteLLM's words for budget durations (`duration_parser.normalize_duration`)."""
_ACCEPTED = (
    "use a whole number and a unit, s, m, h, d, w or mo (e.g. 15m, 1h, 24h, 7d, 1w, 1mo), "
    "or hourly, daily, weekly, monthly"
)
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

    def bounds(self, epoch_seconds: int, calendar: Calendar = UTC_SUNDAY) -> tuple[int, int]:
        """[start, end) in Unix seconds of this duration's window containing the instant."""
        if self.calendar is not None:
            return window_start(self.calendar, epoch_seconds, calendar), window_end(
                self.calendar, epoch_seconds, calendar
            )
        if self.seconds % 86_400 == 0:
            return days_bounds(epoch_seconds, self.seconds // 86_400, calendar)
        start = epoch_seconds - epoch_seconds % self.seconds
        return start, start + self.seconds

    def __str__(self) -> str:
        return self.text


def parse_duration(text: str) -> Duration:
    """`"30d"` -> Duration. Raises ValueError saying what is accepted."""
    spelled = text.strip()
    match = _PATTERN.match(_WORDS.get(spelled.lower(), spelled))
    if not match or int(match[1]) == 0:
        raise ValueError(f"unknown duration {text!r}: {_ACCEPTED}")
    count, unit = int(match[1]), match[2]
    normal = f"{count}{unit}"
    if unit == "mo":
        if count != 1:
            raise ValueError(f"unknown duration {text!r}: months reset on the 1st, so only 1mo (or 30d) works")
        return Duration(normal, Window.MONTH, 0)
    seconds = count * _SECONDS[unit]
    if seconds % 60:
        raise ValueError(f"unknown duration {text!r}: spend is counted per minute, so use whole minutes (120s, 2m)")
    calendar = _CALENDAR_BY_LENGTH.get(seconds)
    return Duration(normal, calendar, 0) if calendar else Duration(normal, None, seconds)
