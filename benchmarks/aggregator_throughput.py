"""Aggregator throughput: events/s from real Kafka into ClickHouse (embedded chDB) in one
process, and the consumer lag when it is done. Goal (docs/architecture.md): >= 100,000 events/s."""

import asyncio
import time
import uuid
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.admin import NewTopic
from prometheus_client import CollectorRegistry

from benchmarks.stats import median
from benchmarks.traffic import consumer_lag, spread_event
from spendpipe.aggregator.app import Aggregator
from spendpipe.aggregator.metrics import AggregatorMetrics
from spendpipe.aggregator.settings import AggregatorSettings
from spendpipe.contracts.topics import Topics
from spendpipe.platform.clickhouse import ClickhouseSettings, connect_clickhouse
from spendpipe.platform.kafka import KafkaSettings, build_broker
from spendpipe.platform.kafka_topics import ensure_topics
from spendpipe.store.migrate import migrate
from spendpipe.store.sql_endpoint.settings import SqlEndpointSettings

LATE_SPREAD_S = 1
"""Events occur within this many seconds before the run: fresh traffic, as gateways send it."""


async def _produce(bootstrap: str, topic: str, events: int) -> None:
    await ensure_topics(KafkaSettings(bootstrap_servers=bootstrap), [NewTopic(topic, 3, 1)])
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=20, max_batch_size=1 << 20, acks=1)
    await producer.start()
    now = time.time()
    pending = []
    for n in range(events):
        event = spread_event(
            n,
            event_id=str(uuid.uuid4()),
            occurred_at=now - (n % LATE_SPREAD_S),
            keys=500,
            users=200,
            teams=20,
            gateway_id="bench",
        )
        pending.append(await producer.send(topic, event.to_json()))
        if len(pending) >= 20_000:
            await asyncio.gather(*pending)
            pending.clear()
    await asyncio.gather(*pending)
    await producer.stop()


async def _consume(bootstrap: str, topics: Topics, workdir: Path, events: int) -> tuple[float, int]:
    settings = AggregatorSettings(
        kafka=KafkaSettings(bootstrap_servers=bootstrap),
        topics=topics,
        clickhouse=ClickhouseSettings(dsn=f"chdb://{workdir / 'clickhouse'}", database=f"b_{uuid.uuid4().hex[:8]}"),
        group_id=f"bench-{uuid.uuid4().hex[:8]}",
        sql_endpoint=SqlEndpointSettings(enabled=False),
    )
    store = connect_clickhouse(settings.clickhouse)
    migrate(store)
    broker = build_broker(settings.kafka)
    metrics = AggregatorMetrics(registry=CollectorRegistry())
    Aggregator(settings=settings, broker=broker, clickhouse=store, metrics=metrics)
    started = time.perf_counter()
    await broker.start()
    try:
        # the counter moves after each flush; reading it costs no ClickHouse query
        while metrics.counted._value.get() < events:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        elapsed = time.perf_counter() - started
        assert int(store.rows("SELECT count() FROM events")[0][0]) == events
    finally:
        await broker.stop()
    lag = await consumer_lag(bootstrap, settings.group_id, topics.events)
    store.close()
    return elapsed, lag


def run(bootstrap: str, workdir: Path, events: int, runs: int = 1) -> list[dict[str, Any]]:
    rates, lags = [], []
    for run_no in range(runs):
        topics = Topics(events=f"bench-throughput-{uuid.uuid4().hex[:8]}")
        asyncio.run(_produce(bootstrap, topics.events, events))
        elapsed, lag = asyncio.run(_consume(bootstrap, topics, workdir / f"run-{run_no}", events))
        rates.append(events / elapsed)
        lags.append(lag)
    rate = median(rates)
    return [
        {
            "benchmark": f"aggregator: {events:,} events, Kafka → ClickHouse",
            "unit": "events/s",
            "p50": rate,
            "p99": min(rates),
            "goal": "≥ 100,000",
            "met": rate >= 100_000,
            "note": f"lag at end: {max(lags)}",
        },
    ]
