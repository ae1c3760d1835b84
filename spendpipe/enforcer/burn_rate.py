"""Burn rate: when a cap will be reached if spend goes on at its current rate. Pure, no I/O:
pass the instant in.

The rate is read from the per-minute totals, never guessed per request: the spend of the last
`lookback_minutes` whole minutes plus the minute under way, over the seconds from the first of
them to now. When the cap's window (or its budget's reset) began later than that, the rate is the
window's spend so far over the seconds since it began. The projection is
`now + (cap - spend) / rate`; it is "before the reset" when it falls strictly before the window
ends (reaching the cap at the reset instant counts in the next window, which starts from zero).

There is no projection for a cap already reached (the enforcer blocks it), a lifetime cap (no
window to exhaust before), or a window that began at this very second (no time to rate over). A
zero rate never reaches the cap: a projection with no instant.

Money stays Decimal: the comparison with the reset is exact (cross-multiplied, in a context wide
enough for any two `Cost` values), the rate and the instant are divisions rounded at 60 digits.
"""

from dataclasses import dataclass
from decimal import Decimal, localcontext

from spendpipe.contracts.windows import UTC_SUNDAY, Calendar
from spendpipe.store.totals import Measurement, grain

_EXACT_DIGITS = 200
"""Enough for a product of two `Cost` values (Decimal(76, 24)) and a count of seconds: exact."""
_DIVISION_DIGITS = 60


def lookback_start(window_start: int, now: int, lookback_minutes: int) -> int:
    """The first second the rate is read over: `lookback_minutes` whole minutes before the
    minute under way, or the window's start when that is later."""
    return max(now - now % 60 - lookback_minutes * 60, window_start)


@dataclass(frozen=True)
class Projection:
    """A cap's burn rate in its current window and when it reaches the cap at that rate."""

    rate: Decimal
    """Dollars per second over the lookback."""
    since: int
    """The lookback's first second: the rate is the spend from here to now."""
    exhausted_at: Decimal | None
    """Unix seconds at which the cap is reached; None when the rate is zero."""
    resets_at: int
    """When the cap's window ends (and its spend starts again from zero)."""
    before_reset: bool
    """The cap is reached strictly before the window resets."""


def project(
    *, spend: Decimal, cap: Decimal, recent: Decimal, since: int, now: int, resets_at: int
) -> Projection | None:
    """`spend` in the window so far against `cap`, `recent` spent in [`since`, `now`]."""
    elapsed = now - since
    if elapsed <= 0 or spend >= cap or now >= resets_at:
        return None
    with localcontext() as exact:
        exact.prec = _EXACT_DIGITS
        remaining = cap - spend
        before_reset = recent > 0 and remaining * elapsed < recent * (resets_at - now)
        exact.prec = _DIVISION_DIGITS
        rate = recent / elapsed
        exhausted_at = now + remaining * elapsed / recent if recent > 0 else None
    return Projection(rate, since, exhausted_at, resets_at, before_reset)


def cap_projection(
    measured: Measurement, spent_since: Decimal, since: int, now: int, calendar: Calendar = UTC_SUNDAY
) -> Projection | None:
    """A cap's projection: over the lookback's minutes (`spent_since` from `since`, which
    `lookback_start(0, ...)` gave), or over its window so far when the window (or its budget's
    reset) began after the lookback's first minute. Lifetime caps have none. The enforcer's
    warnings and gauges and `spendpipe report` all project through this."""
    if measured.end is None:
        return None
    window_start = grain(measured.cap, now, calendar).start
    if window_start >= since:
        return project(
            spend=measured.spend,
            cap=measured.cap.limit,
            recent=measured.spend,
            since=window_start,
            now=now,
            resets_at=measured.end,
        )
    return project(
        spend=measured.spend, cap=measured.cap.limit, recent=spent_since, since=since, now=now, resets_at=measured.end
    )
