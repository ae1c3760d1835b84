"""A broker whose request path the JVM has compiled, as a production broker's has, before anything
is measured on it.

A broker just started runs Kafka's request path interpreted or half compiled, and at a gateway's
pace (one produce request per linger, about 20 a second) its JIT compiler works on it for
minutes. Measured on 2026-12-04, 20-60 s after a start, the threads that serve requests took
1.2-1.9 ms of CPU per produce request of 24 events, and the compiler 0.5-1.4 ms more. After
20,000 requests sent one at a time (about 13 s here) those threads took 0.5-0.8 ms for it. A
production broker serves many clients and is long past that. Here the broker shares two cores
with whatever is measured, and a cold one would charge its compiling to the gateway's calls.
docs/performance.md, "A cold broker, and benchmarks on a warm one".

`warm_up` sends the requests with the gateway's producer settings (idempotent, `acks=all`), each
a batch of `EVENTS` records of `RECORD_BYTES` to one partition of a topic of its own.
"""

import asyncio
import contextlib
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.admin import NewTopic

from dev.local_kafka import throwaway_broker
from spendpipe.platform.kafka import KafkaSettings
from spendpipe.platform.kafka_topics import ensure_topics

REQUESTS = 20_000
"""Enough: 60,000 left a request costing what 20,000 did."""
EVENTS = 24
"""Records per request: what a sequential SDK gateway gathers in its 50 ms linger."""
RECORD_BYTES = 32
"""Small: what warms is the code path, not the bytes. 20,000 requests of 24 such records (15 MB) stay
inside the broker's first 64 MiB log segment, so no segment is rolled and flushed in the middle
of a measurement."""


@dataclass(frozen=True)
class WarmUp:
    requests: int
    seconds: float

    @property
    def rate(self) -> float:
        """Produce requests per second, one at a time."""
        return self.requests / self.seconds


async def _send(bootstrap: str, requests: int) -> WarmUp:
    kafka = KafkaSettings(bootstrap_servers=bootstrap)
    topic = f"bench-warm-up-{uuid.uuid4().hex[:8]}"
    await ensure_topics(kafka, [NewTopic(topic, num_partitions=1, replication_factor=1)])
    producer = AIOKafkaProducer(**kafka.aiokafka_kwargs(), enable_idempotence=True, acks="all", linger_ms=0)
    await producer.start()
    record = b"x" * RECORD_BYTES
    try:
        started = time.perf_counter()
        for _ in range(requests):
            batch = producer.create_batch()
            for _ in range(EVENTS):
                batch.append(key=b"warm-up", value=record, timestamp=None)
            await (await producer.send_batch(batch, topic, partition=0))
        return WarmUp(requests, time.perf_counter() - started)
    finally:
        await producer.stop()


def warm_up(bootstrap: str, requests: int = REQUESTS) -> WarmUp:
    """Send `requests` produce requests to the broker at `bootstrap`, each awaited before the next."""
    return asyncio.run(_send(bootstrap, requests))


@contextlib.contextmanager
def warm_broker() -> Iterator[tuple[str, WarmUp]]:
    """A throwaway broker, warmed up: (bootstrap, the warm-up)."""
    with throwaway_broker(prefix="spendpipe-bench-kafka-") as bootstrap:
        yield bootstrap, warm_up(bootstrap)


def warm_up_row(warmed: WarmUp) -> dict[str, Any]:
    """The warm-up as a row of `make bench`'s table: how fast the broker took requests one at a
    time (a ceiling for what any one producer can send it here)."""
    return {
        "benchmark": f"Kafka broker warm-up: {warmed.requests:,} produce requests of {EVENTS} events, one at a time",
        "unit": "requests/s",
        "p50": warmed.rate,
        "p99": warmed.rate,
        "goal": "— (before measuring)",
        "met": None,
        "note": f"{warmed.seconds:.1f} s; the JVM compiles the broker's request path meanwhile",
    }
