"""The aggregator, a real subprocess, killed with SIGKILL mid-stream and restarted: totals
stay exact, nothing lost, nothing doubled."""

import asyncio
import functools
import operator
from decimal import Decimal
from pathlib import Path

from dev.local_kafka import free_port_pair
from spendpipe.contracts.events import SpendEvent
from spendpipe.contracts.windows import Window
from spendpipe.store.sql_endpoint.client import EndpointSource
from tests.support.events import expected_spend, make_event
from tests.support.pipeline import produce
from tests.support.processes import ServiceProcess
from tests.support.waiting import eventually

EVENTS = 30_000
CHUNK = 1_000


async def test_sigkill_mid_stream_and_restart_keeps_totals_exact(
    kafka_broker: str, make_topics, tmp_path: Path
) -> None:
    # given an aggregator process flushing small batches, and a stream of events
    topics = await make_topics(kafka_broker)
    port = free_port_pair()
    aggregator = ServiceProcess(
        ["run", "aggregator"],
        {
            "SPENDPIPE_KAFKA__BOOTSTRAP_SERVERS": kafka_broker,
            "SPENDPIPE_TOPICS__EVENTS": topics.events,
            "SPENDPIPE_TOPICS__EVENTS_DEAD_LETTER": topics.events_dead_letter,
            "SPENDPIPE_TOPICS__FLUSHES": topics.flushes,
            "SPENDPIPE_CLICKHOUSE__DSN": f"chdb://{tmp_path / 'clickhouse'}",
            "SPENDPIPE_GROUP_ID": f"crash-{topics.events}",
            "SPENDPIPE_BATCH_SIZE": "700",
            "SPENDPIPE_FETCH_MIN_BYTES": "1",
            "SPENDPIPE_SQL_ENDPOINT__PORT": str(port),
        },
        tmp_path / "aggregator.log",
    )
    store = EndpointSource(url=f"http://127.0.0.1:{port}")
    events = [make_event() for _ in range(EVENTS)]

    async def counted() -> int:
        return int((await asyncio.to_thread(store.query, "SELECT count() FROM events"))[1][0][0])

    aggregator.start()
    try:
        aggregator.wait_http_ok(f"http://127.0.0.1:{port}/healthz")
        stream = asyncio.create_task(_stream(kafka_broker, topics.events, events))

        # when it is killed twice while events keep arriving, and restarted each time
        for threshold in (EVENTS // 6, EVENTS // 2):
            await eventually(counted, functools.partial(operator.le, threshold), within=120, what="kill point")
            aggregator.kill()
            aggregator.start()
            aggregator.wait_http_ok(f"http://127.0.0.1:{port}/healthz")
        await stream

        # then every event is counted once, and every total is exact
        await eventually(counted, lambda n: n >= EVENTS, within=180, what="all events counted")
        _, rows = await asyncio.to_thread(store.query, "SELECT count(), uniqExact(event_id), sum(cost) FROM events")
        assert rows[0][:2] == [EVENTS, EVENTS]
        assert Decimal(rows[0][2]) == sum(e.cost for e in events)
        for window in (Window.MINUTE, Window.DAY, Window.MONTH):
            _, rows = await asyncio.to_thread(
                store.query,
                "SELECT scope_type, scope_id, model, sum(spend) FROM spend_totals "
                "WHERE window = {w:String} GROUP BY scope_type, scope_id, model",
                {"w": window.value},
            )
            assert {(t, i, m): Decimal(s) for t, i, m, s in rows} == expected_spend(events, window)
    finally:
        aggregator.stop()


async def _stream(bootstrap: str, topic: str, events: list[SpendEvent]) -> None:
    for start in range(0, len(events), CHUNK):
        await produce(bootstrap, topic, [e.to_json() for e in events[start : start + CHUNK]])
