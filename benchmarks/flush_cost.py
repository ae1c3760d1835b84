"""The cost of one aggregator flush at enforcement_latency's fan-out: `BatchWriter.write` alone
(fenced, as `spendpipe run all` writes) on flushes of that benchmark's background traffic (2,000
keys, 300 users, 30 teams, 1,000 end customers, 3 models: about 3,600 scopes and 17 totals rows
an event), each flush one minute's new events on three partitions, back to back on one embedded
store, its merges running. It prints the median of each step the aggregator reports (`stage`,
`rollup`, `events`), the whole write, and the process CPU per flush (ClickHouse's threads and
background merges included).

`python -m benchmarks.flush_cost [events per flush] [flushes]` (3,000 and 20 by default). To
compare two trees, run it in each with `PYTHONPATH` set to that tree, alternately, under the
measuring lock. Not in `make bench`: `enforcement_latency` holds the end-to-end figure.
"""

import os
import sys
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import orjson

from benchmarks.own_process import Rows, print_rows_on_a_store
from benchmarks.stats import median
from benchmarks.traffic import spread_event
from spendpipe.aggregator.ownership import Ownership
from spendpipe.aggregator.store import SourceRecord, SpendStore
from spendpipe.aggregator.writer import BatchWriter
from spendpipe.platform.clickhouse import ClickhouseStore

TOPIC = "spend.events"
PARTITIONS = 3
SHAPES = 6_000
"""Distinct attributions the traffic cycles through, as enforcement_latency's producer does."""


class Traffic:
    """enforcement_latency's background events, each with a fresh id and the current time,
    spread over the partitions with rising offsets."""

    def __init__(self) -> None:
        now = datetime.now(UTC)
        self._shapes = [
            orjson.loads(
                spread_event(
                    n,
                    event_id=str(uuid.UUID(int=0)),
                    occurred_at=now,
                    keys=2_000,
                    users=300,
                    teams=30,
                    gateway_id="bench",
                ).to_json()
            )
            for n in range(SHAPES)
        ]
        self._sent = 0
        self._offsets = [0] * PARTITIONS

    def batch(self, count: int) -> list[SourceRecord]:
        stamp = datetime.now(UTC).isoformat()
        records = []
        for n in range(self._sent, self._sent + count):
            shape, partition = self._shapes[n % SHAPES], n % PARTITIONS
            value = orjson.dumps(shape | {"event_id": str(uuid.uuid4()), "occurred_at": stamp})
            records.append(SourceRecord(partition, self._offsets[partition], value, shape["key_hash"].encode()))
            self._offsets[partition] += 1
        self._sent += count
        return records


def measure(clickhouse: ClickhouseStore, events: int, flushes: int) -> dict[str, list[float]]:
    """Milliseconds per flush: each step, the whole write and the process CPU during it."""
    ownership = Ownership(group="bench", topic=TOPIC, settle_s=1.0, embedded=True)
    ownership.assigned(range(PARTITIONS), generation=1)
    ownership.claim(clickhouse)
    writer = BatchWriter(store=SpendStore(clickhouse=clickhouse), topic=TOPIC, dedup_horizon_s=600)
    traffic = Traffic()
    writer.write(traffic.batch(events), ownership.fence)  # warm: stage tables, calendar
    batches = [traffic.batch(events) for _ in range(flushes)]
    ms: dict[str, list[float]] = {"stage": [], "rollup": [], "events": [], "write": [], "cpu": []}
    for records in batches:
        cpu, started = _cpu(), time.perf_counter()
        outcome = writer.write(records, ownership.fence)
        ms["write"].append((time.perf_counter() - started) * 1000)
        ms["cpu"].append((_cpu() - cpu) * 1000)
        for step, seconds in outcome.seconds.items():
            ms[step].append(seconds * 1000)
    return ms


def _cpu() -> float:
    times = os.times()
    return times.user + times.system


def rows(ms: dict[str, list[float]], events: int) -> Rows:
    steps = ", ".join(f"{step} {median(ms[step]):,.1f}" for step in ("stage", "rollup", "events"))
    row: dict[str, Any] = {
        "benchmark": f"aggregator flush of {events:,} events at enforcement_latency's fan-out "
        f"(median of {len(ms['write'])})",
        "unit": "ms",
        "p50": median(ms["write"]),
        "p99": max(ms["write"]),
        "goal": "beside the same run of another tree",
        "met": None,
        "note": f"steps (median ms): {steps}; process CPU per flush {median(ms['cpu']):,.1f} ms",
    }
    return [row]


def main() -> None:
    events = int(sys.argv[1]) if len(sys.argv) > 1 else 3_000
    flushes = int(sys.argv[2]) if len(sys.argv) > 2 else 20
    sys.argv[1:] = []  # print_rows_on_a_store reads a directory from the first argument
    print_rows_on_a_store("flush_cost", lambda clickhouse: rows(measure(clickhouse, events, flushes), events))


if __name__ == "__main__":
    main()
