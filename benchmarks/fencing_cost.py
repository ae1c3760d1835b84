"""The cost of fencing a flush (`aggregator/ownership`): the same flushes written with the
owner check in every insert that counts (and read back after them) and without it, alternated in
one run on one embedded store. A one-event flush (the quiet pipeline's, parsed by pydantic) and
a 100,000-event flush (a backlog's, parsed by ClickHouse); each flush writes new events to its
own partition, so nothing is skipped as a replay.

`python -m benchmarks.fencing_cost` prints the rows as JSON; `make bench` runs it in a process of
its own (chDB holds one engine directory per process).
"""

import time
import uuid
from pathlib import Path
from typing import Any

from benchmarks.own_process import print_rows_on_a_store, rows_of
from benchmarks.stats import median
from benchmarks.traffic import spread_event
from spendpipe.aggregator.ownership import Fence, Ownership
from spendpipe.aggregator.store import SourceRecord, SpendStore
from spendpipe.aggregator.writer import BatchWriter
from spendpipe.platform.clickhouse import ClickhouseStore

TOPIC = "spend.events"
SMALL_FLUSHES = 40
"""One-event flushes of each kind, alternated."""
LARGE_FLUSHES = 3
LARGE = 100_000


def _records(partition: int, count: int) -> list[SourceRecord]:
    now = time.time()
    return [
        SourceRecord(
            partition,
            n,
            spread_event(
                n, event_id=str(uuid.uuid4()), occurred_at=now, keys=500, users=200, teams=20, gateway_id="bench"
            ).to_json(),
        )
        for n in range(count)
    ]


def _timed(writer: BatchWriter, records: list[SourceRecord], fence: Fence | None) -> float:
    started = time.perf_counter()
    writer.write(records, fence)
    return time.perf_counter() - started


def measure(clickhouse: ClickhouseStore) -> dict[str, list[float]]:
    """Seconds per flush, per kind: fenced and unfenced, one-event and 100k."""
    partitions = range(2 * (SMALL_FLUSHES + LARGE_FLUSHES))
    ownership = Ownership(group="bench", topic=TOPIC, settle_s=1.0, embedded=True)
    ownership.assigned(partitions, generation=1)
    ownership.claim(clickhouse)
    fence = ownership.fence
    writer = BatchWriter(store=SpendStore(clickhouse=clickhouse), topic=TOPIC, dedup_horizon_s=600)
    writer.write(_records(len(partitions), 1))  # warm: stage tables, calendar
    seconds: dict[str, list[float]] = {"small fenced": [], "small": [], "large fenced": [], "large": []}
    partition = iter(partitions)
    for n in range(SMALL_FLUSHES):
        for fenced in (True, False) if n % 2 else (False, True):
            records = _records(next(partition), 1)
            seconds["small fenced" if fenced else "small"].append(_timed(writer, records, fence if fenced else None))
    for n in range(LARGE_FLUSHES):
        for fenced in (True, False) if n % 2 else (False, True):
            records = _records(next(partition), LARGE)
            seconds["large fenced" if fenced else "large"].append(_timed(writer, records, fence if fenced else None))
    return seconds


def rows(seconds: dict[str, list[float]]) -> list[dict[str, Any]]:
    out = []
    for kind, label, unit, scale in (
        ("small", "one-event flush", "ms", 1000.0),
        ("large", "100k-event flush", "s", 1.0),
    ):
        fenced, plain = median(seconds[f"{kind} fenced"]), median(seconds[kind])
        out.append(
            {
                "benchmark": f"aggregator: fenced {label} (median of {len(seconds[kind])})",
                "unit": unit,
                "p50": fenced * scale,
                "p99": max(seconds[f"{kind} fenced"]) * scale,
                "goal": "beside unfenced",
                "met": None,
                "note": f"unfenced in the same run: median {plain * scale:,.2f} {unit}, "
                f"worst {max(seconds[kind]) * scale:,.2f} ({fenced / plain:.2f}x)",
            }
        )
    return out


def run(workdir: Path) -> list[dict[str, Any]]:
    """In a process of its own (see the module's docstring)."""
    return rows_of("benchmarks.fencing_cost", str(workdir / "fencing"))


def main() -> None:
    print_rows_on_a_store("fencing", lambda clickhouse: rows(measure(clickhouse)))


if __name__ == "__main__":
    main()
