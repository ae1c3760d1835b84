"""Calendar windows: weeks start Sunday 00:00 UTC, months the 1st 00:00 UTC."""

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from spendpipe.contracts.windows import Window, window_bounds, window_end, window_start


def at(year: int, month: int, day: int, *time: int) -> datetime:
    """A UTC instant; `time` is hour, minute, second."""
    hour, minute, second = (*time, 0, 0, 0)[:3]
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


def epoch(year: int, month: int, day: int, *time: int) -> int:
    return int(at(year, month, day, *time).timestamp())


@pytest.mark.parametrize(
    ("window", "instant", "start", "end"),
    [
        (Window.MINUTE, at(2026, 11, 28, 13, 45, 59), at(2026, 11, 28, 13, 45), at(2026, 11, 28, 13, 46)),
        (Window.HOUR, at(2026, 11, 28, 13, 45, 59), at(2026, 11, 28, 13), at(2026, 11, 28, 14)),
        (Window.DAY, at(2026, 11, 28, 23, 59, 59), at(2026, 11, 28), at(2026, 11, 29)),
        # 2026-11-28 is a Saturday: its week began on Sunday the 22nd.
        (Window.WEEK, at(2026, 11, 28, 13, 45), at(2026, 11, 22), at(2026, 11, 29)),
        # Sunday 00:00 exactly starts its own week.
        (Window.WEEK, at(2026, 11, 29), at(2026, 11, 29), at(2026, 12, 6)),
        # Saturday 23:59:59 is the last second of the week before.
        (Window.WEEK, at(2026, 11, 28, 23, 59, 59), at(2026, 11, 22), at(2026, 11, 29)),
        # A week that spans a year end.
        (Window.WEEK, at(2027, 1, 1, 12), at(2026, 12, 27), at(2027, 1, 3)),
        (Window.MONTH, at(2026, 11, 28, 13, 45), at(2026, 11, 1), at(2026, 12, 1)),
        (Window.MONTH, at(2026, 12, 31, 23, 59, 59), at(2026, 12, 1), at(2027, 1, 1)),
        (Window.MONTH, at(2027, 1, 1), at(2027, 1, 1), at(2027, 2, 1)),
        (Window.MONTH, at(2028, 2, 29, 12), at(2028, 2, 1), at(2028, 3, 1)),
        (Window.MONTH, at(2027, 2, 28, 23, 59, 59), at(2027, 2, 1), at(2027, 3, 1)),
        (Window.DAY, at(2028, 2, 29, 0, 0, 1), at(2028, 2, 29), at(2028, 3, 1)),
    ],
)
def test_window_of_a_concrete_instant(window: Window, instant: datetime, start: datetime, end: datetime) -> None:
    seconds = int(instant.timestamp())

    assert window_start(window, seconds) == int(start.timestamp())
    assert window_end(window, seconds) == int(end.timestamp())
    assert window_bounds(window, instant) == (start, end)


def test_week_boundaries_fall_on_sunday_midnight() -> None:
    start, end = window_bounds(Window.WEEK, at(2026, 11, 28, 9))

    assert start.strftime("%A %H:%M:%S") == "Sunday 00:00:00"
    assert end.strftime("%A %H:%M:%S") == "Sunday 00:00:00"


def test_bounds_use_utc_not_the_local_offset_of_the_instant() -> None:
    # Sunday 01:00 at UTC+05:00 is still Saturday 20:00 UTC: the week before.
    local = datetime(2026, 11, 29, 1, 0, tzinfo=timezone(timedelta(hours=5)))

    start, end = window_bounds(Window.WEEK, local)

    assert (start, end) == (at(2026, 11, 22), at(2026, 11, 29))
    assert start.utcoffset() == timedelta(0)


def test_fractional_seconds_stay_in_their_window() -> None:
    instant = datetime(2026, 11, 28, 23, 59, 59, 999_999, tzinfo=UTC)

    assert window_bounds(Window.DAY, instant) == (at(2026, 11, 28), at(2026, 11, 29))


@pytest.mark.parametrize("window", list(Window))
def test_window_end_is_the_next_window_start(window: Window) -> None:
    seconds = epoch(2026, 12, 31, 23, 59, 59)
    end = window_end(window, seconds)

    assert window_start(window, end) == end
    assert window_start(window, end - 1) == window_start(window, seconds)


# Unix seconds from 1970 to 2100.
instants = st.integers(min_value=0, max_value=epoch(2100, 1, 1))


@given(instants, st.sampled_from(list(Window)))
def test_every_instant_lies_in_its_window(seconds: int, window: Window) -> None:
    start, end = window_start(window, seconds), window_end(window, seconds)

    assert start <= seconds < end
    assert window_start(window, end) == end  # windows tile time: no gaps, no overlaps


@given(instants)
def test_window_starts_are_aligned(seconds: int) -> None:
    minute = datetime.fromtimestamp(window_start(Window.MINUTE, seconds), UTC)
    hour = datetime.fromtimestamp(window_start(Window.HOUR, seconds), UTC)
    day = datetime.fromtimestamp(window_start(Window.DAY, seconds), UTC)
    week = datetime.fromtimestamp(window_start(Window.WEEK, seconds), UTC)
    month = datetime.fromtimestamp(window_start(Window.MONTH, seconds), UTC)

    assert minute.second == 0
    assert (hour.minute, hour.second) == (0, 0)
    assert day.time() == week.time() == month.time() == datetime.min.time()
    assert week.strftime("%A") == "Sunday"
    assert month.day == 1


@given(instants)
def test_window_lengths(seconds: int) -> None:
    def length(window: Window) -> int:
        return window_end(window, seconds) - window_start(window, seconds)

    assert length(Window.MINUTE) == 60
    assert length(Window.HOUR) == 3600
    assert length(Window.DAY) == 86_400
    assert length(Window.WEEK) == 7 * 86_400
    assert length(Window.MONTH) in {days * 86_400 for days in (28, 29, 30, 31)}


@given(instants)
def test_windows_nest(seconds: int) -> None:
    def start(window: Window) -> int:
        return window_start(window, seconds)

    def end(window: Window) -> int:
        return window_end(window, seconds)

    assert start(Window.MINUTE) >= start(Window.HOUR) >= start(Window.DAY)
    assert end(Window.MINUTE) <= end(Window.HOUR) <= end(Window.DAY)
    assert start(Window.WEEK) <= start(Window.DAY)
    assert end(Window.DAY) <= end(Window.WEEK)
    assert start(Window.MONTH) <= start(Window.DAY)
    assert end(Window.DAY) <= end(Window.MONTH)
