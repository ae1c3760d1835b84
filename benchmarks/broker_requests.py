"""The Kafka broker's CPU per produce request from a gateway's publisher, for sizing the brokers
(docs/sizing.md). A gateway process sends one produce request to each broker whose partitions a
batch touches (aiokafka puts a broker's partitions in one request), and a batch is what gathered
in `SPENDPIPE_PUBLISH_LINGER_S` (50 ms): a busy process sends each broker about 20 a second, a
quiet one a request per call. So the brokers' load grows with the number of gateway processes
and their linger, and only a little with events.

The benchmark starts a broker of its own (nothing else uses it), and publishes through the
gateway's own `EventPublisher` (same producer settings: idempotent, `acks=all`). Every
`PERIOD_S` it hands over a batch of N events of one key, then waits until the batch is
acknowledged: one produce request each. The broker's CPU is read from its process
(`/proc/<pid>/task/*/schedstat`, Linux). Its baseline, measured just before each phase, is its
CPU while nothing is produced: that is subtracted. The first round warms the broker's JIT up and
is not reported.
"""

import asyncio
import statistics
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiokafka.admin import NewTopic
from prometheus_client import CollectorRegistry

from benchmarks.traffic import spread_event
from spendpipe.contracts.events import SpendEvent
from spendpipe.gateway.metrics import GatewayMetrics
from spendpipe.gateway.recording.publisher import EventPublisher, PublisherOptions
from spendpipe.gateway.recording.spool import DiskSpool
from spendpipe.platform.kafka import KafkaSettings
from spendpipe.platform.kafka_topics import ensure_topics
from spendpipe.platform.local_broker import LocalBroker, free_port_pair

SIZES = (1, 24, 200)
"""Events per request: a call at a time; a sequential SDK process (about 480 calls/s) in 50 ms;
a busy proxy."""
PERIOD_S = 0.05
"""Between batches: the publisher's default linger."""
IDLE_S = 5.0
BUSY_S = 10.0
ROUNDS = 3
"""Each size once per round; the first round is the warm-up."""


def broker_cpu_s(pid: int) -> float:
    """CPU seconds every thread of process `pid` has run (Linux's schedstat, in ns). Not
    `proxy_ratio.process_tree_cpu_s`, whose clock ticks (10 ms) would be a fifth of an idle
    phase's 0.1 s here."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            total += int((task / "schedstat").read_text().split()[0])
        except (FileNotFoundError, ProcessLookupError):
            continue  # the thread ended meanwhile
    return total / 1e9


@contextmanager
def own_broker(workdir: Path) -> Iterator[tuple[str, int]]:
    """A broker for this benchmark alone: (bootstrap, process id)."""
    broker = LocalBroker(workdir / f"broker-requests-{uuid.uuid4().hex[:8]}", free_port_pair())
    broker.start()
    try:
        pid = broker.pid
        assert pid is not None, "the broker has no process id"
        yield broker.bootstrap, pid
    finally:
        broker.stop()


def _events(count: int) -> list[SpendEvent]:
    """`count` events of one key: one partition, one batch."""
    now = datetime.now(UTC)
    return [
        spread_event(0, event_id=str(uuid.uuid4()), occurred_at=now, keys=1, users=1, teams=1, gateway_id="bench")
        for _ in range(count)
    ]


def _phase(publisher: EventPublisher, pid: int, size: int, seconds: float) -> tuple[float, int, float]:
    """(broker CPU s, requests, seconds taken) while sending a batch of `size` every `PERIOD_S`
    (0: nothing)."""
    cpu, started, requests = broker_cpu_s(pid), time.monotonic(), 0
    while time.monotonic() - started < seconds:
        if size:
            for event in _events(size):
                publisher.publish(event)
            assert publisher.wait_idle(30), "the publisher did not deliver"
            requests += 1
        time.sleep(PERIOD_S)
    return broker_cpu_s(pid) - cpu, requests, time.monotonic() - started


def measure(bootstrap: str, pid: int, workdir: Path) -> dict[int, list[tuple[float, float, float]]]:
    """Per size, per reported round: (broker CPU ms per request, requests/s, its CPU ms/s idle)."""
    kafka = KafkaSettings(bootstrap_servers=bootstrap)
    topic = f"bench-broker-requests-{uuid.uuid4().hex[:8]}"
    asyncio.run(ensure_topics(kafka, [NewTopic(topic, num_partitions=1, replication_factor=1)]))
    publisher = EventPublisher(
        kafka=kafka,
        topic=topic,
        spool=DiskSpool(directory=workdir / f"spool-{topic}", max_bytes=1 << 30),
        metrics=GatewayMetrics(registry=CollectorRegistry()),
        options=PublisherOptions(linger_s=0.005),  # woken by the first event, it takes the whole batch
    )
    publisher.start()
    results: dict[int, list[tuple[float, float, float]]] = {size: [] for size in SIZES}
    try:
        _phase(publisher, pid, 1, 2.0)  # connected, the topic's leader known
        for round_ in range(ROUNDS):
            for size in SIZES:
                idle_cpu, _, idle_s = _phase(publisher, pid, 0, IDLE_S)
                busy_cpu, requests, busy_s = _phase(publisher, pid, size, BUSY_S)
                idle_rate = idle_cpu / idle_s  # CPU s per s with nothing produced
                if round_:
                    per_request_ms = (busy_cpu - idle_rate * busy_s) / requests * 1e3
                    results[size].append((per_request_ms, requests / busy_s, idle_rate * 1e3))
    finally:
        publisher.close()
    return results


def _rows(results: dict[int, list[tuple[float, float, float]]]) -> list[dict[str, Any]]:
    rows = []
    for size, runs in results.items():
        per_request = [ms for ms, _, _ in runs]
        rate = statistics.median(rps for _, rps, _ in runs)
        idle = statistics.median(idle for _, _, idle in runs)
        rows.append(
            {
                "benchmark": f"Kafka broker CPU per produce request of {size} event(s), the gateway's publisher",
                "unit": "ms",
                "p50": statistics.median(per_request),
                "p99": max(per_request),
                "goal": "— (sizing)",
                "met": None,
                "note": (
                    f"{len(runs)} rounds after a warm-up, {rate:.0f} requests/s; its CPU while idle"
                    f" ({idle:.0f} ms/s, measured before each) subtracted;"
                    f" per event {statistics.median(per_request) / size * 1e3:,.0f} µs"
                ),
            }
        )
    return rows


def run(workdir: Path) -> list[dict[str, Any]]:
    with own_broker(workdir) as (bootstrap, pid):
        return _rows(measure(bootstrap, pid, workdir))


if __name__ == "__main__":
    from benchmarks.__main__ import table

    with tempfile.TemporaryDirectory(prefix="spendpipe-bench-") as work:
        print(table(run(Path(work))))
