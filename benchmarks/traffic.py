"""What the benchmarks share: the spread of their synthetic traffic, how far a consumer group is
behind, and the check that an aggregator wrote a backlog exactly."""

import asyncio
import time
from datetime import datetime
from decimal import Decimal

from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient

from spendpipe.contracts.events import SpendEvent
from spendpipe.platform.clickhouse import ClickhouseStore

MODELS = ("gpt-4o-mini", "gpt-4o", "gpt-3.5-turbo")


def spread_event(
    n: int, *, event_id: str, occurred_at: datetime | float, keys: int, users: int, teams: int, gateway_id: str
) -> SpendEvent:
    """The n-th event of high-cardinality traffic: `keys` keys, `users` users, `teams` teams,
    3 orgs, 1,000 end customers, 3 models, costs of 1 to 7 gpt-4o-mini calls."""
    return SpendEvent(
        event_id=event_id,
        occurred_at=occurred_at,
        key_hash=f"{n % keys:064x}",
        user_id=f"user-{n % users}",
        team_id=f"team-{n % teams}",
        org_id=f"org-{n % 3}",
        end_user=f"customer-{n % 1_000}",
        model=MODELS[n % len(MODELS)],
        prompt_tokens=10,
        completion_tokens=20,
        total_tokens=30,
        cost=Decimal("0.0000135") * (1 + n % 7),
        gateway_id=gateway_id,
    )


async def consumer_lag(bootstrap: str, group: str, topic: str) -> int:
    """Records on `topic` past the offsets `group` has committed."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        committed = await admin.list_consumer_group_offsets(group)
    finally:
        await admin.close()
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        partitions = [tp for tp in committed if tp.topic == topic]
        ends = await consumer.end_offsets(partitions)
    finally:
        await consumer.stop()
    return sum(ends[tp] - committed[tp].offset for tp in partitions)


async def written_exactly(store: ClickhouseStore, events: int, timeout_s: float = 30.0) -> None:
    """Return once `events` holds the backlog's `events` rows, having checked that the totals count
    each of them once. An aggregator's `counted` moves when a flush's totals land, before that
    flush's copy into `events` (`BatchWriter.write`): right after the count reaches the backlog,
    the last copy may still be running."""
    requests = store.rows(
        "SELECT sum(requests) FROM spend_totals WHERE window = 'day' AND scope_type = 'global' AND model = ''"
    )
    assert int(requests[0][0]) == events, f"the totals hold {requests[0][0]} requests of {events} events"
    deadline = time.monotonic() + timeout_s
    copied = 0
    while time.monotonic() < deadline:
        copied = int(store.rows("SELECT count() FROM events")[0][0])
        if copied >= events:
            break
        await asyncio.sleep(0.05)
    assert copied == events, f"`events` holds {copied} rows of {events} events"
