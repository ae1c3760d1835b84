"""The spend dashboard (deploy/grafana/dashboards/spend.json) against real data: calls of two
teams around a fixed time range go through the real aggregator into chDB; then every ClickHouse
panel's SQL, its macros expanded as the plugin expands them (tests/support/grafana.py), runs on
the store and again through the SQL endpoint with clickhouse-connect's `http://` client, and gives
the columns its format needs and the sums worked out here by hand, to the last decimal place. No
bookkeeping row and nothing outside the range counts. The endpoint accepts each query with the
parameters the plugin's driver (clickhouse-go) sends, and answers in the Native framing that
driver reads (the last test; more types in test_sql_endpoint_native.py)."""

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import clickhouse_connect
import httpx

from spendpipe.contracts.events import SpendEvent
from spendpipe.platform.clickhouse import ClickhouseSettings, ClickhouseStore
from spendpipe.store.sql_endpoint.server import SqlEndpoint
from tests.conftest import aggregator_settings
from tests.support.events import make_event
from tests.support.grafana import (
    FORMAT_TIME_SERIES,
    TimeRange,
    clickhouse_panels,
    load_dashboard,
    provisioned_datasources,
)
from tests.support.pipeline import events_counted, produce, running_aggregator

K1, K2, K3 = ("1" * 64, "2" * 64, "3" * 64)
TINY = Decimal("0.000000000000000000000001")  # the smallest amount a cost may carry
DAY = datetime(2025, 3, 10, tzinfo=UTC)  # a day of a month long past: not in "this month"


def at(hour: int, minute: int) -> datetime:
    return DAY.replace(hour=hour, minute=minute)


RANGE = TimeRange(start=at(9, 30), end=at(11, 45), interval=timedelta(hours=1))
"""The dashboard's range: the hours 09:00, 10:00 and 11:00 overlap it; 10:00 and 11:00 begin in it."""


def _events() -> list[SpendEvent]:
    def call(when: datetime, who: tuple[str, str, str | None], model: str, cost: Decimal, **more: Any) -> SpendEvent:
        team, key, customer = who
        return make_event(occurred_at=when, team_id=team, key_hash=key, end_user=customer, model=model,
                          model_group=None, cost=cost, **more)  # fmt: skip

    now = datetime.now(UTC)
    return [
        # the hour before: in no panel
        call(at(8, 59), ("eng", K1, "acme"), "gpt-4o", Decimal(100), request_tags=("batch",), provider="openai"),
        # in the tables (its hour overlaps the range), not in the charts
        call(at(9, 10), ("eng", K1, "acme"), "gpt-4o", Decimal("0.5"), request_tags=("batch",), provider="openai"),
        call(at(10, 5), ("eng", K2, "globex"), "claude", Decimal("0.25"), status="failure",
             request_tags=("batch", "nightly"), provider="anthropic"),
        call(at(10, 40), ("ops", K3, None), "gpt-4o", Decimal(1) + TINY, provider="openai"),
        call(at(11, 50), ("ops", K3, "acme"), "claude", Decimal("0.125"), request_tags=("nightly", "nightly"),
             provider="anthropic"),  # its hour began in the range; a tag named twice counts once
        call(at(12, 10), ("eng", K1, "acme"), "gpt-4o", Decimal(7)),  # the hour after: in no panel
        call(now, ("eng", K2, "globex"), "gpt-4o", Decimal(2)),  # this month: top spenders only
        call(now, ("ops", K3, "acme"), "claude", Decimal("0.3")),
    ]  # fmt: skip


def hour(h: int) -> datetime:
    return at(h, 0)


EXPECTED: dict[str, tuple[tuple[str, ...], list[tuple[Any, ...]]]] = {
    "Spend in the time range": (("spend",), [(Decimal("1.875") + TINY,)]),
    "Spend over time by team": (
        ("time", "team", "spend"),
        [(hour(10), "eng", Decimal("0.25")), (hour(10), "ops", Decimal(1) + TINY), (hour(11), "ops", Decimal("0.125"))],
    ),
    "Spend over time by model": (
        ("time", "model", "spend"),
        [(hour(10), "claude", Decimal("0.25")), (hour(10), "gpt-4o", Decimal(1) + TINY),
         (hour(11), "claude", Decimal("0.125"))],
    ),
    "Spend by team": (
        ("team", "spend", "requests", "failures"),
        [("ops", Decimal("1.125") + TINY, 2, 0), ("eng", Decimal("0.75"), 2, 1)],
    ),
    "Spend by key": (
        ("key_hash", "spend", "requests", "failures"),
        [(K3, Decimal("1.125") + TINY, 2, 0), (K1, Decimal("0.5"), 1, 0), (K2, Decimal("0.25"), 1, 1)],
    ),
    "Spend by model": (
        ("model", "spend", "requests", "failures"),
        [("gpt-4o", Decimal("1.5") + TINY, 2, 0), ("claude", Decimal("0.375"), 2, 1)],
    ),
    "Spend by end customer": (
        ("end_customer", "spend", "requests", "failures"),
        [("acme", Decimal("0.625"), 2, 0), ("globex", Decimal("0.25"), 1, 1)],
    ),
    "Spend by tag": (
        ("tag", "spend", "requests", "failures"),
        [("batch", Decimal("0.75"), 2, 1), ("nightly", Decimal("0.375"), 2, 1)],
    ),
    "Spend by provider": (
        ("provider", "spend", "requests", "failures"),
        [("openai", Decimal("1.5") + TINY, 2, 0), ("anthropic", Decimal("0.375"), 2, 1)],
    ),
    "Top spenders this month": (
        ("scope_type", "rank", "scope_id", "spend", "requests"),
        [("end_user", 1, "globex", Decimal(2), 1), ("end_user", 2, "acme", Decimal("0.3"), 1),
         ("key", 1, K2, Decimal(2), 1), ("key", 2, K3, Decimal("0.3"), 1),
         ("team", 1, "eng", Decimal(2), 1), ("team", 2, "ops", Decimal("0.3"), 1)],
    ),
}  # fmt: skip


def utc(row: Sequence[Any]) -> tuple[Any, ...]:
    """Times as UTC-aware datetimes, however the client hands them back."""
    return tuple(
        (v if v.tzinfo else v.replace(tzinfo=UTC)).astimezone(UTC) if isinstance(v, datetime) else v for v in row
    )


def check_panel(panel: dict[str, Any], columns: tuple[str, ...], rows: Sequence[Sequence[Any]]) -> None:
    """The panel's answer is what it should be, in the shape its format needs: a time series frame
    is `time` first (a DateTime), then the series' name, then the value; a table has its columns."""
    title = panel["title"]
    assert (columns, [utc(row) for row in rows]) == EXPECTED[title], title
    if panel["targets"][0]["format"] == FORMAT_TIME_SERIES:
        assert columns[0] == "time", title
        assert all(isinstance(row[0], datetime) and isinstance(row[1], str) for row in rows), title
    spend = columns.index("spend")
    assert all(isinstance(row[spend], Decimal) for row in rows), title


def run_every_panel(panels: list[dict[str, Any]], clickhouse: ClickhouseStore, endpoint: SqlEndpoint) -> None:
    """Each panel's SQL for RANGE on the store, through the SQL endpoint with clickhouse-connect,
    and as the plugin's driver (clickhouse-go over HTTP) sends it: Native, and max_execution_time
    its query timeout + 5 s, which the endpoint must not refuse."""
    database = clickhouse.settings.database
    timeout = int(provisioned_datasources()["spendpipe-clickhouse"]["jsonData"]["queryTimeout"])
    as_the_plugin = {"database": database, "default_format": "Native", "client_protocol_version": "54460",
                     "max_execution_time": str(timeout + 5)}  # fmt: skip
    url = f"http://127.0.0.1:{endpoint.port}/"
    http = clickhouse_connect.get_client(host="127.0.0.1", port=endpoint.port, username="default", database=database)
    try:
        for panel in panels:
            sql = RANGE.expand(panel["targets"][0]["rawSql"])
            columns, rows = clickhouse.query(sql)
            check_panel(panel, tuple(columns), rows)
            answer = http.query(sql)
            check_panel(panel, tuple(answer.column_names), answer.result_rows)
            plugin = httpx.post(url, params=as_the_plugin, content=sql, headers={"X-ClickHouse-User": "default"})
            assert plugin.status_code == 200, f"{panel['title']}: {plugin.text}"
    finally:
        http.close()


async def test_every_spend_panel_shows_exact_sums_of_its_range(
    kafka_broker: str,
    make_topics,
    clickhouse: ClickhouseStore,
    clickhouse_settings: ClickhouseSettings,
    endpoint: SqlEndpoint,
) -> None:
    # given calls around the range, counted by the real aggregator
    topics = await make_topics(kafka_broker)
    events = _events()
    async with running_aggregator(aggregator_settings(kafka_broker, topics, clickhouse_settings), clickhouse):
        await produce(kafka_broker, topics.events, [e.to_json() for e in events])
        await events_counted(clickhouse, len(events))
    assert clickhouse.rows("SELECT count() FROM spend_totals WHERE window = 'watermark'")[0][0] > 0
    panels = clickhouse_panels(load_dashboard())
    assert {panel["title"] for panel in panels} == set(EXPECTED), "every ClickHouse panel has its expectation"
    # when Grafana's queries run, on the store and through the SQL endpoint
    # then each panel shows its hand-worked sums (check_panel)
    await asyncio.to_thread(run_every_panel, panels, clickhouse, endpoint)

    # and two-hour points (toStartOfInterval counts them from the Unix epoch) make 10:00 and 11:00 one
    (by_team,) = [panel for panel in panels if panel["title"] == "Spend over time by team"]
    two_hours = TimeRange(start=RANGE.start, end=RANGE.end, interval=timedelta(hours=2))
    rows = clickhouse.rows(two_hours.expand(by_team["targets"][0]["rawSql"]))
    assert [utc(row) for row in rows] == [
        (hour(10), "eng", Decimal("0.25")),
        (hour(10), "ops", Decimal("1.125") + TINY),
    ]


def test_the_endpoint_writes_native_for_the_revision_the_plugins_driver_names(endpoint: SqlEndpoint) -> None:
    # when clickhouse-go asks, as it does for every query over HTTP, for Native at revision 54460
    answer = httpx.post(
        f"http://127.0.0.1:{endpoint.port}/",
        params={"default_format": "Native", "client_protocol_version": "54460"},
        content="SELECT 'x' AS a",
    )

    # then each block starts with its block info (field 1: not overflows, field 2: bucket -1, end), as for
    # any revision above 0, and each column's type is followed by its serialization kind (0: dense), as
    # from revision 54454 on (ClickHouse's NativeWriter; clickhouse-go's proto.Block.Decode reads both)
    block_info = b"\x01\x00\x02\xff\xff\xff\xff\x00"
    assert answer.content == block_info + b"\x01\x01\x01a\x06String\x00\x01x"
