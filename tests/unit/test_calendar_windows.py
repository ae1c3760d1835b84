"""Windows on a deployment's calendar (SPENDPIPE_BUDGET_TIMEZONE, SPENDPIPE_WEEK_START): midnight in
the zone, DST changes both ways, Sunday against Monday, month ends, zones with +05:30 and +05:45
offsets, a zone whose midnight does not exist; and the day, week (Monday) and month resets held to
LiteLLM's own `get_next_standardized_reset_time` with its `timezone` setting."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from litellm.litellm_core_utils.duration_parser import get_next_standardized_reset_time

from spendpipe.contracts.budgets import Cap
from spendpipe.contracts.durations import parse_duration
from spendpipe.contracts.scopes import ScopeType
from spendpipe.contracts.windows import UTC_SUNDAY, Calendar, WeekStart, Window, window_bounds, window_end, window_start
from spendpipe.platform.settings import PipelineSettings, SettingsError, load_settings
from spendpipe.store.totals import SpendQuery, grain

NEW_YORK = Calendar("America/New_York")
KOLKATA_MONDAY = Calendar("Asia/Kolkata", WeekStart.MONDAY)
UTC_MONDAY = Calendar("UTC", WeekStart.MONDAY)


def utc(year: int, month: int, day: int, *time: int) -> datetime:
    """A UTC instant; `time` is hour, minute, second."""
    hour, minute, second = (*time, 0, 0, 0)[:3]
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


def local(zone: str, day: tuple[int, int, int], hour: int, minute: int, *, fold: int = 0) -> datetime:
    """A wall-clock time in `zone`; `fold=1` is the second of a time that occurs twice."""
    return datetime(*day, hour, minute, tzinfo=ZoneInfo(zone), fold=fold)


def bounds(window: Window, instant: datetime, calendar: Calendar) -> tuple[datetime, datetime]:
    return window_bounds(window, instant, calendar)


@pytest.mark.parametrize(
    ("calendar", "window", "instant", "start", "end"),
    [
        # midnight in New York (UTC-5 in winter): the last second of a day and the first of the next
        (NEW_YORK, Window.DAY, utc(2026, 1, 15, 4, 59, 59), utc(2026, 1, 14, 5), utc(2026, 1, 15, 5)),
        (NEW_YORK, Window.DAY, utc(2026, 1, 15, 5), utc(2026, 1, 15, 5), utc(2026, 1, 16, 5)),
        # clocks forward on 2026-03-08 at 02:00: that day has 23 hours
        (NEW_YORK, Window.DAY, utc(2026, 3, 8, 12), utc(2026, 3, 8, 5), utc(2026, 3, 9, 4)),
        # clocks back on 2026-11-01 at 02:00: that day has 25 hours, both 01:30s in it
        (
            NEW_YORK,
            Window.DAY,
            local("America/New_York", (2026, 11, 1), 1, 30),
            utc(2026, 11, 1, 4),
            utc(2026, 11, 2, 5),
        ),
        (
            NEW_YORK,
            Window.DAY,
            local("America/New_York", (2026, 11, 1), 1, 30, fold=1),
            utc(2026, 11, 1, 4),
            utc(2026, 11, 2, 5),
        ),
        # a Sunday-start week that spans the fall-back change: 7 days and one hour
        (NEW_YORK, Window.WEEK, utc(2026, 11, 3, 12), utc(2026, 11, 1, 4), utc(2026, 11, 8, 5)),
        # a month that ends in winter time and began in summer time
        (NEW_YORK, Window.MONTH, utc(2026, 11, 30, 23), utc(2026, 11, 1, 4), utc(2026, 12, 1, 5)),
        # the last second of a month in New York is already the 1st in UTC
        (NEW_YORK, Window.MONTH, utc(2027, 1, 1, 4, 59, 59), utc(2026, 12, 1, 5), utc(2027, 1, 1, 5)),
        # +05:30: a day starts at 18:30 UTC the day before
        (
            KOLKATA_MONDAY,
            Window.DAY,
            utc(2026, 11, 29, 18, 29, 59),
            utc(2026, 11, 28, 18, 30),
            utc(2026, 11, 29, 18, 30),
        ),
        (KOLKATA_MONDAY, Window.DAY, utc(2026, 11, 29, 18, 30), utc(2026, 11, 29, 18, 30), utc(2026, 11, 30, 18, 30)),
        # Monday 00:00 in Kolkata (Sunday 18:30 UTC) starts a week; the second before is the week before's
        (KOLKATA_MONDAY, Window.WEEK, utc(2026, 11, 29, 18, 30), utc(2026, 11, 29, 18, 30), utc(2026, 12, 6, 18, 30)),
        (
            KOLKATA_MONDAY,
            Window.WEEK,
            utc(2026, 11, 29, 18, 29, 59),
            utc(2026, 11, 22, 18, 30),
            utc(2026, 11, 29, 18, 30),
        ),
        # a month end at +05:30: 2027-02-28 18:30 UTC is March in Kolkata
        (KOLKATA_MONDAY, Window.MONTH, utc(2027, 2, 28, 18, 30), utc(2027, 2, 28, 18, 30), utc(2027, 3, 31, 18, 30)),
        (KOLKATA_MONDAY, Window.MONTH, utc(2027, 2, 28, 18, 29), utc(2027, 1, 31, 18, 30), utc(2027, 2, 28, 18, 30)),
        # +05:45
        (
            Calendar("Asia/Kathmandu"),
            Window.DAY,
            utc(2026, 6, 1, 18, 15),
            utc(2026, 6, 1, 18, 15),
            utc(2026, 6, 2, 18, 15),
        ),
        # Havana moves its clocks from 00:00 to 01:00 on 2026-03-08: that day starts at the change
        (Calendar("America/Havana"), Window.DAY, utc(2026, 3, 8, 12), utc(2026, 3, 8, 5), utc(2026, 3, 9, 4)),
        (Calendar("America/Havana"), Window.DAY, utc(2026, 3, 8, 4, 59, 59), utc(2026, 3, 7, 5), utc(2026, 3, 8, 5)),
        # minutes and hours are on the UTC clock in every zone, +05:30 included
        (KOLKATA_MONDAY, Window.HOUR, utc(2026, 11, 29, 18, 45), utc(2026, 11, 29, 18), utc(2026, 11, 29, 19)),
        (NEW_YORK, Window.MINUTE, utc(2026, 3, 8, 7, 0, 30), utc(2026, 3, 8, 7), utc(2026, 3, 8, 7, 1)),
        # Sunday against Monday in UTC: Sunday 2026-11-29 12:00
        (UTC_SUNDAY, Window.WEEK, utc(2026, 11, 29, 12), utc(2026, 11, 29), utc(2026, 12, 6)),
        (UTC_MONDAY, Window.WEEK, utc(2026, 11, 29, 12), utc(2026, 11, 23), utc(2026, 11, 30)),
        (UTC_MONDAY, Window.WEEK, utc(2026, 11, 30), utc(2026, 11, 30), utc(2026, 12, 7)),
        (UTC_MONDAY, Window.WEEK, utc(2026, 11, 29, 23, 59, 59), utc(2026, 11, 23), utc(2026, 11, 30)),
    ],
)
def test_window_bounds_on_a_calendar(
    calendar: Calendar, window: Window, instant: datetime, start: datetime, end: datetime
) -> None:
    assert bounds(window, instant, calendar) == (start, end)


def test_the_default_calendar_is_utc_from_sunday() -> None:
    assert PipelineSettings().calendar == UTC_SUNDAY == Calendar("UTC", WeekStart.SUNDAY)


def test_settings_name_the_variable_of_a_zone_or_week_start_they_do_not_know(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPENDPIPE_BUDGET_TIMEZONE", "Europe/Atlantis")
    with pytest.raises(SettingsError, match=r"SPENDPIPE_BUDGET_TIMEZONE.*Europe/Atlantis"):
        load_settings(PipelineSettings)
    monkeypatch.setenv("SPENDPIPE_BUDGET_TIMEZONE", "UTC'; DROP TABLE x; --")
    with pytest.raises(SettingsError, match="SPENDPIPE_BUDGET_TIMEZONE"):
        load_settings(PipelineSettings)
    monkeypatch.setenv("SPENDPIPE_BUDGET_TIMEZONE", "Asia/Kolkata")
    monkeypatch.setenv("SPENDPIPE_WEEK_START", "tuesday")
    with pytest.raises(SettingsError, match="SPENDPIPE_WEEK_START"):
        load_settings(PipelineSettings)
    monkeypatch.setenv("SPENDPIPE_WEEK_START", "monday")
    assert load_settings(PipelineSettings).calendar == KOLKATA_MONDAY


ZONES = ["UTC", "America/New_York", "Europe/London", "Asia/Kolkata", "Asia/Kathmandu", "America/Havana",
         "Australia/Lord_Howe", "Pacific/Chatham", "America/Santiago"]  # fmt: skip
INSTANTS = st.integers(int(utc(2000, 1, 1).timestamp()), int(utc(2099, 12, 1).timestamp()))


@settings(max_examples=400, deadline=None)
@given(zone=st.sampled_from(ZONES), week=st.sampled_from(list(WeekStart)), instant=INSTANTS)
def test_windows_partition_time_and_start_at_the_zones_midnight(zone: str, week: WeekStart, instant: int) -> None:
    calendar = Calendar(zone, week)
    for window in (Window.DAY, Window.WEEK, Window.MONTH):
        start, end = window_start(window, instant, calendar), window_end(window, instant, calendar)
        assert start <= instant < end
        # the window is the next one's predecessor: no gap, no overlap
        assert window_start(window, end, calendar) == end
        assert window_end(window, start - 1, calendar) == start
        first = datetime.fromtimestamp(start, ZoneInfo(zone))
        before = datetime.fromtimestamp(start - 1, ZoneInfo(zone))
        assert first.date() != before.date()  # the start is the first instant of a day
        if window is Window.WEEK:
            assert first.weekday() == (6 if week is WeekStart.SUNDAY else 0)
        if window is Window.MONTH:
            assert first.day == 1


@settings(max_examples=300, deadline=None)
@given(zone=st.sampled_from(ZONES), instant=INSTANTS)
def test_resets_are_litellms_with_its_timezone_setting(zone: str, instant: int) -> None:
    """LiteLLM's proxy resets `1d` at midnight in `timezone`, `7d` on Monday, `1mo` on the 1st."""
    calendar = Calendar(zone, WeekStart.MONDAY)
    now = datetime.fromtimestamp(instant, UTC)
    for text in ("1d", "24h", "7d", "1w", "30d", "1mo"):
        _, end = parse_duration(text).bounds(instant, calendar)
        assert end == int(get_next_standardized_reset_time(text, now, zone).timestamp()), text


@settings(max_examples=300, deadline=None)
@given(zone=st.sampled_from(ZONES), days=st.sampled_from([2, 3, 14]), instant=INSTANTS)
def test_durations_of_whole_days_are_runs_of_the_zones_days(zone: str, days: int, instant: int) -> None:
    calendar = Calendar(zone)
    start, end = parse_duration(f"{days}d").bounds(instant, calendar)
    assert start <= instant < end
    first, last = datetime.fromtimestamp(start, ZoneInfo(zone)), datetime.fromtimestamp(end, ZoneInfo(zone))
    assert (last.date() - first.date()).days == days
    assert parse_duration(f"{days}d").bounds(end, calendar)[0] == end
    # the day rows tile it: every day row in the window starts inside it
    assert window_start(Window.DAY, start, calendar) == start
    assert window_start(Window.DAY, end, calendar) == end


@given(instant=INSTANTS, length=st.sampled_from(["2d", "3d", "2w", "15m", "2h"]))
def test_epoch_aligned_durations_in_utc_are_unchanged(instant: int, length: str) -> None:
    seconds = parse_duration(length).seconds
    start = instant - instant % seconds
    assert parse_duration(length).bounds(instant) == (start, start + seconds)
    assert parse_duration(length).bounds(instant, UTC_SUNDAY) == (start, start + seconds)


def test_a_caps_rows_are_the_zones_day_rows() -> None:
    noon = int(utc(2026, 11, 29, 12).timestamp())
    daily = Cap(parse_duration("24h"), Decimal(1))
    assert grain(daily, noon) == (Window.DAY, int(utc(2026, 11, 29).timestamp()), int(utc(2026, 11, 30).timestamp()),
                                  int(utc(2026, 11, 30).timestamp()))  # fmt: skip
    start, end = int(utc(2026, 11, 29, 5).timestamp()), int(utc(2026, 11, 30, 5).timestamp())
    assert grain(daily, noon, NEW_YORK) == (Window.DAY, start, end, end)
    two_days = grain(Cap(parse_duration("2d"), Decimal(1)), noon, KOLKATA_MONDAY)
    assert two_days.rows is Window.DAY
    assert datetime.fromtimestamp(two_days.start, ZoneInfo("Asia/Kolkata")).time().isoformat() == "00:00:00"


def test_spend_in_a_window_reads_the_row_of_the_zones_window() -> None:
    query = SpendQuery(ScopeType.TEAM, "eng", Window.WEEK, utc(2026, 11, 29, 20))
    assert query.sql()[1]["start"] == int(utc(2026, 11, 29).timestamp())
    assert query.sql(KOLKATA_MONDAY)[1]["start"] == int(utc(2026, 11, 29, 18, 30).timestamp())


def test_a_days_length_follows_the_clock_change() -> None:
    spring = window_bounds(Window.DAY, utc(2026, 3, 8, 12), NEW_YORK)
    autumn = window_bounds(Window.DAY, utc(2026, 11, 1, 12), NEW_YORK)
    assert (spring[1] - spring[0], autumn[1] - autumn[0]) == (timedelta(hours=23), timedelta(hours=25))
