"""The migrations on a ClickHouse cluster: one rule that turns each single-server statement into
its cluster form, so every migration is written once.

With `SPENDPIPE_CLICKHOUSE__CLUSTER` set, `migrate` runs every statement through `on_cluster`:

- `CREATE TABLE|VIEW ... <name>` and `ALTER TABLE <name>` gain `ON CLUSTER '<cluster>'` after the
  name, so each server of the cluster runs it (ClickHouse runs an `ALTER` of a replicated table
  once per shard and replicates it);
- `ENGINE = <Kind>MergeTree[(args)]` becomes `ENGINE = Replicated<Kind>MergeTree('<path>',
  '<replica>'[, args])`, the path and replica name from the settings (by default ClickHouse's
  customary `{shard}`/`{database}`/`{table}` path and `{replica}` macro).

Without a cluster the statements are returned unchanged, byte for byte. A statement the rule does
not know (an `INSERT`, a table of another engine) is refused rather than run on one server only:
a new migration must fit the rule or extend it here.

The aggregator's cluster path is here too: `sync_replica`, the statement that makes a replica
fetch every part the others took before a watermark is read, and `quorum_settings`, the
`insert_quorum` of the inserts that count.

The cluster must have one shard (`check_one_shard`): a flush's totals and the watermark that
says which offsets they include are one part of one table, and the fence reads the owner claims
in the same statement. Spread over shards, neither would hold. Every replica holds every row, so
reads need no `Distributed` table (docs/operations.md#a-clickhouse-cluster).
"""

import re
from typing import Protocol

from spendpipe.platform.clickhouse import Cluster

_NAMED = re.compile(
    r"^\s*(?:CREATE (?:OR REPLACE )?(?:TABLE|VIEW|MATERIALIZED VIEW)(?: IF NOT EXISTS)?|ALTER TABLE) \w+(?=\s)"
)
_ENGINE = re.compile(r"\bENGINE = (\w*)MergeTree\b(?:\(([^()]*)\))?")


class ClusterError(Exception):
    """The cluster named in the settings cannot hold the store as it is: a setting to fix."""


class SqlRows(Protocol):
    def column(self, sql: str) -> list[object]: ...


def on_cluster(statement: str, cluster: Cluster | None) -> str:
    """`statement` as it runs on `cluster`; unchanged when there is none."""
    if cluster is None:
        return statement
    named = _NAMED.match(statement)
    if named is None:
        raise ValueError(f"no cluster form for this statement: {statement.splitlines()[0]!r}")
    statement = named[0] + cluster.clause + statement[named.end() :]
    if statement.lstrip().startswith("CREATE TABLE"):
        statement, engines = _ENGINE.subn(lambda engine: _replicated(engine, cluster), statement, count=1)
        if not engines:
            raise ValueError(f"only MergeTree tables are replicated: {statement.splitlines()[0]!r}")
    return statement


def _replicated(engine: re.Match[str], cluster: Cluster) -> str:
    arguments = [f"'{cluster.replica_path}'", f"'{cluster.replica_name}'"]
    if engine[2] and engine[2].strip():
        arguments.append(engine[2].strip())
    return f"ENGINE = Replicated{engine[1]}MergeTree({', '.join(arguments)})"


def sync_replica(table: str) -> str:
    """Wait until this replica has fetched every part the others took, as its replication queue
    holds them now. `LIGHTWEIGHT` waits for those fetches only, not for merges and mutations
    queued behind them, which a watermark read does not need (a plain `SYSTEM SYNC REPLICA` waits
    for the whole queue: under load, for minutes)."""
    return f"SYSTEM SYNC REPLICA {table} LIGHTWEIGHT"


def quorum_settings(cluster: Cluster | None, timeout_s: int) -> str:
    """`SETTINGS` items (each after a comma) of an insert that counts on `cluster`: it succeeds
    only once `insert_quorum` replicas hold its part, so a replica lost after the insert does not
    take a flush whose offsets are committed with it. The wait for the quorum is bounded by the
    insert's own `timeout_s` (`insert_quorum_timeout`, ClickHouse's default is 10 minutes), after
    which the flush fails and is retried. Nothing on one server."""
    if cluster is None:
        return ""
    quorum = cluster.insert_quorum
    required = f"{quorum!r}" if quorum == "auto" else f"{int(quorum)}"
    return f", insert_quorum = {required}, insert_quorum_timeout = {int(timeout_s) * 1000}"


def check_one_shard(client: SqlRows, cluster: Cluster) -> None:
    """Refuse a cluster the server does not define, or one of several shards."""
    shards = client.column(
        f"SELECT count(DISTINCT shard_num) FROM system.clusters WHERE cluster = '{cluster.name}'"  # name: [\w.-]
    )
    count = int(str(shards[0])) if shards else 0
    if count == 0:
        raise ClusterError(
            f"SPENDPIPE_CLICKHOUSE__CLUSTER: the server defines no cluster {cluster.name!r} "
            "(see SELECT DISTINCT cluster FROM system.clusters)"
        )
    if count > 1:
        raise ClusterError(
            f"SPENDPIPE_CLICKHOUSE__CLUSTER: cluster {cluster.name!r} has {count} shards; spendpipe's tables need "
            "one shard (any number of replicas): a flush's totals and watermarks must be one part of one table"
        )
