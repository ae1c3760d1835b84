"""Budget durations: calendar ones reset on UTC boundaries, the others on multiples since the epoch."""

from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from litellm.litellm_core_utils.duration_parser import duration_in_seconds

from spendpipe.contracts.durations import Duration, parse_duration
from spendpipe.contracts.windows import Window


def epoch(year: int, month: int, day: int, *time: int) -> int:
    """Unix seconds of a UTC instant; `time` is hour, minute, second."""
    hour, minute, second = (*time, 0, 0, 0)[:3]
    return int(datetime(year, month, day, hour, minute, second, tzinfo=UTC).timestamp())


# 2026-11-28 is a Saturday.
NOW = epoch(2026, 11, 28, 13, 45, 59)


@pytest.mark.parametrize(
    ("text", "window"),
    [
        ("1h", Window.HOUR),
        ("24h", Window.DAY),
        ("1d", Window.DAY),
        ("7d", Window.WEEK),
        ("30d", Window.MONTH),
        ("1mo", Window.MONTH),
    ],
)
def test_calendar_durations_reset_on_their_calendar_window(text: str, window: Window) -> None:
    duration = parse_duration(text)

    assert duration.calendar is window
    assert str(duration) == text


@pytest.mark.parametrize(
    ("text", "start", "end"),
    [
        ("1h", epoch(2026, 11, 28, 13), epoch(2026, 11, 28, 14)),
        ("24h", epoch(2026, 11, 28), epoch(2026, 11, 29)),
        ("1d", epoch(2026, 11, 28), epoch(2026, 11, 29)),
        # The week began on Sunday the 22nd and resets on Sunday the 29th, at midnight UTC.
        ("7d", epoch(2026, 11, 22), epoch(2026, 11, 29)),
        # 30d is not 30 days from anything: it resets on the 1st, as LiteLLM's does.
        ("30d", epoch(2026, 11, 1), epoch(2026, 12, 1)),
        ("1mo", epoch(2026, 11, 1), epoch(2026, 12, 1)),
    ],
)
def test_calendar_bounds_at_a_concrete_instant(text: str, start: int, end: int) -> None:
    assert parse_duration(text).bounds(NOW) == (start, end)


def test_weekly_window_starts_on_sunday_midnight() -> None:
    start, end = parse_duration("7d").bounds(NOW)

    assert datetime.fromtimestamp(start, UTC).strftime("%A %H:%M:%S") == "Sunday 00:00:00"
    assert end - start == 7 * 86_400


def test_monthly_window_of_february_in_a_leap_year() -> None:
    assert parse_duration("1mo").bounds(epoch(2028, 2, 29, 23)) == (epoch(2028, 2, 1), epoch(2028, 3, 1))


@pytest.mark.parametrize(("text", "seconds"), [("15m", 900), ("2h", 7200), ("3d", 259_200)])
def test_other_durations_are_fixed_lengths(text: str, seconds: int) -> None:
    duration = parse_duration(text)

    assert duration.calendar is None
    assert duration.seconds == seconds


@pytest.mark.parametrize(
    ("text", "start", "end"),
    [
        ("15m", epoch(2026, 11, 28, 13, 45), epoch(2026, 11, 28, 14)),
        # Two-hour windows since the epoch start on even UTC hours.
        ("2h", epoch(2026, 11, 28, 12), epoch(2026, 11, 28, 14)),
    ],
)
def test_epoch_aligned_bounds_at_a_concrete_instant(text: str, start: int, end: int) -> None:
    assert parse_duration(text).bounds(NOW) == (start, end)


def test_three_day_windows_are_multiples_of_three_days_since_the_epoch() -> None:
    start, end = parse_duration("3d").bounds(NOW)

    assert start % 259_200 == 0
    assert end - start == 259_200
    assert start <= NOW < end


def test_an_instant_on_a_boundary_starts_the_next_window() -> None:
    boundary = epoch(2026, 11, 28, 14)

    assert parse_duration("15m").bounds(boundary) == (boundary, boundary + 900)
    assert parse_duration("1h").bounds(boundary) == (boundary, boundary + 3600)


@pytest.mark.parametrize(("text", "normal"), [(" 1h ", "1h"), ("01d", "1d"), ("015m", "15m")])
def test_text_is_normalised(text: str, normal: str) -> None:
    assert parse_duration(text).text == normal


def test_24h_and_1d_mean_the_same_window() -> None:
    assert parse_duration("24h").window_key == parse_duration("1d").window_key
    assert parse_duration("30d").window_key == parse_duration("1mo").window_key


def test_different_durations_have_different_window_keys() -> None:
    keys = {parse_duration(text).window_key for text in ("15m", "1h", "2h", "1d", "3d", "7d", "1mo")}

    assert len(keys) == 7


def test_60m_and_1h_mean_the_same_window() -> None:
    # Given two spellings whose windows coincide at every instant (hours since the epoch are UTC hours)
    sixty_minutes, one_hour = parse_duration("60m"), parse_duration("1h")
    assert sixty_minutes.bounds(NOW) == one_hour.bounds(NOW)

    # Then they are the same window, as `24h` and `1d` are
    assert sixty_minutes.window_key == one_hour.window_key


@pytest.mark.parametrize("text", ["0h", "0s", "5x", "", "1y", "1.5h", "-1h", "h", "1", "1dx", "1H", "1000000d", "day"])
def test_unknown_durations_are_refused_with_the_accepted_form(text: str) -> None:
    with pytest.raises(ValueError, match=f"unknown duration {text!r}") as raised:
        parse_duration(text)

    assert "use a whole number and a unit, s, m, h, d, w or mo" in str(raised.value)


def test_months_other_than_one_are_refused_saying_why() -> None:
    with pytest.raises(ValueError, match=r"unknown duration '2mo': months reset on the 1st, so only 1mo \(or 30d\)"):
        parse_duration("2mo")


UNITS = {"m": 60, "h": 3600, "d": 86_400}

valid_durations = st.one_of(
    st.sampled_from(["1h", "24h", "1d", "7d", "30d", "1mo"]),
    st.builds(lambda n, unit: f"{n}{unit}", st.integers(min_value=1, max_value=999_999), st.sampled_from("mhd")),
)
instants = st.integers(min_value=0, max_value=epoch(2100, 1, 1))


@given(valid_durations, instants)
def test_the_window_contains_the_instant_and_is_stable(text: str, instant: int) -> None:
    duration: Duration = parse_duration(text)

    start, end = duration.bounds(instant)

    assert start <= instant < end
    assert duration.bounds(start) == (start, end)
    assert duration.bounds(end - 1) == (start, end)


@given(st.integers(min_value=1, max_value=999_999), st.sampled_from("mhd"), instants)
def test_epoch_aligned_windows_are_multiples_of_their_length(n: int, unit: str, instant: int) -> None:
    duration = parse_duration(f"{n}{unit}")
    if duration.calendar is not None:
        return

    start, end = duration.bounds(instant)

    assert end - start == n * UNITS[unit]
    assert start % (n * UNITS[unit]) == 0


# LiteLLM's forms


@pytest.mark.parametrize(
    ("text", "normal", "window"),
    [
        ("hourly", "1h", Window.HOUR),
        ("daily", "24h", Window.DAY),
        (" Weekly ", "7d", Window.WEEK),
        ("monthly", "30d", Window.MONTH),
        ("1w", "1w", Window.WEEK),
        ("60s", "60s", Window.MINUTE),
        ("3600s", "3600s", Window.HOUR),
        ("86400s", "86400s", Window.DAY),
        ("1m", "1m", Window.MINUTE),
    ],
)
def test_litellms_words_weeks_and_seconds_are_read_as_litellm_reads_them(
    text: str, normal: str, window: Window
) -> None:
    duration = parse_duration(text)

    assert (duration.text, duration.calendar) == (normal, window)
    assert duration.window_key == parse_duration(normal).window_key


@pytest.mark.parametrize(
    ("text", "seconds"), [("2w", 14 * 86_400), ("120s", 120), ("5400s", 5400), ("3w", 21 * 86_400)]
)
def test_other_weeks_and_seconds_are_fixed_lengths(text: str, seconds: int) -> None:
    duration = parse_duration(text)

    assert (duration.calendar, duration.seconds) == (None, seconds)


@pytest.mark.parametrize("text", ["30s", "1s", "59s", "61s", "90s"])
def test_durations_that_are_not_whole_minutes_are_refused_saying_why(text: str) -> None:
    with pytest.raises(ValueError, match=f"unknown duration {text!r}: spend is counted per minute"):
        parse_duration(text)


NOMINAL: dict[Window | None, int] = {
    Window.MINUTE: 60,
    Window.HOUR: 3600,
    Window.DAY: 86_400,
    Window.WEEK: 604_800,
    Window.MONTH: 30 * 86_400,  # LiteLLM's 30d; it too resets it on the 1st
}


@settings(deadline=None)  # LiteLLM's parser is not ours to time
@given(st.integers(min_value=1, max_value=999_999), st.sampled_from(["s", "m", "h", "d", "w"]))
def test_every_length_is_litellms(n: int, unit: str) -> None:
    text = f"{n}{unit}"
    try:
        duration = parse_duration(text)
    except ValueError:
        assert unit == "s"
        assert n % 60
        return

    assert duration.seconds or NOMINAL[duration.calendar] == duration_in_seconds(text)
    assert not duration.seconds or duration.seconds == duration_in_seconds(text)


@pytest.mark.parametrize("word", ["hourly", "daily", "weekly", "monthly"])
def test_litellms_words_have_litellms_lengths(word: str) -> None:
    duration = parse_duration(word)

    assert duration_in_seconds(word) == duration_in_seconds(duration.text)
