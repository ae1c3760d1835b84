"""ClickHouse through clickhouse-connect only; the DSN picks the engine.

`chdb:///path` runs the real ClickHouse engine inside this process (chDB): no server, but
one process owns the directory, so everything that reads it goes through that process.
`http(s)://host:port` talks to a ClickHouse server. The same SQL runs on both.
"""

import asyncio
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import clickhouse_connect
from pydantic import BaseModel, Field, SecretStr, field_validator

T = TypeVar("T")


class ClickhouseSettings(BaseModel):
    dsn: str = "chdb://.data/clickhouse"
    """`chdb://<dir>` (relative) or `chdb:///<abs dir>` for the embedded engine,
    `http(s)://host:port` for a server."""
    database: str = Field(default="spendpipe", pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
    username: str | None = None
    password: SecretStr | None = None

    @field_validator("dsn")
    @classmethod
    def _known_scheme(cls, dsn: str) -> str:
        if not dsn.startswith(("chdb://", "http://", "https://")):
            raise ValueError("must start with chdb://, http:// or https://")
        if dsn.startswith("chdb://") and not chdb_path(dsn):
            raise ValueError("chdb:// needs a directory, as in chdb:///var/lib/spendpipe")
        return dsn

    @property
    def embedded(self) -> bool:
        return self.dsn.startswith("chdb://")


def chdb_path(dsn: str) -> str:
    """`chdb:///abs/dir` -> `/abs/dir`; `chdb://rel/dir` -> `rel/dir` (relative to the cwd)."""
    return dsn.removeprefix("chdb://")


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

    def command(self, sql: str, parameters: dict[str, Any] | None = None) -> object:
        with self._lock:
            return self._client.command(sql, parameters=parameters)

    def rows(self, sql: str, parameters: dict[str, Any] | None = None) -> list[tuple[Any, ...]]:
        with self._lock:
            return list(self._client.query(sql, parameters=parameters).result_rows)

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

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    def close(self) -> None:
        self._executor.shutdown(wait=True)
        with self._lock:
            self._client.close()


READ_ONLY = {"readonly": 1}
"""ClickHouse's strict read-only mode: no writes, no DDL, no settings changes, and so no
`INSERT INTO FUNCTION file(...)` either (readonly=2 allowed that through chDB)."""


def connect_clickhouse(settings: ClickhouseSettings, *, read_only: bool = False) -> ClickhouseStore:
    """Open the store named by `settings`, creating its database if it is missing.

    `read_only` gives a client that refuses writes and DDL: what analysts' SQL runs on.
    """
    target = _target(settings)
    bootstrap = clickhouse_connect.get_client(**target)
    try:
        bootstrap.command(f"CREATE DATABASE IF NOT EXISTS {settings.database}")
    finally:
        bootstrap.close()
    client = clickhouse_connect.get_client(
        **target, database=settings.database, settings=READ_ONLY if read_only else None
    )
    return ClickhouseStore(client=client, settings=settings)


def _target(settings: ClickhouseSettings) -> dict[str, Any]:
    if settings.embedded:
        path = Path(chdb_path(settings.dsn))
        path.mkdir(parents=True, exist_ok=True)
        return {"interface": "chdb", "path": str(path.resolve())}
    return {
        "dsn": settings.dsn,
        "username": settings.username or "default",
        "password": settings.password.get_secret_value() if settings.password else "",
    }
