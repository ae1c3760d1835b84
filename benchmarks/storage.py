"""Storage: bytes on disk per counted event in ClickHouse, after merges.
Goal (docs/architecture.md): <= 35 B/event in `events`.

It measures what the aggregator benchmark left behind (real events through the real aggregator;
chDB opens one engine directory per process, so it is handed that benchmark's directory): both
tables are merged down with `OPTIMIZE TABLE ... FINAL`, then `system.parts` gives the active
parts' bytes on disk. The events table's share is per event whatever the traffic; spend_totals
keeps one row per scope, model and window start, so its share per event falls as more events
land in the same minute: the note says how densely the measured events were spread.
"""

from pathlib import Path
from typing import Any

from spendpipe.platform.clickhouse import ClickhouseSettings, ClickhouseStore, connect_clickhouse

TABLES = ("events", "spend_totals")


def run(bootstrap: str, workdir: Path, clickhouse_dir: Path) -> list[dict[str, Any]]:
    """`clickhouse_dir`: a chDB directory holding the aggregator's tables in some database."""
    store = connect_clickhouse(ClickhouseSettings(dsn=f"chdb://{clickhouse_dir}", database="default"))
    try:
        database = _loaded_database(store)
        for table in TABLES:
            store.command(f"OPTIMIZE TABLE {database}.{table} FINAL")
        return _rows(store, database)
    finally:
        store.close()


def _loaded_database(store: ClickhouseStore) -> str:
    """The database whose events table holds the most rows."""
    found = store.rows(
        "SELECT database FROM system.tables WHERE name = 'events' AND database NOT IN ('system', 'default') "
        "ORDER BY total_rows DESC LIMIT 1"
    )
    if not found:
        raise RuntimeError("no database with an events table: run the aggregator benchmark first")
    return str(found[0][0])


EVENTS_GOAL_B = 35
"""Bytes per event on disk in `events` after merges."""


def _rows(store: ClickhouseStore, database: str) -> list[dict[str, Any]]:
    parts = {
        table: (int(rows), int(on_disk), int(compressed), int(uncompressed), int(count))
        for table, rows, on_disk, compressed, uncompressed, count in store.rows(
            "SELECT table, sum(rows), sum(bytes_on_disk), sum(data_compressed_bytes), "
            "sum(data_uncompressed_bytes), count() FROM system.parts "
            "WHERE database = {database:String} AND active AND table IN {tables:Array(String)} GROUP BY table",
            {"database": database, "tables": list(TABLES)},
        )
    }
    events, minutes = (
        int(v) for v in store.rows(f"SELECT count(), uniq(toStartOfMinute(occurred_at)) FROM {database}.events")[0]
    )
    rows = [_row(table, parts[table], events) for table in TABLES]
    total = sum(parts[table][1] for table in TABLES) / events
    density = f"{events:,} events from the aggregator benchmark, in {minutes:,} distinct minute(s)"
    rows.append(_result("total", total, f"{density}; spend_totals per event falls as traffic per minute grows"))
    return rows


def _row(table: str, part: tuple[int, int, int, int, int], events: int) -> dict[str, Any]:
    rows, on_disk, compressed, uncompressed, count = part
    note = (
        f"{rows:,} rows in {count} active part(s) after OPTIMIZE FINAL; "
        f"compressed {compressed / events:,.1f} B/event of {uncompressed / events:,.1f} uncompressed"
    )
    return _result(table, on_disk / events, note)


def _result(what: str, per_event: float, note: str) -> dict[str, Any]:
    return {
        "benchmark": f"storage after merges: {what}",
        "unit": "bytes/event",
        "p50": per_event,
        "p99": per_event,  # one measurement
        "goal": f"≤ {EVENTS_GOAL_B}" if what == "events" else "—",
        "met": per_event <= EVENTS_GOAL_B if what == "events" else None,  # the goal is on `events`
        "note": note,
    }


if __name__ == "__main__":
    import os
    import tempfile

    from benchmarks import aggregator_throughput
    from benchmarks.__main__ import signing_keys, table
    from dev.local_kafka import throwaway_broker

    signing_keys()
    events = int(os.environ.get("SPENDPIPE_BENCH_EVENTS", "100000"))
    with throwaway_broker(prefix="spendpipe-bench-kafka-") as broker, tempfile.TemporaryDirectory() as work:
        aggregator_throughput.run(broker, Path(work), events)
        print(table(run(broker, Path(work), Path(work) / "run-0" / "clickhouse")))
