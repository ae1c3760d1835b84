"""Where read-only SQL goes: the pipeline's loopback endpoint (embedded store) or a server."""

import json
import urllib.error
import urllib.request
from collections.abc import Sequence
from typing import Any, Protocol

from spendpipe.platform.clickhouse import ClickhouseSettings, connect_clickhouse

Result = tuple[list[str], Sequence[Sequence[Any]]]
"""Column names, and the rows."""


class SqlSource(Protocol):
    """Answers read-only SQL: the endpoint, a server, or a `ClickhouseStore` itself."""

    def query(self, sql: str, parameters: dict[str, Any] | None = None) -> Result: ...


class EndpointUnavailableError(RuntimeError):
    pass


class EndpointSource:
    """The SQL endpoint of a running `spendpipe run all` / `run aggregator`."""

    def __init__(self, *, url: str, timeout_s: float = 30.0) -> None:
        self._url = url.rstrip("/")
        self._timeout_s = timeout_s

    def query(self, sql: str, parameters: dict[str, Any] | None = None) -> Result:
        body = json.dumps({"sql": sql, "parameters": parameters or {}}).encode()
        request = urllib.request.Request(  # noqa: S310 - the URL is our own setting
            f"{self._url}/sql", data=body, headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=self._timeout_s) as response:  # noqa: S310
                document = json.loads(response.read())
        except urllib.error.HTTPError as error:
            detail = json.loads(error.read() or b"{}").get("error", error.reason)
            raise RuntimeError(f"query failed: {detail}") from None
        except OSError as error:
            raise EndpointUnavailableError(
                f"no spendpipe SQL endpoint at {self._url} ({error}): is `spendpipe run all` running, "
                "and does SPENDPIPE_SQL_ENDPOINT_URL point at it?"
            ) from None
        return document["columns"], document["rows"]


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
