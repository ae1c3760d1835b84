"""Versioned, idempotent ClickHouse migrations, applied at service start.

Each file in `migrations/` is `NNNN_name.sql`: statements separated by `;` at a line end.
Applied versions are recorded in `schema_migrations`; a version already there is skipped,
and every statement is written to be safe to run twice (`IF NOT EXISTS`), so a start-up
that dies half-way through a migration finishes it on the next start.

On a cluster (`SPENDPIPE_CLICKHOUSE__CLUSTER`) every statement, the ledger's too, runs in its
cluster form (`cluster.on_cluster`): on every server, with replicated tables.
"""

import re
from dataclasses import dataclass
from importlib import resources
from typing import Protocol

from spendpipe.platform.clickhouse import Cluster
from spendpipe.store.cluster import check_one_shard, on_cluster

_FILE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")

LEDGER = """
CREATE TABLE IF NOT EXISTS schema_migrations
(
    version    UInt32,
    name       String,
    applied_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree
ORDER BY version
"""
"""The ledger of applied versions, created before any migration runs."""


class SqlCommands(Protocol):
    def command(self, cmd: str) -> object: ...
    def column(self, sql: str) -> list[object]: ...


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    statements: tuple[str, ...]


def bundled_migrations() -> list[Migration]:
    folder = resources.files("spendpipe.store") / "migrations"
    found = []
    for entry in folder.iterdir():
        match = _FILE.match(entry.name)
        if match:
            text = entry.read_text(encoding="utf-8")
            found.append(Migration(int(match[1]), match[2], split_statements(text)))
    return sorted(found, key=lambda m: m.version)


def split_statements(sql: str) -> tuple[str, ...]:
    lines = [line for line in sql.splitlines() if not line.lstrip().startswith("--")]
    chunks = re.split(r";\s*$", "\n".join(lines), flags=re.MULTILINE)
    return tuple(chunk.strip() for chunk in chunks if chunk.strip())


def migrate(
    client: SqlCommands, migrations: list[Migration] | None = None, *, cluster: Cluster | None = None
) -> list[int]:
    """Apply what is missing, in version order. Returns the versions applied now. `cluster`:
    the cluster to create every table on (`ClickhouseSettings.replication`); None for one server."""
    if cluster is not None:
        check_one_shard(client, cluster)
    client.command(on_cluster(LEDGER, cluster))
    done = {int(str(v)) for v in client.column("SELECT version FROM schema_migrations")}
    applied = []
    for migration in migrations if migrations is not None else bundled_migrations():
        if migration.version in done:
            continue
        for statement in migration.statements:
            client.command(on_cluster(statement, cluster))
        client.command(
            f"INSERT INTO schema_migrations (version, name) VALUES ({migration.version}, '{migration.name}')"
        )
        applied.append(migration.version)
    return applied
