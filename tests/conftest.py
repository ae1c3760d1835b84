"""Shared fixtures: the real Kafka broker (one per session), uuid topics, a fresh ClickHouse
database per test on the real engine (chDB), and aggregator settings that point at them."""

import os
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from spendpipe.platform.clickhouse import ClickhouseSettings, ClickhouseStore, connect_clickhouse
from spendpipe.platform.kafka import KafkaSettings
from spendpipe.platform.kafka_topics import topic_specs
from spendpipe.platform.local_kafka import LocalBroker, free_port_pair, throwaway_broker
from spendpipe.schemas.migrate import migrate
from spendpipe.schemas.topics import Topics
from spendpipe.services.aggregator.settings import AggregatorSettings, SqlEndpointSettings
from spendpipe.services.enforcer.settings import EnforcerSettings

TIERS = ("unit", "integration", "e2e")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test belongs to the tier of its folder; --strict-markers keeps the names honest."""
    for item in items:
        tier = Path(str(item.fspath)).relative_to(Path(__file__).parent).parts[0]
        if tier not in TIERS:
            raise pytest.UsageError(f"{item.nodeid}: tests live under {', '.join(TIERS)}")
        item.add_marker(getattr(pytest.mark, tier))


@pytest.fixture(scope="session")
def kafka_broker() -> Iterator[str]:
    """Bootstrap address of a real broker: `SPENDPIPE_TEST_KAFKA_BOOTSTRAP` when set, otherwise
    a KRaft broker started for this session on a free loopback port and stopped after it."""
    external = os.environ.get("SPENDPIPE_TEST_KAFKA_BOOTSTRAP")
    if external:
        yield external
        return
    with throwaway_broker() as bootstrap:
        yield bootstrap


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[LocalBroker]:
    """A broker of this test's own, for tests that stop and restart it."""
    broker = LocalBroker(tmp_path / "kafka", free_port_pair())
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


async def create_topics(bootstrap: str, topics: Topics, partitions: int) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics(topic_specs(topics, partitions=partitions, replication=1))
    finally:
        await admin.close()


@pytest.fixture
def make_topics() -> Callable[[str, int], object]:
    """`await make_topics(bootstrap, partitions)`: a fresh set of uuid-named topics, created."""

    async def make(bootstrap: str, partitions: int = 3) -> Topics:
        suffix = uuid.uuid4().hex[:12]
        topics = Topics(
            events=f"events-{suffix}",
            events_dead_letter=f"events-dlq-{suffix}",
            flushes=f"flushes-{suffix}",
            decisions=f"decisions-{suffix}",
            budgets=f"budgets-{suffix}",
            alerts=f"alerts-{suffix}",
        )
        await create_topics(bootstrap, topics, partitions)
        return topics

    return make


@pytest.fixture(scope="session")
def chdb_dir() -> Iterator[Path]:
    """chDB allows one engine directory per process: every test of this process shares it,
    each in a database of its own."""
    with tempfile.TemporaryDirectory(prefix="spendpipe-chdb-") as path:
        yield Path(path)


@pytest.fixture
def clickhouse_settings(chdb_dir: Path) -> ClickhouseSettings:
    return ClickhouseSettings(dsn=f"chdb://{chdb_dir}", database=f"t_{uuid.uuid4().hex[:16]}")


@pytest.fixture
def clickhouse(clickhouse_settings: ClickhouseSettings) -> Iterator[ClickhouseStore]:
    store = connect_clickhouse(clickhouse_settings)
    migrate(store)
    try:
        yield store
    finally:
        store.command(f"DROP DATABASE IF EXISTS {clickhouse_settings.database}")
        store.close()


def aggregator_settings(
    bootstrap: str, topics: Topics, clickhouse: ClickhouseSettings, **overrides: object
) -> AggregatorSettings:
    values: dict[str, object] = {
        "kafka": KafkaSettings(bootstrap_servers=bootstrap),
        "topics": topics,
        "clickhouse": clickhouse,
        "group_id": f"aggregator-{uuid.uuid4().hex[:12]}",
        "fetch_min_bytes": 1,
        "sql_endpoint": SqlEndpointSettings(enabled=False),
    }
    values.update(overrides)
    return AggregatorSettings(**values)  # type: ignore[arg-type]


def enforcer_settings(
    bootstrap: str, topics: Topics, clickhouse: ClickhouseSettings, **overrides: object
) -> EnforcerSettings:
    values: dict[str, object] = {
        "kafka": KafkaSettings(bootstrap_servers=bootstrap),
        "topics": topics,
        "clickhouse": clickhouse,
        "enforcer_group_id": f"enforcer-{uuid.uuid4().hex[:12]}",
    }
    values.update(overrides)
    return EnforcerSettings(**values)  # type: ignore[arg-type]
