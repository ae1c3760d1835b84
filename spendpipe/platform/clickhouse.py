"""ClickHouse through clickhouse-connect only; the DSN picks the engine.

`chdb:///path` runs the real ClickHouse engine inside this process (chDB): no server, but
one process owns the directory, so everything that reads it goes through that process.
`http(s)://host:port` talks to a ClickHouse server over its HTTP interface, with the
credentials and TLS settings below. The same SQL runs on both.
"""

import asyncio
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import unquote, urlsplit, urlunsplit

import clickhouse_connect
from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator

T = TypeVar("T")

_TLS_FILES = ("ca_cert", "client_cert", "client_cert_key")
"""clickhouse-connect's own argument names, so they pass through unchanged."""

REPLICA_PATH = "/clickhouse/tables/{shard}/{database}/{table}"
REPLICA_NAME = "{replica}"
INSERT_QUORUM = "auto"
"""ClickHouse's customary Keeper path and replica name of a replicated table: the `{shard}` and
`{replica}` macros come from each server's `<macros>`, `{database}` and `{table}` from the table."""


@dataclass(frozen=True, slots=True)
class Cluster:
    """Where the tables are replicated: a cluster of the servers' `remote_servers`, and the
    arguments of every `Replicated*MergeTree` (`spendpipe.store.cluster` renders the DDL)."""

    name: str
    replica_path: str = REPLICA_PATH
    replica_name: str = REPLICA_NAME
    insert_quorum: str = INSERT_QUORUM
    """The `insert_quorum` of the inserts that count (`spendpipe.store.cluster.quorum_settings`)."""

    @property
    def clause(self) -> str:
        """What follows a table's (or database's) name in DDL run on every server of the cluster."""
        return f" ON CLUSTER '{self.name}'"


class ClickhouseSettings(BaseModel):
    dsn: str = "chdb://.data/clickhouse"
    """`chdb://<dir>` (relative) or `chdb:///<abs dir>` for the embedded engine,
    `http(s)://host[:port]` for a server (8123 / 8443 when the port is left out)."""
    database: str = Field(default="spendpipe", pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
    """Created if missing (server: by a client on the user's default database)."""
    username: str | None = None
    """Server only; ClickHouse's `default` user when unset."""
    password: SecretStr | None = None
    verify: bool = True
    """https only: check the server's certificate and host name. Off only for a test server."""
    ca_cert: str | None = None
    """https only: PEM bundle to check the server with (the system store when unset;
    `certifi` for certifi's bundle)."""
    client_cert: str | None = None
    """https only: PEM client certificate (with intermediates) for mutual TLS."""
    client_cert_key: str | None = None
    """https only: the client certificate's private key, when it is not in `client_cert`."""
    cluster: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
    """Server only: the cluster (one shard, any number of replicas) whose servers the migrations
    create every table on (`ON CLUSTER`), as `Replicated*MergeTree`. Unset: one server, plain
    `*MergeTree` (docs/operations.md#a-clickhouse-cluster)."""
    replica_path: str = Field(default=REPLICA_PATH, pattern=r"^/[^'\\]*$")
    """With `cluster`: each replicated table's path in ClickHouse Keeper; must name `{table}` (or
    `{uuid}`) so tables do not share one."""
    replica_name: str = Field(default=REPLICA_NAME, pattern=r"^[^'\\]+$")
    """With `cluster`: the replica's name, the same on every table of a server."""
    insert_quorum: str = Field(default=INSERT_QUORUM, pattern=r"^(auto|[0-9]{1,3})$")
    """With `cluster`: ClickHouse's `insert_quorum` of the aggregator's inserts that count: how
    many replicas must hold a flush's part before it succeeds. `auto`, a majority of the replicas
    (with two replicas, both: one down stops the flushes; set 1 to keep flushing then); `0` or
    `1`, no quorum (the part is on the replica that took it, and reaches the others later)."""

    merge_nice: int = Field(default=19, ge=0, le=19)
    """Embedded engine only: the nice value of a background merge's threads while it runs
    (ClickHouse's `os_threads_nice_value_merge_mutate`). 19, the lowest priority: merges take the
    CPU that flushes and judgements leave, rather than slowing the flush an announcement waits for
    (on two cores at 10,000 events/s they used a quarter of a core). Merges put off pile up parts
    only until ClickHouse delays inserts (`parts_to_delay_insert`), which hands the CPU back to
    them. 0: as urgent as the flushes. ClickHouse sets it only in a process that holds
    `CAP_SYS_NICE` (it resets the value after each merge, which needs it); elsewhere merges run as
    the flushes do. A server takes it from its own configuration."""

    @model_validator(mode="before")
    @classmethod
    def _credentials_out_of_dsn(cls, data: Any) -> Any:
        """`https://user:secret@host` works too: the credentials move to `username`/`password`,
        so the DSN itself never carries a secret into logs or error messages."""
        if not isinstance(data, dict) or not isinstance(data.get("dsn"), str):
            return data
        url = urlsplit(data["dsn"])
        if url.scheme not in ("http", "https") or (url.username is None and url.password is None):
            return data
        if data.get("username") is not None or data.get("password") is not None:
            raise ValueError("credentials are both in __DSN and in __USERNAME/__PASSWORD: keep one")
        host = url.netloc.rpartition("@")[2]
        return {
            **data,
            "dsn": urlunsplit(url._replace(netloc=host)),
            "username": unquote(url.username or "") or None,
            "password": unquote(url.password or "") or None,
        }

    @field_validator("dsn")
    @classmethod
    def _known_scheme(cls, dsn: str) -> str:
        if not dsn.startswith(("chdb://", "http://", "https://")):
            raise ValueError("must start with chdb://, http:// or https://")
        if dsn.startswith("chdb://"):
            if not chdb_path(dsn):
                raise ValueError("chdb:// needs a directory, as in chdb:///var/lib/spendpipe")
            return dsn
        url = urlsplit(dsn)
        if not url.hostname:
            raise ValueError("needs a host, as in https://clickhouse.internal:8443")
        try:
            url.port  # noqa: B018 - parsing the port is the check
        except ValueError:
            raise ValueError("the port must be a number from 0 to 65535") from None
        if url.path.strip("/") or url.query or url.fragment:
            raise ValueError("takes scheme, host and port only; the database is SPENDPIPE_CLICKHOUSE__DATABASE")
        return dsn

    @model_validator(mode="after")
    def _options_fit_the_engine(self) -> "ClickhouseSettings":
        """Every misplaced option at once, named as its variable's suffix (`__CA_CERT`)."""
        given = [name for name in ("username", "password", *_TLS_FILES) if getattr(self, name) is not None]
        given += [] if self.verify else ["verify"]
        problems = []
        if self.embedded and given:
            problems.append(f"{_suffixes(given)} apply to a server (http(s):// DSN), not chdb://")
        if not self.embedded and "merge_nice" in self.model_fields_set:
            problems.append("__MERGE_NICE applies to chdb://; a server sets it in its own configuration")
        tls = [name for name in given if name in (*_TLS_FILES, "verify")]
        if not self.embedded and not self.secure and tls:
            problems.append(f"{_suffixes(tls)} need an https:// DSN")
        if self.client_cert_key is not None and self.client_cert is None:
            problems.append("__CLIENT_CERT_KEY needs __CLIENT_CERT")
        problems += self._cluster_problems()
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def _cluster_problems(self) -> list[str]:
        problems = []
        if self.cluster is not None and self.embedded:
            # chDB creates a ReplicatedMergeTree but never activates its replica: inserts hang
            problems.append("__CLUSTER applies to a server (http(s):// DSN), not chdb://")
        replication = [name for name in _DEFAULTS if getattr(self, name) != _DEFAULTS[name]]
        if replication and self.cluster is None:
            problems.append(f"{_suffixes(replication)} need __CLUSTER")
        if not any(macro in self.replica_path for macro in ("{table}", "{uuid}")):
            problems.append("__REPLICA_PATH must contain {table} or {uuid}: every table needs a path of its own")
        return problems

    @property
    def embedded(self) -> bool:
        return self.dsn.startswith("chdb://")

    @property
    def replication(self) -> Cluster | None:
        """The cluster the tables are replicated on; None on one server (or chDB)."""
        if self.cluster is None:
            return None
        return Cluster(self.cluster, self.replica_path, self.replica_name, self.insert_quorum)

    @property
    def secure(self) -> bool:
        return self.dsn.startswith("https://")


_DEFAULTS = {"replica_path": REPLICA_PATH, "replica_name": REPLICA_NAME, "insert_quorum": INSERT_QUORUM}


def _suffixes(fields: list[str]) -> str:
    return ", ".join(f"__{name.upper()}" for name in fields)


def chdb_path(dsn: str) -> str:
    """`chdb:///abs/dir` -> `/abs/dir`; `chdb://rel/dir` -> `rel/dir` (relative to the cwd)."""
    return dsn.removeprefix("chdb://")


def client_args(settings: ClickhouseSettings) -> dict[str, Any]:
    """Keyword arguments for `clickhouse_connect.get_client`, without the database.

    A server's DSN is taken apart here rather than handed over as `dsn=`: clickhouse-connect
    would read a path as the database and a query string as client options.
    """
    if settings.embedded:
        return {
            "interface": "chdb",
            "path": str(Path(chdb_path(settings.dsn)).resolve()),
            # read when the engine starts: by the process's first connection, made here too
            "chdb_options": {"os_threads_nice_value_merge_mutate": settings.merge_nice},
        }
    url = urlsplit(settings.dsn)
    args: dict[str, Any] = {
        "interface": url.scheme,
        "host": url.hostname,
        "port": url.port or (8443 if settings.secure else 8123),
        "username": settings.username or "default",
        "password": settings.password.get_secret_value() if settings.password else "",
    }
    if settings.secure:
        args["verify"] = settings.verify
        args |= {name: getattr(settings, name) for name in _TLS_FILES if getattr(settings, name) is not None}
    return args


class ClickhouseStore:
    """One clickhouse-connect client shared by a process's components.

    Calls are serialised by a lock (the chDB engine and the HTTP session are not safe to use
    from two threads at once). The methods block; async code calls `await store.run(...)`,
    which runs them on the store's own thread so the event loop never waits on ClickHouse.
    """

    def __init__(self, *, client: Any, settings: ClickhouseSettings) -> None:
        self._client = client
        self._lock = threading.Lock()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="clickhouse")
        self.settings = settings

    def command(
        self, sql: str, parameters: dict[str, Any] | None = None, *, settings: dict[str, Any] | None = None
    ) -> object:
        with self._lock:
            return self._client.command(sql, parameters=parameters, settings=settings)

    def rows(self, sql: str, parameters: dict[str, Any] | None = None) -> list[tuple[Any, ...]]:
        with self._lock:
            return list(self._client.query(sql, parameters=parameters).result_rows)

    def arrow(self, sql: str, parameters: dict[str, Any] | None = None) -> Any:
        """The result as a `pyarrow.Table`: columns built in C, for results of a whole batch."""
        with self._lock:
            return self._client.query_arrow(sql, parameters=parameters)

    def column(self, sql: str, parameters: dict[str, Any] | None = None) -> list[Any]:
        return [row[0] for row in self.rows(sql, parameters)]

    def query(self, sql: str, parameters: dict[str, Any] | None = None) -> tuple[list[str], list[tuple[Any, ...]]]:
        """Column names and rows, for ad-hoc SQL."""
        with self._lock:
            result = self._client.query(sql, parameters=parameters)
            return list(result.column_names), list(result.result_rows)

    def insert_columns(self, table: str, columns: Sequence[Sequence[Any]], names: Sequence[str]) -> None:
        """Insert one block, column-oriented (cheaper than rows for large batches)."""
        with self._lock:
            self._client.insert(table, list(columns), column_names=list(names), column_oriented=True)

    def insert_arrow(self, table: str, data: Any) -> None:
        """Insert a `pyarrow.Table` as one block: built in C, the cheapest way in for wide batches."""
        with self._lock:
            self._client.insert_arrow(table, data)

    def insert_arrow_in_place(self, table: str, data: Any) -> None:
        """Insert a `pyarrow.Table` whose columns have the types of `table`'s, by name. chDB reads
        it where it is (its `Python()` table function), where `insert_arrow` serialises it to a
        temporary file that the engine reads back: per 200,000 raw records of 470 bytes, about
        0.13 s of CPU against 0.21 s (2026-12-03, docs/performance.md). A server, or a
        clickhouse-connect whose chDB backend no longer has the handle this reaches for
        (`_chdb_connection`), gets `insert_arrow`. For this process's own statements only: the
        SQL endpoint's queries run with `readonly=1`, under which chDB refuses `Python()`."""
        found = _chdb_connection(self._client)
        if found is None:
            self.insert_arrow(table, data)
            return
        connection, engine_lock = found
        names = ", ".join(data.schema.names)
        arrow_data = data  # noqa: F841 - `Python(arrow_data)` reads it from this frame
        sql = f"INSERT INTO {table} ({names}) SELECT {names} FROM Python(arrow_data)"
        with self._lock, engine_lock:
            try:
                connection.query(sql, "TabSeparated")
            except Exception as error:
                raise RuntimeError(f"chDB could not insert into {table}: {error}") from error

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    def close(self) -> None:
        self._executor.shutdown(wait=True)
        with self._lock:
            self._client.close()


def _chdb_connection(client: Any) -> tuple[Any, Any] | None:
    """The chDB connection behind a clickhouse-connect chDB client, and the lock its backend
    holds around every call on it (clickhouse-connect 1.12 keeps both in its backend's handle);
    None for a server's client, or when the handle is not where it was."""
    handle = getattr(getattr(client, "_backend", None), "_handle", None)
    connection, lock = getattr(handle, "conn", None), getattr(handle, "lock", None)
    if connection is None or lock is None or not hasattr(connection, "query"):
        return None
    return connection, lock


READ_ONLY = {"readonly": 1}
"""ClickHouse's strict read-only mode: no writes, no DDL, no settings changes, and so no
`INSERT INTO FUNCTION file(...)` either (readonly=2 allowed that through chDB)."""


def connect_clickhouse(settings: ClickhouseSettings, *, read_only: bool = False) -> ClickhouseStore:
    """Open the store named by `settings`, creating its database if it is missing.

    `read_only` gives a client that refuses writes and DDL: what analysts' SQL runs on. It
    creates nothing (a read-only server user may not), so the database must exist by then.
    """
    args = client_args(settings)
    if settings.embedded:
        Path(args["path"]).mkdir(parents=True, exist_ok=True)
    if not read_only:
        _create_database(args, settings.database, settings.replication)
    client = clickhouse_connect.get_client(
        **args, database=settings.database, settings=READ_ONLY if read_only else None
    )
    return ClickhouseStore(client=client, settings=settings)


def _create_database(args: dict[str, Any], database: str, cluster: Cluster | None) -> None:
    """Through a client on the user's default database: one bound to a missing database fails
    to connect. On a cluster, on every server of it."""
    bootstrap = clickhouse_connect.get_client(**args)
    try:
        bootstrap.command(f"CREATE DATABASE IF NOT EXISTS {database}{cluster.clause if cluster else ''}")
    finally:
        bootstrap.close()
