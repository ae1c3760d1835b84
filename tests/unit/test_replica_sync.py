"""On a cluster the aggregator reads its watermarks only once its replica has caught up with the
others (`SpendStore`), so they include every flush any replica took; on one server it does not ask."""

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

    assert log == ["SYSTEM SYNC REPLICA spend_totals", "spend_totals", "SYSTEM SYNC REPLICA events", "events"]


@pytest.mark.parametrize("dsn", ["http://ch.internal", "chdb://.data/clickhouse"])
def test_on_one_server_the_watermarks_are_read_at_once(dsn: str) -> None:
    assert read_watermarks(ClickhouseSettings(dsn=dsn)) == ["spend_totals", "events"]
