"""The migrations' cluster form (`store.cluster`): every statement on every server, replicated
tables, one shard; and nothing changed without a cluster."""

import re

import pytest

from spendpipe.platform.clickhouse import Cluster
from spendpipe.store.cluster import ClusterError, on_cluster
from spendpipe.store.migrate import LEDGER, bundled_migrations, migrate

CLUSTER = Cluster("spendpipe")
ALL_STATEMENTS = [LEDGER, *(s for m in bundled_migrations() for s in m.statements)]


class FakeCluster:
    """Records commands; `system.clusters` answers with `shards`; the ledger starts empty."""

    def __init__(self, shards: int) -> None:
        self.shards = shards
        self.commands: list[str] = []

    def command(self, cmd: str) -> object:
        self.commands.append(cmd)
        return None

    def column(self, sql: str) -> list[object]:
        if "system.clusters" in sql:
            return [self.shards]
        assert sql == "SELECT version FROM schema_migrations"
        return []


@pytest.mark.parametrize("statement", ALL_STATEMENTS)
def test_without_a_cluster_every_statement_is_unchanged(statement: str) -> None:
    assert on_cluster(statement, None) is statement


def test_every_table_is_created_replicated_on_the_cluster() -> None:
    tables = [on_cluster(s, CLUSTER) for s in ALL_STATEMENTS if s.lstrip().startswith("CREATE TABLE")]

    assert len(tables) == 8
    for table in tables:
        assert re.match(r"\s*CREATE TABLE IF NOT EXISTS \w+ ON CLUSTER 'spendpipe'\n\(", table), table
        engine = re.search(r"ENGINE = (\w+)\((.*)\)\n", table)
        assert engine is not None, table
        assert re.fullmatch(r"Replicated(Replacing|Aggregating)?MergeTree", engine[1])
        assert engine[2] == "'/clickhouse/tables/{shard}/{database}/{table}', '{replica}'"


def test_views_and_alters_run_on_every_server() -> None:
    others = [on_cluster(s, CLUSTER) for s in ALL_STATEMENTS if not s.lstrip().startswith("CREATE TABLE")]

    assert others
    for statement in others:
        assert re.match(
            r"(CREATE (OR REPLACE )?VIEW( IF NOT EXISTS)?|ALTER TABLE) \w+ ON CLUSTER 'spendpipe' ", statement
        ), statement
        assert "MergeTree" not in statement


def test_the_configured_path_and_replica_and_the_engines_own_arguments() -> None:
    cluster = Cluster("c1", "/tables/{uuid}", "{host}")
    statement = "CREATE TABLE IF NOT EXISTS t (v UInt8, x UInt8) ENGINE = ReplacingMergeTree(v) ORDER BY x"

    assert on_cluster(statement, cluster) == (
        "CREATE TABLE IF NOT EXISTS t ON CLUSTER 'c1' (v UInt8, x UInt8) "
        "ENGINE = ReplicatedReplacingMergeTree('/tables/{uuid}', '{host}', v) ORDER BY x"
    )


@pytest.mark.parametrize(
    ("statement", "problem"),
    [
        ("INSERT INTO t VALUES (1)", "no cluster form"),
        ("CREATE TABLE IF NOT EXISTS t (x UInt8) ENGINE = Memory", "only MergeTree tables are replicated"),
    ],
)
def test_a_statement_the_rule_does_not_know_is_refused(statement: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        on_cluster(statement, CLUSTER)


def test_migrate_on_a_cluster_runs_every_statement_in_its_cluster_form() -> None:
    client = FakeCluster(shards=1)

    applied = migrate(client, cluster=CLUSTER)

    assert applied == [m.version for m in bundled_migrations()]
    ddl = [c for c in client.commands if not c.startswith("INSERT INTO schema_migrations")]
    assert ddl == [on_cluster(s, CLUSTER) for s in ALL_STATEMENTS]


@pytest.mark.parametrize(
    ("shards", "problem"),
    [(0, "the server defines no cluster 'spendpipe'"), (2, "cluster 'spendpipe' has 2 shards")],
)
def test_a_cluster_of_no_shard_or_several_is_refused_before_any_ddl(shards: int, problem: str) -> None:
    client = FakeCluster(shards=shards)

    with pytest.raises(ClusterError, match=problem):
        migrate(client, cluster=CLUSTER)
    assert client.commands == []
