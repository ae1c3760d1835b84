"""Budgets on a deployment's calendar (SPENDPIPE_BUDGET_TIMEZONE, SPENDPIPE_WEEK_START), through real
Kafka and real ClickHouse: the rollup's day, week and month rows start where `windows.window_start`
says in every zone; a daily and a weekly cap in Asia/Kolkata with weeks from Monday block and lift on
Kolkata's midnights; and a store built on one calendar refuses a service configured with another."""

import asyncio
import time
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dev.local_kafka import free_port_pair
from spendpipe.admin.budget_admin import BudgetAdmin
from spendpipe.aggregator.store import SpendStore
from spendpipe.contracts.budgets import Budget
from spendpipe.contracts.decisions import Decision
from spendpipe.contracts.durations import parse_duration
from spendpipe.contracts.events import SpendEvent
from spendpipe.contracts.scopes import ScopeType
from spendpipe.contracts.windows import UTC_SUNDAY, Calendar, WeekStart, Window, window_start
from spendpipe.enforcer.app import EnforcerService
from spendpipe.history.rows import BUDGET_COLUMNS, RecordAt, budget_rows
from spendpipe.platform.clickhouse import ClickhouseSettings, ClickhouseStore
from spendpipe.platform.kafka import KafkaSettings, build_broker
from spendpipe.store.calendar import CalendarMismatchError, check_calendar, settle_calendar
from spendpipe.store.totals import SpendQuery, SpendTotals
from tests.conftest import aggregator_settings, enforcer_settings
from tests.support.events import make_event
from tests.support.gateway_blocks import at, following_blocklist, latest
from tests.support.pipeline import ManualClock, produce, running_pipeline
from tests.support.processes import run_all, run_cli
from tests.support.staging import stage
from tests.support.waiting import eventually

KOLKATA_MONDAY = Calendar("Asia/Kolkata", WeekStart.MONDAY)
TEAM = "team:search"


def utc(year: int, month: int, day: int, *time: int) -> datetime:
    """A UTC instant; `time` is hour, minute, second, microsecond."""
    hour, minute, second, micro = (*time, 0, 0, 0, 0)[:4]
    return datetime(year, month, day, hour, minute, second, micro, tzinfo=UTC)


ZONES = ["America/New_York", "Asia/Kolkata", "Asia/Kathmandu", "America/Havana", "Australia/Lord_Howe", "UTC"]


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    zone=st.sampled_from(ZONES),
    week=st.sampled_from(list(WeekStart)),
    instants=st.lists(
        st.integers(int(utc(2026, 1, 1).timestamp()), int(utc(2027, 12, 31).timestamp())), min_size=1, max_size=30
    ),
)
def test_the_rollups_windows_are_the_calendars(
    clickhouse: ClickhouseStore, zone: str, week: WeekStart, instants: list[int]
) -> None:
    calendar = Calendar(zone, week)
    clickhouse.command("TRUNCATE TABLE spend_totals")
    clickhouse.command("TRUNCATE TABLE store_calendar")  # one store per calendar: this one is new for each
    store = SpendStore(clickhouse=clickhouse, calendar=calendar)
    events = [
        SpendEvent(
            event_id=str(uuid.UUID(int=n + 1)),
            occurred_at=datetime.fromtimestamp(instant, UTC),
            model="m",
            cost=Decimal(n + 1),
            gateway_id="gw",
        )
        for n, instant in enumerate(instants)
    ]
    stage(store, [(e, 0, n) for n, e in enumerate(events)], topic="t", ingested_at=utc(2026, 1, 1))
    store.insert_totals(after={0: -1}, watermarks={})

    rows = clickhouse.rows(
        "SELECT window, toUnixTimestamp(window_start), sum(spend) FROM spend_totals "
        "WHERE scope_type = 'global' AND model = '' AND window IN ('day', 'week', 'month') GROUP BY ALL"
    )
    expected: dict[tuple[str, int], Decimal] = {}
    for n, instant in enumerate(instants):
        for window in (Window.DAY, Window.WEEK, Window.MONTH):
            key = (window.value, window_start(window, instant, calendar))
            expected[key] = expected.get(key, Decimal(0)) + Decimal(n + 1)
    assert {(str(w), int(s)): Decimal(v) for w, s, v in rows} == expected


def test_a_store_keeps_the_calendar_it_was_built_on(clickhouse: ClickhouseStore) -> None:
    assert settle_calendar(clickhouse, KOLKATA_MONDAY) == KOLKATA_MONDAY
    assert settle_calendar(clickhouse, KOLKATA_MONDAY) == KOLKATA_MONDAY  # again: same answer
    check_calendar(clickhouse, KOLKATA_MONDAY)

    with pytest.raises(CalendarMismatchError) as refused:
        settle_calendar(clickhouse, UTC_SUNDAY)
    assert "timezone Asia/Kolkata, weeks from monday" in str(refused.value)
    assert "timezone UTC, weeks from sunday" in str(refused.value)
    assert "SPENDPIPE_BUDGET_TIMEZONE=Asia/Kolkata" in str(refused.value)
    with pytest.raises(CalendarMismatchError):
        check_calendar(clickhouse, Calendar("Asia/Kolkata", WeekStart.SUNDAY))
    assert clickhouse.rows("SELECT count() FROM store_calendar") == [(1,)]


def test_a_store_with_totals_from_before_the_setting_is_on_utc_and_sunday(clickhouse: ClickhouseStore) -> None:
    store = SpendStore(clickhouse=clickhouse)
    stage(store, [(make_event(occurred_at=utc(2026, 11, 28, 12)), 0, 0)], topic="t", ingested_at=utc(2026, 11, 28))
    store.insert_totals(after={0: -1}, watermarks={})
    clickhouse.command("TRUNCATE TABLE store_calendar")  # as a store migrated from before 0009

    with pytest.raises(CalendarMismatchError, match="built on timezone UTC, weeks from sunday"):
        settle_calendar(clickhouse, KOLKATA_MONDAY)


def test_a_store_refuses_to_roll_up_on_another_calendar(clickhouse: ClickhouseStore) -> None:
    settle_calendar(clickhouse, KOLKATA_MONDAY)
    store = SpendStore(clickhouse=clickhouse)  # UTC and Sunday
    stage(store, [(make_event(occurred_at=utc(2026, 11, 28, 12)), 0, 0)], topic="t", ingested_at=utc(2026, 11, 28))

    with pytest.raises(CalendarMismatchError):
        store.insert_totals(after={0: -1}, watermarks={})
    assert clickhouse.rows("SELECT count() FROM spend_totals") == [(0,)]


async def spend(bootstrap: str, topic: str, clock: ManualClock, cost: str) -> None:
    await produce(
        bootstrap, topic, [make_event(occurred_at=at(clock()), cost=Decimal(cost), team_id="search").to_json()]
    )


@pytest.mark.timing  # a block lifts within 1 s of the reset
async def test_daily_and_weekly_caps_follow_kolkatas_midnights_and_mondays(
    kafka_broker: str, make_topics, clickhouse: ClickhouseStore, clickhouse_settings: ClickhouseSettings
) -> None:
    topics = await make_topics(kafka_broker)
    # Sunday 2026-11-29 23:50 in Kolkata (+05:30) is 18:20 UTC: in UTC it is still Sunday afternoon
    clock = ManualClock(utc(2026, 11, 29, 18, 20))
    admin = BudgetAdmin(kafka=KafkaSettings(bootstrap_servers=kafka_broker), topics=topics)
    await asyncio.to_thread(
        admin.set,
        {
            "scope": TEAM,
            "budget_limits": [
                {"budget_duration": "24h", "max_budget": "0.50"},
                {"budget_duration": "7d", "max_budget": "1.00"},
            ],
        },
    )
    zone = {"budget_timezone": "Asia/Kolkata", "week_start": "monday"}
    aggregator = aggregator_settings(kafka_broker, topics, clickhouse_settings, **zone)
    enforcer = enforcer_settings(kafka_broker, topics, clickhouse_settings, **zone)
    totals = SpendTotals(sql=clickhouse, calendar=KOLKATA_MONDAY)

    def spent(window: Window) -> Decimal:
        _, rows = totals.in_window(SpendQuery(ScopeType.TEAM, "search", window, at(clock())))
        return sum((Decimal(row[2]) for row in rows), Decimal(0))

    def blocked() -> Decision | None:
        return gateway.blocking([TEAM], now=at(clock()))

    def lifted() -> bool:
        decision = latest(gateway, TEAM)
        return decision is not None and not decision.blocked

    with following_blocklist(kafka_broker, topics.decisions) as gateway:
        async with running_pipeline(aggregator, enforcer, clickhouse, clock):
            # Sunday night in Kolkata: 0.60 passes the daily cap
            await spend(kafka_broker, topics.events, clock, "0.60")
            daily = await eventually(blocked, bool, within=30, what="daily block on Sunday night")
            assert (daily.window, daily.spend, daily.cap) == ("24h", Decimal("0.6"), Decimal("0.5"))
            assert daily.expires_at == utc(2026, 11, 29, 18, 30)  # Monday 00:00 in Kolkata, not UTC midnight
            # the week row is the Kolkata week from Monday the 23rd (Sunday 18:30 UTC)
            assert clickhouse.rows(
                "SELECT toUnixTimestamp(window_start) FROM spend_totals "
                "WHERE window = 'week' AND scope_type = 'team' AND model = ''"
            ) == [(int(utc(2026, 11, 22, 18, 30).timestamp()),)]

            # Kolkata's Monday midnight, with no traffic: the day and the week both reset
            clock.set(utc(2026, 11, 29, 18, 30, 0, 200_000))
            await eventually(lifted, bool, within=1.0, what="unblock at Monday 00:00 in Kolkata")

            # Monday 00:05 in Kolkata, still Sunday in UTC: 0.30 + 0.30 count in the new day and week only
            clock.set(utc(2026, 11, 29, 18, 35))
            await spend(kafka_broker, topics.events, clock, "0.30")
            await spend(kafka_broker, topics.events, clock, "0.30")
            monday = await eventually(blocked, bool, within=30, what="daily block on Monday")
            assert (monday.window, monday.spend) == ("24h", Decimal("0.6"))  # UTC's Sunday would hold 1.20
            assert monday.expires_at == utc(2026, 11, 30, 18, 30)
            assert (spent(Window.DAY), spent(Window.WEEK)) == (Decimal("0.6"), Decimal("0.6"))

            # Tuesday in Kolkata: the day lifts, the week goes on; 0.45 more reaches the weekly cap
            clock.set(utc(2026, 11, 30, 18, 30, 0, 200_000))
            await eventually(lifted, bool, within=1.0, what="unblock at Tuesday 00:00 in Kolkata")
            await spend(kafka_broker, topics.events, clock, "0.45")
            weekly = await eventually(blocked, lambda d: d is not None and d.window == "7d", within=30, what="weekly")
            assert (weekly.spend, weekly.cap) == (Decimal("1.05"), Decimal("1"))
            assert weekly.expires_at == utc(2026, 12, 6, 18, 30)  # the next Monday 00:00 in Kolkata
            assert (spent(Window.DAY), spent(Window.WEEK)) == (Decimal("0.45"), Decimal("1.05"))


async def test_an_enforcer_on_another_calendar_than_the_store_refuses_to_start(
    kafka_broker: str, make_topics, clickhouse: ClickhouseStore, clickhouse_settings: ClickhouseSettings
) -> None:
    topics = await make_topics(kafka_broker)
    settle_calendar(clickhouse, KOLKATA_MONDAY)  # what `spendpipe run` records at its first start
    settings = enforcer_settings(kafka_broker, topics, clickhouse_settings)  # UTC, Sunday
    broker = build_broker(settings.kafka)
    service = EnforcerService(settings=settings, broker=broker, clickhouse=clickhouse)
    await broker.start()
    try:
        with pytest.raises(CalendarMismatchError) as refused:
            await service.start()
    finally:
        await broker.stop()
    assert "built on timezone Asia/Kolkata, weeks from monday" in str(refused.value)
    assert "configured with timezone UTC, weeks from sunday" in str(refused.value)
    assert not service.ready.is_set()


def test_the_views_current_windows_are_the_calendars(clickhouse: ClickhouseStore) -> None:
    settle_calendar(clickhouse, KOLKATA_MONDAY)  # writes calendar_windows too
    budget = Budget.model_validate(
        {
            "scope": "team:eng",
            "budget_limits": [
                {"budget_duration": "24h", "max_budget": "1"},
                {"budget_duration": "7d", "max_budget": "2"},
                {"budget_duration": "2d", "max_budget": "3"},
            ],
        }
    )
    rows = budget_rows(RecordAt("b", 0, 0, int(time.time() * 1000)), "team:eng", budget, "{}")
    clickhouse.insert_columns("budget_history", list(zip(*rows, strict=True)), BUDGET_COLUMNS)
    store = SpendStore(clickhouse=clickhouse, calendar=KOLKATA_MONDAY)
    now = datetime.now(UTC)
    event = make_event(occurred_at=now, cost=Decimal("0.25"), team_id="eng")
    stage(store, [(event, 0, 0)], topic="t", ingested_at=now)
    store.insert_totals(after={0: -1}, watermarks={})

    def expected(window: Window | str) -> set[int]:
        """The window's start now, and a moment later (should the test run across a midnight)."""
        if isinstance(window, Window):
            return {
                window_start(window, int(now.timestamp()), KOLKATA_MONDAY),
                window_start(window, int(time.time()), KOLKATA_MONDAY),
            }
        return {parse_duration(window).bounds(int(t), KOLKATA_MONDAY)[0] for t in (now.timestamp(), time.time())}

    top = clickhouse.rows(
        "SELECT window, toUnixTimestamp(window_start), rank, spend FROM top_spenders "
        "WHERE scope_type = 'team' AND window IN ('day', 'week', 'month')"
    )
    assert len(top) == 3
    for window, start, rank, spend in top:
        assert (int(start) in expected(Window(window)), rank, Decimal(spend)) == (True, 1, Decimal("0.25"))

    utilisation = clickhouse.rows(
        "SELECT duration, toUnixTimestamp(window_start), toUnixTimestamp(window_end), spend FROM budget_utilisation"
    )
    assert len(utilisation) == 3
    for duration, start, end, spend in utilisation:
        assert int(start) in expected(str(duration)), duration
        assert int(end) == parse_duration(str(duration)).bounds(int(start), KOLKATA_MONDAY)[1], duration
        assert Decimal(spend) == Decimal("0.25"), duration


async def test_spendpipe_run_on_a_store_built_on_another_calendar_exits_naming_both(
    kafka_broker: str, make_topics, tmp_path: Path
) -> None:
    topics = await make_topics(kafka_broker)
    first = run_all(kafka_broker, topics, tmp_path, sql_port=free_port_pair())
    zone = {"SPENDPIPE_BUDGET_TIMEZONE": "Asia/Kolkata", "SPENDPIPE_WEEK_START": "monday"}
    first.start()  # records UTC and Sunday in its new store
    try:
        first.wait_http_ok(f"http://127.0.0.1:{first.env['SPENDPIPE_SQL_ENDPOINT__PORT']}/healthz")
        endpoint = {"SPENDPIPE_SQL_ENDPOINT_URL": f"http://127.0.0.1:{first.env['SPENDPIPE_SQL_ENDPOINT__PORT']}"}
        spend = run_cli({**first.env, **zone, **endpoint}, "spend", "--scope", "team")
    finally:
        first.stop()
    refused = run_cli({**first.env, **zone}, "run", "all")

    mismatch = (
        "error: this store's totals are built on timezone UTC, weeks from sunday but this service is configured "
        "with timezone Asia/Kolkata, weeks from monday: set SPENDPIPE_BUDGET_TIMEZONE=UTC and "
        "SPENDPIPE_WEEK_START=sunday as the store has them, or start from a new store "
        "(docs/budgets.md#timezone-and-week-start)"
    )
    assert (refused.returncode, refused.stderr.splitlines()[-1]) == (2, mismatch)  # after its start-up log lines
    assert (spend.returncode, spend.stderr.splitlines()) == (2, [mismatch])
