"""Where read-only SQL goes: the pipeline's loopback endpoint (embedded store) or a server."""

import threading
from collections.abc import Sequence
from typing import Any, Protocol
from urllib.parse import unquote, urlsplit, urlunsplit

import clickhouse_connect
from clickhouse_connect.driver.exceptions import DatabaseError, OperationalError

from spendpipe.platform.clickhouse import ClickhouseSettings, connect_clickhouse

Result = tuple[list[str], Sequence[Sequence[Any]]]
"""Column names, and the rows."""


class SqlSource(Protocol):
    """Answers read-only SQL: the endpoint, a server, or a `ClickhouseStore` itself."""

    def query(self, sql: str, parameters: dict[str, Any] | None = None) -> Result: ...


class EndpointUnavailableError(RuntimeError):
    pass


class EndpointSource:
    """The SQL endpoint of a running `spendpipe run all` / `run aggregator`, through
    clickhouse-connect's HTTP client: the endpoint speaks ClickHouse's HTTP interface. Connects
    at the first query; values come back typed (Decimal, datetime) as from a server."""

    def __init__(self, *, url: str, timeout_s: float = 30.0) -> None:
        parts = urlsplit(url)
        self._url = urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))
        self._args: dict[str, Any] = {
            "interface": parts.scheme,
            "host": parts.hostname,
            "port": parts.port or (443 if parts.scheme == "https" else 80),
            "username": unquote(parts.username or "") or "default",
            "password": unquote(parts.password or ""),
            "send_receive_timeout": timeout_s,
            "connect_timeout": min(timeout_s, 10.0),
            "autogenerate_session_id": False,
        }
        self._client: Any = None
        self._lock = threading.Lock()

    def query(self, sql: str, parameters: dict[str, Any] | None = None) -> Result:
        with self._lock:
            try:
                if self._client is None:
                    self._client = clickhouse_connect.get_client(**self._args)
                result = self._client.query(sql, parameters=parameters)
            except OperationalError as error:
                raise EndpointUnavailableError(
                    f"no spendpipe SQL endpoint at {self._url} ({error}): is `spendpipe run all` running, "
                    "and does SPENDPIPE_SQL_ENDPOINT_URL point at it?"
                ) from None
            except DatabaseError as error:
                raise RuntimeError(f"query failed: {str(error).strip().splitlines()[0]}") from None
            return list(result.column_names), [list(row) for row in result.result_rows]


class DirectSource:
    """A ClickHouse server (http/https DSN), read-only."""

    def __init__(self, *, settings: ClickhouseSettings) -> None:
        self._store = connect_clickhouse(settings, read_only=True)

    def query(self, sql: str, parameters: dict[str, Any] | None = None) -> Result:
        columns, rows = self._store.query(sql, parameters)
        return columns, [list(row) for row in rows]


def sql_source(settings: ClickhouseSettings, endpoint_url: str) -> SqlSource:
    """Embedded store: ask the process that owns it. Server: connect directly."""
    if settings.embedded:
        return EndpointSource(url=endpoint_url)
    return DirectSource(settings=settings)
