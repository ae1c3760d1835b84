"""The Kafka broker's CPU per produce request from a gateway's publisher, for sizing the brokers
(docs/sizing.md). A gateway process sends one produce request to each broker whose partitions a
batch touches (aiokafka puts a broker's partitions in one request), and a batch is what gathered
in `SPENDPIPE_PUBLISH_LINGER_S` (50 ms): a busy process sends each broker about 20 a second, a
quiet one a request per call. So the brokers' load grows with the number of gateway processes
and their linger, and only a little with events.

The benchmark starts a broker of its own (nothing else uses it), and publishes through the
gateway's own `EventPublisher` (same producer settings: idempotent, `acks=all`). Every
`PERIOD_S` it hands over a batch of N events of one key, then waits until the batch is
acknowledged: one produce request each. The broker's CPU is read from its threads
(`/proc/<pid>/task/*/schedstat`, Linux). Its baseline, measured just before each phase, is its
CPU while nothing is produced: that is subtracted.

The broker is warmed up first (`warm_broker.warm_up`). Even so, at a gateway's pace its JIT
compiler keeps working in bursts for minutes (on 2026-12-04 it still took 0.2-0.9 ms per request
in most 10 s phases of the three minutes after a warm-up, little in the others). That is a start-up
cost, and a long-running broker has paid it, so the figure for sizing is the CPU of the threads
that serve requests (Kafka's network threads and request handlers); the whole broker's, and its
compiler's, are in the note.
"""

import asyncio
import statistics
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiokafka.admin import NewTopic
from prometheus_client import CollectorRegistry

from benchmarks.traffic import spread_event
from benchmarks.warm_broker import WarmUp, warm_up
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
"""Each size once per round."""


REQUEST_PATH = "data-plane-kafk"
"""How Linux names (15 characters) the broker's network threads and request handlers: the threads
that serve a produce request."""
COMPILER = "CompilerThre"
"""... and the JVM's JIT compiler threads (C1, C2)."""


@dataclass(frozen=True)
class BrokerCpu:
    """CPU time of a broker's threads: those that serve requests, the JIT compiler's, and all of
    them. In seconds as `of` reads it (Linux's schedstat, in ns); `Round` scales it to ms per
    request."""

    request_path: float
    compiler: float
    total: float

    @classmethod
    def of(cls, pid: int) -> "BrokerCpu":
        """Not `proxy_ratio.process_tree_cpu_s`, whose clock ticks (10 ms) would be a fifth of an
        idle phase's 0.1 s here."""
        request_path = compiler = total = 0
        for task in Path(f"/proc/{pid}/task").iterdir():
            try:
                name = (task / "comm").read_text()
                ns = int((task / "schedstat").read_text().split()[0])
            except (FileNotFoundError, ProcessLookupError):
                continue  # the thread ended meanwhile
            total += ns
            if name.startswith(REQUEST_PATH):
                request_path += ns
            elif COMPILER in name:
                compiler += ns
        return cls(request_path / 1e9, compiler / 1e9, total / 1e9)

    def __sub__(self, other: "BrokerCpu") -> "BrokerCpu":
        return BrokerCpu(
            self.request_path - other.request_path, self.compiler - other.compiler, self.total - other.total
        )

    def __mul__(self, factor: float) -> "BrokerCpu":
        return BrokerCpu(self.request_path * factor, self.compiler * factor, self.total * factor)


@contextmanager
def own_broker(workdir: Path) -> Iterator[tuple[str, int, WarmUp]]:
    """A broker for this benchmark alone, warmed up: (bootstrap, process id, the warm-up)."""
    broker = LocalBroker(workdir / f"broker-requests-{uuid.uuid4().hex[:8]}", free_port_pair())
    broker.start()
    try:
        pid = broker.pid
        assert pid is not None, "the broker has no process id"
        yield broker.bootstrap, pid, warm_up(broker.bootstrap)
    finally:
        broker.stop()


def _events(count: int) -> list[SpendEvent]:
    """`count` events of one key: one partition, one batch."""
    now = datetime.now(UTC)
    return [
        spread_event(0, event_id=str(uuid.uuid4()), occurred_at=now, keys=1, users=1, teams=1, gateway_id="bench")
        for _ in range(count)
    ]


def _phase(publisher: EventPublisher, pid: int, size: int, seconds: float) -> tuple[BrokerCpu, int, float]:
    """(broker CPU, requests, seconds taken) while sending a batch of `size` every `PERIOD_S`
    (0: nothing)."""
    cpu, started, requests = BrokerCpu.of(pid), time.monotonic(), 0
    while time.monotonic() - started < seconds:
        if size:
            for event in _events(size):
                publisher.publish(event)
            assert publisher.wait_idle(30), "the publisher did not deliver"
            requests += 1
        time.sleep(PERIOD_S)
    return BrokerCpu.of(pid) - cpu, requests, time.monotonic() - started


Round = tuple[BrokerCpu, float, float]
"""(the broker's CPU per request in ms, its idle CPU subtracted; requests/s; its whole CPU in ms
per s while idle)"""


def measure(bootstrap: str, pid: int, workdir: Path) -> dict[int, list[Round]]:
    """Per size, each round."""
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
    results: dict[int, list[Round]] = {size: [] for size in SIZES}
    try:
        _phase(publisher, pid, 1, 2.0)  # connected, the topic's leader known
        for _ in range(ROUNDS):
            for size in SIZES:
                idle_cpu, _, idle_s = _phase(publisher, pid, 0, IDLE_S)
                busy_cpu, requests, busy_s = _phase(publisher, pid, size, BUSY_S)
                idle_rate = idle_cpu * (1 / idle_s)  # CPU s per s with nothing produced
                per_request_ms = (busy_cpu - idle_rate * busy_s) * (1e3 / requests)
                results[size].append((per_request_ms, requests / busy_s, idle_rate.total * 1e3))
    finally:
        publisher.close()
    return results


def _rows(results: dict[int, list[Round]], warmed: WarmUp) -> list[dict[str, Any]]:
    rows = []
    for size, runs in results.items():
        request_path = [cpu.request_path for cpu, _, _ in runs]
        rate = statistics.median(rps for _, rps, _ in runs)
        idle = statistics.median(idle for _, _, idle in runs)
        rows.append(
            {
                "benchmark": (
                    f"Kafka broker CPU per produce request of {size} event(s) from the gateway's publisher:"
                    " the threads that serve requests"
                ),
                "unit": "ms",
                "p50": statistics.median(request_path),
                "p99": max(request_path),
                "goal": "— (sizing)",
                "met": None,
                "note": (
                    f"{len(runs)} rounds after a warm-up of {warmed.requests:,} requests ({warmed.rate:,.0f}/s),"
                    f" {rate:.0f} requests/s; its CPU while idle ({idle:.0f} ms/s, measured before each)"
                    f" subtracted; per event {statistics.median(request_path) / size * 1e3:,.0f} µs;"
                    f" the whole broker {statistics.median(cpu.total for cpu, _, _ in runs):.2f} ms, of which"
                    f" its JIT compiler {statistics.median(cpu.compiler for cpu, _, _ in runs):.2f}"
                ),
            }
        )
    return rows


def run(workdir: Path) -> list[dict[str, Any]]:
    with own_broker(workdir) as (bootstrap, pid, warmed):
        return _rows(measure(bootstrap, pid, workdir), warmed)


if __name__ == "__main__":
    from benchmarks.__main__ import table

    with tempfile.TemporaryDirectory(prefix="spendpipe-bench-") as work:
        print(table(run(Path(work))))
