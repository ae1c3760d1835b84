"""The migrations' cluster form as ClickHouse reads it. chDB cannot run a replica (it creates a
`ReplicatedMergeTree` but never activates it), so here ClickHouse's own parser checks every
statement, and chDB refuses a cluster it does not define. With a cluster at hand
(`SPENDPIPE_TEST_CLICKHOUSE_URL` and `SPENDPIPE_TEST_CLICKHOUSE_CLUSTER`), the store is created on
it and every table is a replica; every test on the server engine then runs on it too."""

import os

import pytest

from spendpipe.platform.clickhouse import ClickhouseStore, Cluster
from spendpipe.store.cluster import ClusterError, on_cluster
from spendpipe.store.migrate import LEDGER, bundled_migrations, migrate
from tests.conftest import SERVER_CLUSTER, SERVER_URL

CLUSTER = Cluster("spendpipe")
on_a_cluster = pytest.mark.skipif(
    not (os.environ.get(SERVER_URL) and os.environ.get(SERVER_CLUSTER)),
    reason=f"{SERVER_URL} and {SERVER_CLUSTER} not both set",
)


def test_clickhouse_parses_every_statement_in_its_cluster_form(clickhouse: ClickhouseStore) -> None:
    statements = [LEDGER, *(s for m in bundled_migrations() for s in m.statements)]

    for statement in statements:
        (formatted,) = clickhouse.column("SELECT formatQuery({sql:String})", {"sql": on_cluster(statement, CLUSTER)})
        assert " ON CLUSTER spendpipe" in str(formatted), formatted
        if statement.lstrip().startswith("CREATE TABLE"):
            assert "ENGINE = Replicated" in str(formatted), formatted
            assert "'/clickhouse/tables/{shard}/{database}/{table}', '{replica}'" in str(formatted), formatted


def test_a_cluster_the_server_does_not_define_is_refused(clickhouse: ClickhouseStore) -> None:
    with pytest.raises(ClusterError, match="the server defines no cluster 'no_such_cluster'"):
        migrate(clickhouse, cluster=Cluster("no_such_cluster"))


@on_a_cluster
@pytest.mark.parametrize("clickhouse_engine", ["server"], indirect=True)
def test_on_a_cluster_every_table_is_a_replica(clickhouse: ClickhouseStore) -> None:
    engines = dict(
        clickhouse.rows(
            "SELECT name, engine FROM system.tables WHERE database = currentDatabase() AND engine LIKE '%MergeTree'"
        )
    )
    replicas = clickhouse.column("SELECT table FROM system.replicas WHERE database = currentDatabase()")

    assert len(engines) == 9  # schema_migrations and the 8 tables of the migrations
    assert all(engine.startswith("Replicated") for engine in engines.values()), engines
    assert sorted(replicas) == sorted(engines)
