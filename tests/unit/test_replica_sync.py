"""On a cluster the aggregator reads its watermarks only once its replica has fetched what the
others took (`SpendStore`, `SYSTEM SYNC REPLICA ... LIGHTWEIGHT`), so they include every flush any
replica took, and its inserts that count carry `insert_quorum`; on one server it does neither.
Only the SQL built is tested here: no ClickHouse cluster is reachable from the test machines."""

from typing import Any

import pytest

from spendpipe.aggregator.store import SpendStore
from spendpipe.platform.clickhouse import ClickhouseSettings


class RecordingClickhouse:
    """Records the statements in order; every read returns no row."""

    def __init__(self, settings: ClickhouseSettings) -> None:
        self.settings = settings
        self.log: list[str] = []

    def command(self, sql: str, parameters: dict[str, Any] | None = None, **_: Any) -> None:
        self.log.append(sql)

    def rows(self, sql: str, parameters: dict[str, Any] | None = None) -> list[tuple[Any, ...]]:
        self.log.append(sql.split(" FROM ")[1].split(maxsplit=1)[0])
        return []


def read_watermarks(settings: ClickhouseSettings) -> list[str]:
    clickhouse = RecordingClickhouse(settings)
    store = SpendStore(clickhouse=clickhouse)  # type: ignore[arg-type]
    store.totals_watermarks("spend.events")
    store.events_watermarks("spend.events")
    return clickhouse.log


def test_on_a_cluster_each_watermark_is_read_after_its_table_caught_up() -> None:
    log = read_watermarks(ClickhouseSettings(dsn="http://ch.internal", cluster="spendpipe"))

    assert log == [
        "SYSTEM SYNC REPLICA spend_totals LIGHTWEIGHT",
        "spend_totals",
        "SYSTEM SYNC REPLICA events LIGHTWEIGHT",
        "events",
    ]


@pytest.mark.parametrize("dsn", ["http://ch.internal", "chdb://.data/clickhouse"])
def test_on_one_server_the_watermarks_are_read_at_once(dsn: str) -> None:
    assert read_watermarks(ClickhouseSettings(dsn=dsn)) == ["spend_totals", "events"]


def events_insert(settings: ClickhouseSettings) -> str:
    clickhouse = RecordingClickhouse(settings)
    SpendStore(clickhouse=clickhouse).insert_events(after={0: -1})  # type: ignore[arg-type]
    (sql,) = clickhouse.log
    return sql


def test_on_a_cluster_an_insert_that_counts_needs_a_quorum_of_replicas() -> None:
    cluster = events_insert(ClickhouseSettings(dsn="http://ch.internal", cluster="spendpipe"))
    assert cluster.endswith(", max_execution_time = 30, insert_quorum = 'auto', insert_quorum_timeout = 30000")

    two = events_insert(ClickhouseSettings(dsn="http://ch.internal", cluster="spendpipe", insert_quorum="2"))
    assert two.endswith(", max_execution_time = 30, insert_quorum = 2, insert_quorum_timeout = 30000")


@pytest.mark.parametrize("dsn", ["http://ch.internal", "chdb://.data/clickhouse"])
def test_on_one_server_an_insert_asks_for_no_quorum(dsn: str) -> None:
    assert events_insert(ClickhouseSettings(dsn=dsn)).endswith(", max_execution_time = 30")


def test_a_quorum_is_a_cluster_setting_and_a_number_or_auto() -> None:
    with pytest.raises(ValueError, match="__INSERT_QUORUM need __CLUSTER"):
        ClickhouseSettings(dsn="http://ch.internal", insert_quorum="2")
    with pytest.raises(ValueError, match="insert_quorum"):
        ClickhouseSettings(dsn="http://ch.internal", cluster="spendpipe", insert_quorum="2; DROP TABLE events")
