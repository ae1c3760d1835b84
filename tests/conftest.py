"""Shared fixtures: the real Kafka broker (one per session), uuid topics, a fresh ClickHouse
database per test on the real engine (chDB, and a ClickHouse server for the tests marked
`on_every_engine` when `SPENDPIPE_TEST_CLICKHOUSE_URL` is set), and aggregator settings that
point at them."""

import os
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypedDict

import pytest

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from dev.local_kafka import LocalBroker, free_port_pair, throwaway_broker
from spendpipe.aggregator.settings import AggregatorSettings
from spendpipe.contracts.topics import Topics
from spendpipe.enforcer.settings import EnforcerSettings
from spendpipe.platform import local_broker
from spendpipe.platform.clickhouse import ClickhouseSettings, ClickhouseStore, connect_clickhouse
from spendpipe.platform.kafka import KafkaSettings
from spendpipe.platform.kafka_topics import ensure_topics, topic_specs
from spendpipe.store.migrate import migrate
from spendpipe.store.sql_endpoint.settings import SqlEndpointSettings
from tests.support.signing import WriterKey

TIERS = ("unit", "integration", "e2e", "deploy")
NOT_IN_UNIT = frozenset({"kafka_broker", "own_broker", "clickhouse_settings"})
"""Fixtures that start a broker or open a ClickHouse engine: `make unit` runs without either."""


def pytest_configure() -> None:
    """Under pytest-xdist (`make test`) each worker is a process of its own with its own broker
    and chDB directory; the ports it starts servers on come from a share of
    `local_broker.PORTS` of its own, so two workers never pick the same free port at once."""
    worker = os.environ.get("PYTEST_XDIST_WORKER")  # "gw0", "gw1", ... set by pytest-xdist
    if worker:
        local_broker.PORTS = port_share(
            local_broker.PORTS, int(worker.removeprefix("gw")), int(os.environ["PYTEST_XDIST_WORKER_COUNT"])
        )


def port_share(ports: range, index: int, count: int) -> range:
    """The `index`th of `count` contiguous, disjoint shares of `ports` (a port pair p, p+1 stays in one)."""
    size = len(ports) // count
    return range(ports.start + index * size, ports.start + (index + 1) * size)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test belongs to the tier of its folder; --strict-markers keeps the names honest."""
    for item in items:
        tier = Path(str(item.fspath)).relative_to(Path(__file__).parent).parts[0]
        if tier not in TIERS:
            raise pytest.UsageError(f"{item.nodeid}: tests live under {', '.join(TIERS)}")
        used = NOT_IN_UNIT.intersection(getattr(item, "fixturenames", ()))
        if tier == "unit" and used:
            raise pytest.UsageError(f"{item.nodeid}: a unit test does no I/O, but it uses {', '.join(sorted(used))}")
        item.add_marker(getattr(pytest.mark, tier))


@pytest.fixture(scope="session", autouse=True)
def signing_keys() -> Iterator[WriterKey]:
    """The writer key of every test process and every process it starts: signing is required by
    default, so the enforcer, the budget writers and the gateways all get it (private and public)
    through `SPENDPIPE_SIGNING__*`. Tests that forge or rotate make keys of their own."""
    key = WriterKey.generate()
    with pytest.MonkeyPatch.context() as patch:
        for name, value in key.env().items():
            patch.setenv(name, value)
        yield key


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
    """spendpipe's topics as production creates them (`spendpipe topics create`), on one broker."""
    await ensure_topics(
        KafkaSettings(bootstrap_servers=bootstrap), topic_specs(topics, partitions=partitions, replication=1)
    )


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
            declared_budgets=f"declared-budgets-{suffix}",
            alerts=f"alerts-{suffix}",
            sessions=f"sessions-{suffix}",
            lease_requests=f"lease-requests-{suffix}",
            leases=f"leases-{suffix}",
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


SERVER_URL = "SPENDPIPE_TEST_CLICKHOUSE_URL"
"""A ClickHouse server for the store tests, e.g. `http://default:secret@127.0.0.1:8123`: the
tests create a database of their own on it (so the user needs CREATE/DROP DATABASE)."""
SERVER_CLUSTER = "SPENDPIPE_TEST_CLICKHOUSE_CLUSTER"
"""With `SERVER_URL`: a cluster (one shard) that server belongs to. The server tests then create
their databases on it, with replicated tables (docs/operations.md#a-clickhouse-cluster)."""

ENGINES = (
    "chdb",
    pytest.param("server", marks=pytest.mark.skipif(not os.environ.get(SERVER_URL), reason=f"{SERVER_URL} not set")),
)

on_every_engine = pytest.mark.parametrize("clickhouse_engine", ENGINES, indirect=True)
"""`pytestmark = on_every_engine`: the module's tests run on chDB, and again on the server
named by `SPENDPIPE_TEST_CLICKHOUSE_URL` (skipped, saying so, when it is not set)."""


@pytest.fixture
def clickhouse_engine(request: pytest.FixtureRequest) -> str:
    """`chdb` unless the test is parametrized over `ENGINES` (`on_every_engine`)."""
    return str(getattr(request, "param", "chdb"))


@pytest.fixture
def clickhouse_settings(clickhouse_engine: str, request: pytest.FixtureRequest) -> ClickhouseSettings:
    """A database of this test's own, not yet created (`clickhouse` creates and drops it)."""
    database = f"t_{uuid.uuid4().hex[:16]}"
    if clickhouse_engine == "server":
        return ClickhouseSettings(
            dsn=os.environ[SERVER_URL], database=database, cluster=os.environ.get(SERVER_CLUSTER) or None
        )
    chdb_dir: Path = request.getfixturevalue("chdb_dir")
    return ClickhouseSettings(dsn=f"chdb://{chdb_dir}", database=database)


@pytest.fixture
def clickhouse(clickhouse_settings: ClickhouseSettings) -> Iterator[ClickhouseStore]:
    store = connect_clickhouse(clickhouse_settings)
    cluster = clickhouse_settings.replication
    try:
        migrate(store, cluster=cluster)
        yield store
    finally:
        on_every_server = f"{cluster.clause} SYNC" if cluster else ""  # SYNC: its replicas leave Keeper now
        store.command(f"DROP DATABASE IF EXISTS {clickhouse_settings.database}{on_every_server}")
        store.close()


class ParseRoute(TypedDict):
    """`BatchWriter`'s (and `AggregatorSettings`') thresholds that choose how a batch is parsed."""

    canonical_from: int
    parse_in_clickhouse_from: int


PARSE_ROUTES: dict[str, ParseRoute] = {
    "canonical-then-clickhouse": {"canonical_from": 1, "parse_in_clickhouse_from": 1},
    "canonical-then-pydantic": {"canonical_from": 1, "parse_in_clickhouse_from": 1_000_000},
    "parsed-by-pydantic": {"canonical_from": 1_000_000, "parse_in_clickhouse_from": 1_000_000},
    "checked-by-clickhouse": {"canonical_from": 1_000_000, "parse_in_clickhouse_from": 1},
}
ROUTES_FOR_EVERY_TEST = ("canonical-then-clickhouse", "canonical-then-pydantic", "parsed-by-pydantic")


@pytest.fixture(params=[PARSE_ROUTES[name] for name in ROUTES_FOR_EVERY_TEST], ids=ROUTES_FOR_EVERY_TEST)
def parse_route(request: pytest.FixtureRequest) -> ParseRoute:
    """Each way the aggregator parses a batch (`BatchWriter`): the canonical form's fast path in
    ClickHouse, the rest by ClickHouse's full check or by pydantic; or all by pydantic. A test
    that takes this runs with each (the settings or `BatchWriter` keywords)."""
    route: ParseRoute = request.param
    return route


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
