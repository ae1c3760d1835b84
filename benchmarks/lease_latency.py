"""Lease answer latency: from a gateway's lease request being handed to the producer to the
enforcer's grant for it being read back from `spend.leases`, while the aggregator of the same
`spendpipe run all` process counts background traffic (0, 2k and 5k events/s by default) and so
flushes to the embedded ClickHouse, whose one store thread the lease desk shares.

Run it alone: `.venv/bin/python -m benchmarks.lease_latency` (a throwaway broker, a temporary
store; `SPENDPIPE_BENCH_LEASE_LOADS=0,2000` picks the levels). Each probe is a new chain asking
for a cent of a leased budget that the traffic never reaches; probes go in rounds of `BURST` at
once (as many gateways asking together), `PROBE_EVERY_S` apart. The pipeline's log is scanned
afterwards for consumer-group trouble (a rebalance or a heartbeat failure of the lease requests'
group).
"""

import asyncio
import contextlib
import os
import secrets
import sys
import tempfile
import time
import uuid
from decimal import Decimal
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from benchmarks.__main__ import signing_keys
from benchmarks.enforcement_latency import _background, _pipeline_process
from benchmarks.stats import percentile
from dev.local_kafka import free_port_pair, throwaway_broker
from spendpipe.admin.budget_admin import BudgetAdmin
from spendpipe.contracts.leases import REQUEST_MESSAGE_TYPE, LeaseGrant, LeaseRequest, commitment_of
from spendpipe.contracts.topics import TYPE_HEADER, Topics
from spendpipe.platform.kafka import KafkaSettings
from spendpipe.platform.kafka_topics import ensure_topics, topic_specs

SCOPE = "team:bench-leased"
LEVEL_S = 20.0
PROBE_EVERY_S = 0.1
BURST = int(os.environ.get("SPENDPIPE_BENCH_LEASE_BURST", "20"))
DEADLINE_S = 15.0
"""A probe not answered by then counts as never answered."""


def main() -> int:
    loads = tuple(int(n) for n in os.environ.get("SPENDPIPE_BENCH_LEASE_LOADS", "0,2000,5000").split(","))
    signing_keys()
    with throwaway_broker(prefix="spendpipe-bench-kafka-") as bootstrap, tempfile.TemporaryDirectory() as work:
        topics = Topics(**{name: f"bench-lease-{name}-{uuid.uuid4().hex[:6]}" for name in Topics.model_fields})
        asyncio.run(
            ensure_topics(KafkaSettings(bootstrap_servers=bootstrap), topic_specs(topics, partitions=3, replication=1))
        )
        admin = BudgetAdmin(kafka=KafkaSettings(bootstrap_servers=bootstrap), topics=topics)
        admin.set({"scope": SCOPE, "max_budget": "1000000", "budget_duration": "24h", "headroom_leases": True})
        group = f"bench-aggregator-{uuid.uuid4().hex[:8]}"
        workdir = Path(work) / "leases"
        with _pipeline_process(bootstrap, topics, group, workdir, free_port_pair()):
            for load in loads:
                with _traffic(bootstrap, topics.events, load) as achieved:
                    latencies = asyncio.run(_probes(bootstrap, topics))
                answered = [x for x in latencies if x is not None]
                print(
                    f"load {load} events/s (achieved {achieved[0] if achieved else 0:.0f}): {len(latencies)} probes, "
                    f"{len(latencies) - len(answered)} unanswered; p50 {percentile(answered, 0.5) * 1000:.0f} ms, "
                    f"p99 {percentile(answered, 0.99) * 1000:.0f} ms, max {max(answered) * 1000:.0f} ms",
                    flush=True,
                )
        trouble = [
            line
            for line in (workdir / "run-all.log").read_text(errors="replace").splitlines()
            if "leases" in line and any(w in line.lower() for w in ("heartbeat", "rebalanc", "revoked", "rejoin"))
        ]
        print(f"consumer-group lines about the lease requests' group: {len(trouble)}")
        for line in trouble[:10]:
            print("  ", line[:240])
    return 0


def _traffic(bootstrap: str, topic: str, load: int) -> contextlib.AbstractContextManager[list[float]]:
    """Background events at `load` per second (none at 0); holds the rate achieved once it ends."""
    return _background(bootstrap, topic, load) if load else contextlib.nullcontext([])


async def _probes(bootstrap: str, topics: Topics) -> list[float | None]:
    consumer = AIOKafkaConsumer(topics.leases, bootstrap_servers=bootstrap, auto_offset_reset="latest")
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await consumer.start()
    await producer.start()
    await consumer.seek_to_end()
    await consumer.position(next(iter(consumer.assignment())))
    waiting: dict[str, asyncio.Future[float]] = {}

    async def read() -> None:
        async for record in consumer:
            grant = LeaseGrant.model_validate_json(record.value or b"")
            future = waiting.pop(grant.chain, None)
            if future is not None and not future.done():
                future.set_result(time.monotonic())

    reader = asyncio.create_task(read())
    latencies: list[float | None] = []
    try:
        ends = time.monotonic() + LEVEL_S
        while time.monotonic() < ends:
            latencies += await asyncio.gather(*[_probe(producer, topics, waiting, n) for n in range(BURST)])
            await asyncio.sleep(PROBE_EVERY_S)  # pacing between rounds, not synchronisation
    finally:
        reader.cancel()
        await consumer.stop()
        await producer.stop()
    return latencies


async def _probe(
    producer: AIOKafkaProducer, topics: Topics, waiting: dict[str, "asyncio.Future[float]"], n: int
) -> float | None:
    """One new chain's request: seconds until its grant was read (None: not within `DEADLINE_S`)."""
    chain, secret = secrets.token_hex(16), secrets.token_hex(32)
    request = LeaseRequest(
        kind="request",
        gateway_id=f"bench-gateway-{n}",
        chain=chain,
        scope=SCOPE,
        want=Decimal("0.01"),
        commitment=commitment_of(secret),
    )
    answered = waiting[chain] = asyncio.get_running_loop().create_future()
    sent = time.monotonic()
    await producer.send_and_wait(
        topics.lease_requests,
        request.model_dump_json().encode(),
        key=request.key.encode(),
        headers=[(TYPE_HEADER, REQUEST_MESSAGE_TYPE.encode())],
    )
    try:
        received: float = await asyncio.wait_for(answered, DEADLINE_S)
    except TimeoutError:
        return None
    return received - sent


if __name__ == "__main__":
    sys.exit(main())
