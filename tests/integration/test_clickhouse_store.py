"""The store's SQL on every engine: migrations, the writer's inserts and watermarks, the spend
queries and the enforcer's reads. Each test runs on chDB and, when
`SPENDPIPE_TEST_CLICKHOUSE_URL` names a server, again on that server, in a fresh database."""

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Context, Decimal

import pyarrow as pa
import pytest

from spendpipe.aggregator.dedup import Origin
from spendpipe.aggregator.store import SpendStore
from spendpipe.aggregator.writer import BatchWriter, SourceRecord
from spendpipe.budget_manager.ledger import Pending, SpendLedger
from spendpipe.budget_manager.user_spend import UserSpend
from spendpipe.contracts.budgets import Budget, Cap, SpendReset
from spendpipe.contracts.durations import parse_duration
from spendpipe.contracts.events import SpendEvent
from spendpipe.contracts.scopes import Scope, ScopeType
from spendpipe.contracts.windows import Window
from spendpipe.enforcer.targets import Target
from spendpipe.platform.clickhouse import ClickhouseSettings, ClickhouseStore, _chdb_connection, connect_clickhouse
from spendpipe.store.migrate import bundled_migrations, migrate
from spendpipe.store.sql_endpoint.client import EndpointSource
from spendpipe.store.sql_endpoint.server import SqlEndpoint
from spendpipe.store.sql_endpoint.settings import SqlEndpointSettings
from spendpipe.store.totals import MOST_STARTS, SpendQuery, SpendTotals
from tests.conftest import on_every_engine
from tests.support.events import expected_spend, make_event
from tests.support.pipeline import counted_events, totals
from tests.support.staging import stage

pytestmark = on_every_engine

TOPIC = "spend.events"
SATURDAY = datetime(2026, 11, 28, 15, 30, tzinfo=UTC)


def write(clickhouse: ClickhouseStore, events: list[SpendEvent], first_offset: int = 0) -> int:
    """Through a fresh writer (a restarted aggregator); returns how many were counted."""
    writer = BatchWriter(store=SpendStore(clickhouse=clickhouse), topic=TOPIC, dedup_horizon_s=600)
    records = [SourceRecord(i % 2, first_offset + i, e.to_json()) for i, e in enumerate(events)]
    return writer.write(records).counted


def test_the_database_is_created_and_every_migration_applied_once(
    clickhouse: ClickhouseStore, clickhouse_settings: ClickhouseSettings
) -> None:
    tables = clickhouse.column("SELECT name FROM system.tables WHERE database = currentDatabase()")
    versions = clickhouse.column("SELECT version FROM schema_migrations ORDER BY version")

    assert clickhouse.column("SELECT currentDatabase()") == [clickhouse_settings.database]
    assert {"events", "spend_totals", "schema_migrations"} <= set(tables)
    assert [int(v) for v in versions] == [m.version for m in bundled_migrations()]

    again = connect_clickhouse(clickhouse_settings)  # the database exists now: no error, nothing to do
    try:
        assert migrate(again) == []
    finally:
        again.close()


def test_an_arrow_table_inserted_in_place_lands_whole(clickhouse: ClickhouseStore) -> None:
    clickhouse.command("CREATE TABLE in_place (n UInt32, v String) ENGINE = MergeTree ORDER BY n")
    values = [b"a", b"", b"\x00\xff\n"]
    data = pa.table({"n": pa.array([1, 2, 3], pa.uint32()), "v": pa.array(values, pa.binary())})

    clickhouse.insert_arrow_in_place("in_place", data)

    assert clickhouse.rows("SELECT n, hex(v) FROM in_place ORDER BY n") == [
        (n, value.hex().upper()) for n, value in enumerate(values, start=1)
    ]
    # chDB reads the table where it is; a server gets the Arrow bytes (`insert_arrow`)
    assert (_chdb_connection(clickhouse._client) is not None) is clickhouse.settings.embedded


def test_inserts_and_totals_are_exact_and_a_replay_counts_nothing_twice(clickhouse: ClickhouseStore) -> None:
    events = [make_event() for _ in range(60)]

    assert write(clickhouse, events[:40]) == 40
    assert write(clickhouse, events) == 20  # the first 40 replayed, 20 new behind them

    assert counted_events(clickhouse) == 60
    assert totals(clickhouse, "day") == expected_spend(events, Window.DAY)
    assert totals(clickhouse, "minute") == expected_spend(events, Window.MINUTE)
    assert totals(clickhouse)[("global", "", "")] == sum(e.cost for e in events)


def test_watermarks_and_event_id_lookups(clickhouse: ClickhouseStore) -> None:
    events = [make_event() for _ in range(10)]
    before = datetime.now(UTC) - timedelta(seconds=5)
    write(clickhouse, events, first_offset=100)
    store = SpendStore(clickhouse=clickhouse)

    assert store.totals_watermarks(TOPIC) == {0: 108, 1: 109}
    assert store.events_watermarks(TOPIC) == {0: 108, 1: 109}
    ids, origins, latest = store.ids_ingested_since(before)
    assert {uuid.UUID(bytes=event_id) for event_id in ids} == {uuid.UUID(e.event_id) for e in events}
    assert {Origin.unpack(o)[:2] for o in origins} == {(i % 2, 100 + i) for i in range(10)}
    assert latest is not None
    assert latest.replace(tzinfo=UTC) >= before

    # a later copy of the first event, dated before the memory's horizon, is found in `events`
    stage(store, [(events[0], 0, 200), (make_event(), 0, 201)], topic=TOPIC, ingested_at=datetime.now(UTC))
    found = store.first_counts(older_than=datetime(2100, 1, 1, tzinfo=UTC))
    assert {uuid.UUID(bytes=k): Origin.unpack(v)[:2] for k, v in found.items()} == {
        uuid.UUID(events[0].event_id): (0, 100)
    }
    assert (
        Origin.unpack(found[uuid.UUID(events[0].event_id).bytes]).digest
        == Origin.unpack(origins[ids.index(uuid.UUID(events[0].event_id).bytes)]).digest
    )


def test_a_late_duplicate_is_found_in_the_events_table(clickhouse: ClickhouseStore) -> None:
    late = make_event(occurred_at=SATURDAY - timedelta(days=3))
    write(clickhouse, [late])

    # a new process (no ids in memory) sees the same event again at a later offset
    assert write(clickhouse, [late], first_offset=2) == 0
    assert counted_events(clickhouse) == 1


def test_spend_query_on_a_read_only_client(
    clickhouse: ClickhouseStore, clickhouse_settings: ClickhouseSettings
) -> None:
    events = [make_event(occurred_at=SATURDAY) for _ in range(30)]
    write(clickhouse, events)
    reader = connect_clickhouse(clickhouse_settings, read_only=True)
    try:
        query = SpendQuery(scope_type=ScopeType.TEAM, scope_id=None, window=Window.DAY, at=SATURDAY)
        columns, rows = SpendTotals(sql=reader).in_window(query)
        with pytest.raises(Exception, match=r"(?i)readonly"):
            reader.command("CREATE TABLE not_allowed (x UInt8) ENGINE = Memory")
    finally:
        reader.close()

    expected = expected_spend(events, Window.DAY)
    assert columns[:3] == ["scope_id", "model", "spend"]
    assert {row[0]: Decimal(row[2]) for row in rows} == {
        team: spend for (kind, team, model), spend in expected.items() if kind == "team" and model == ""
    }


def test_spend_per_model_in_a_caps_window_through_the_endpoint_and_directly(clickhouse: ClickhouseStore) -> None:
    alice = Scope(ScopeType.USER, "alice")
    this_week = [make_event(occurred_at=SATURDAY, user_id=alice.id) for _ in range(10)]
    last_week = make_event(occurred_at=SATURDAY - timedelta(days=7), user_id=alice.id)
    write(clickhouse, [*this_week, last_week])
    weekly = Cap(parse_duration("7d"), Decimal(1))  # the BudgetManager's "weekly": since Sunday
    now = int(SATURDAY.timestamp()) + 60

    if not clickhouse.settings.embedded:
        pytest.skip("the SQL endpoint serves an embedded store; a server has its own HTTP interface")
    endpoint = SqlEndpoint(clickhouse=clickhouse.settings, settings=SqlEndpointSettings(port=0)).start()
    try:
        through_endpoint = SpendTotals(sql=EndpointSource(url=f"http://127.0.0.1:{endpoint.port}"))
        by_model = through_endpoint.by_model(alice, weekly, now, events_topic=TOPIC)
    finally:
        endpoint.stop()

    models = {e.model for e in this_week}
    assert by_model.spend == {model: sum(e.cost for e in this_week if e.model == model) for model in models}
    assert by_model.watermarks == {0: 10, 1: 9}  # read with the spend, from the same snapshot
    assert SpendTotals(sql=clickhouse).by_model(alice, weekly, now, events_topic=TOPIC) == by_model


def test_the_budget_managers_ledger_is_reconciled_through_the_endpoint(clickhouse: ClickhouseStore) -> None:
    """A recorded event the ledger has no position for is found in `events` and then counted
    once, through the SQL endpoint as a BudgetManager beside an embedded store reads."""
    counted, recorded = (make_event(occurred_at=SATURDAY, user_id="alice") for _ in range(2))
    write(clickhouse, [counted])
    ledger = SpendLedger()
    for event in (counted, recorded):
        ledger.add(Pending(event.event_id, "alice", event.billed_model, event.cost, int(SATURDAY.timestamp())))
    budget = Budget(scope="user:alice", max_budget=Decimal(1), budget_duration="1d")

    if not clickhouse.settings.embedded:
        pytest.skip("the SQL endpoint serves an embedded store; a server has its own HTTP interface")
    endpoint = SqlEndpoint(clickhouse=clickhouse.settings, settings=SqlEndpointSettings(port=0)).start()
    try:
        spend = UserSpend(
            sql=EndpointSource(url=f"http://127.0.0.1:{endpoint.port}"),
            ledger=ledger,
            events_topic=TOPIC,
            max_age_s=0,
            clock=lambda: SATURDAY.timestamp() + 60,
        ).by_model("alice", budget)
    finally:
        endpoint.stop()

    assert sum(spend.values()) == counted.cost + recorded.cost
    assert len(ledger) == 1  # the counted one left the ledger, the other is still this process's own


def test_the_enforcer_reads_each_caps_window(clickhouse: ClickhouseStore) -> None:
    today = [make_event(occurred_at=SATURDAY, team_id="search") for _ in range(12)]
    yesterday = make_event(occurred_at=SATURDAY - timedelta(days=1), team_id="search")
    write(clickhouse, [*today, yesterday])
    caps = (
        Cap(parse_duration("24h"), Decimal(1)),  # calendar day: its own row
        Cap(parse_duration("2h"), Decimal(1)),  # epoch-aligned: hour rows summed
        Cap(None, Decimal(1)),  # lifetime: every month
    )
    team = Scope(ScopeType.TEAM, "search")

    now = int(SATURDAY.timestamp()) + 60
    everything = SpendTotals(sql=clickhouse).measure(Target(team, "", caps, "test"), now)
    one_model = SpendTotals(sql=clickhouse).measure(Target(team, "gpt-4o-mini", caps[:1], "test"), now)

    spent_today = sum(e.cost for e in today)
    assert [m.spend for m in everything] == [spent_today, spent_today, spent_today + yesterday.cost]
    assert [m.end for m in everything] == [
        int(datetime(2026, 11, 29, tzinfo=UTC).timestamp()),
        int(datetime(2026, 11, 28, 16, tzinfo=UTC).timestamp()),
        None,
    ]
    assert [m.spend for m in one_model] == [sum(e.cost for e in today if e.model == "gpt-4o-mini")]


def test_the_enforcer_counts_from_a_reset_less_what_its_minute_held(clickhouse: ClickhouseStore) -> None:
    """Spend earlier in the day and earlier in the reset's minute is history; what follows counts."""
    reset_minute = SATURDAY + timedelta(minutes=1)
    morning = make_event(occurred_at=SATURDAY - timedelta(hours=3), user_id="alice")
    before = make_event(occurred_at=reset_minute + timedelta(seconds=10), user_id="alice")
    after = [make_event(occurred_at=reset_minute + timedelta(seconds=s), user_id="alice") for s in (40, 200)]
    write(clickhouse, [morning, before, *after])
    reset = SpendReset(
        at=int(reset_minute.timestamp()), spent_before=before.cost, model_spent_before={before.model: before.cost}
    )
    caps = (Cap(parse_duration("1d"), Decimal(1), reset), Cap(None, Decimal(1), reset))
    alice = Scope(ScopeType.USER, "alice")
    now = int(SATURDAY.timestamp()) + 600

    measured = SpendTotals(sql=clickhouse).measure(Target(alice, "", caps, "test"), now)
    tomorrow = SpendTotals(sql=clickhouse).measure(Target(alice, "", caps[:1], "test"), now + 86_400)

    assert [m.spend for m in measured] == [sum(e.cost for e in after)] * 2
    assert [m.spend for m in tomorrow] == [0]  # a day that began after the reset reads whole


def test_the_enforcer_reads_many_targets_in_one_query(clickhouse: ClickhouseStore) -> None:
    search = [make_event(occurred_at=SATURDAY, team_id="search") for _ in range(8)]
    ads_last_month = make_event(occurred_at=SATURDAY - timedelta(days=40), team_id="ads")
    ads = [make_event(occurred_at=SATURDAY, team_id="ads") for _ in range(5)]
    write(clickhouse, [*search, ads_last_month, *ads])
    day, lifetime = Cap(parse_duration("1d"), Decimal(1)), Cap(None, Decimal(1))
    month = Cap(parse_duration("1mo"), Decimal(1))
    targets = [
        Target(Scope(ScopeType.TEAM, "search"), "", (day, lifetime), "test"),
        Target(Scope(ScopeType.TEAM, "ads"), "", (month, lifetime, day), "test"),
        Target(Scope(ScopeType.TEAM, "ads"), "claude-3-haiku", (day,), "test"),
        Target(Scope(ScopeType.TEAM, "nobody"), "", (day, lifetime), "test"),
    ]
    now = int(SATURDAY.timestamp()) + 60
    reader = SpendTotals(sql=clickhouse)

    together = [[m.spend for m in measured] for measured in reader.measure_many(targets, now)]

    search_cost, ads_cost = sum(e.cost for e in search), sum(e.cost for e in ads)
    assert together == [
        [search_cost, search_cost],
        [ads_cost, ads_cost + ads_last_month.cost, ads_cost],
        [sum(e.cost for e in ads if e.model == "claude-3-haiku")],
        [Decimal(0), Decimal(0)],
    ]


def test_caps_reset_at_many_different_minutes_are_read_in_one_query(clickhouse: ClickhouseStore) -> None:
    """More distinct reset minutes than a read asks for separately (`MOST_STARTS`): each user's
    cap still counts only what followed its own reset."""
    users = [f"user-{n}" for n in range(3 * MOST_STARTS)]
    resets = {user: SATURDAY + timedelta(minutes=2 * n + 1) for n, user in enumerate(users)}
    before = [make_event(occurred_at=resets[user] - timedelta(seconds=30), user_id=user) for user in users]
    after = [
        make_event(occurred_at=resets[user] + timedelta(seconds=s), user_id=user) for user in users for s in (5, 70)
    ]
    write(clickhouse, [*before, *after])
    targets = [
        Target(Scope(ScopeType.USER, user), "", (Cap(parse_duration("1d"), Decimal(1), reset(resets[user])),), "test")
        for user in users
    ]
    now = int(SATURDAY.timestamp()) + 3600

    measured = SpendTotals(sql=clickhouse).measure_many(targets, now)

    assert [m.spend for (m,) in measured] == [sum(e.cost for e in after if e.user_id == user) for user in users]


def reset(minute: datetime) -> SpendReset:
    return SpendReset(at=int(minute.timestamp()))


def test_token_sums_pass_uint64_without_wrapping(clickhouse: ClickhouseStore) -> None:
    most = 2**64 - 1
    for _ in range(2):  # two parts, merged below: the merge sums them
        clickhouse.command(
            "INSERT INTO spend_totals (window, window_start, scope_type, scope_id, model, spend, prompt_tokens) "
            f"VALUES ('day', toDateTime('2026-11-28', 'UTC'), 'global', '', '', 0, {most})"
        )
    clickhouse.command("OPTIMIZE TABLE spend_totals FINAL")

    assert [int(n) for (n,) in clickhouse.rows("SELECT prompt_tokens FROM spend_totals")] == [2 * most]


def test_spend_sums_pass_decimal_38_without_wrapping(clickhouse: ClickhouseStore) -> None:
    most = Decimal("99999999999999.999999999999999999999999")  # the largest Decimal(38, 24)
    for _ in range(3):  # three parts, merged below: the merge sums them
        clickhouse.command(
            "INSERT INTO spend_totals (window, window_start, scope_type, scope_id, model, spend) "
            f"VALUES ('month', toDateTime('2026-11-01', 'UTC'), 'global', '', '', toDecimal128('{most}', 24))"
        )
    clickhouse.command("OPTIMIZE TABLE spend_totals FINAL")

    exact = Context(prec=80).multiply(most, 3)  # 39 digits: more than Decimal's default context keeps
    assert [Decimal(spend) for (spend,) in clickhouse.rows("SELECT spend FROM spend_totals")] == [exact]
    assert Decimal(clickhouse.rows("SELECT sum(spend) FROM spend_totals")[0][0]) == exact
