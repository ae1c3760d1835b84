"""Runs one checked query on the embedded engine, in the format the client asked for.

Each query gets its own chDB connection to the store's engine (chDB serves any number of
connections to the one engine a process hosts; opening one takes about 0.1 ms), so its
settings end with it and no query queues behind another on a shared handle. The limits are
set first and `readonly=1` last: from then on the query can neither write nor change a
setting, its own `SETTINGS` clause included (ClickHouse refuses with READONLY).
"""

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import chdb

from spendpipe.platform.clickhouse import ClickhouseSettings, chdb_path
from spendpipe.store.sql_endpoint.errors import ClickhouseError
from spendpipe.store.sql_endpoint.settings import SqlEndpointSettings


@dataclass(frozen=True)
class Answer:
    body: bytes
    rows_read: int
    bytes_read: int
    elapsed_s: float


class EmbeddedQueries:
    """Queries over the embedded store at `clickhouse.dsn` (which this process has open)."""

    def __init__(self, *, clickhouse: ClickhouseSettings, settings: SqlEndpointSettings) -> None:
        if not clickhouse.embedded:
            raise ValueError("the SQL endpoint serves an embedded store; a server has its own HTTP interface")
        # the spelling clickhouse-connect opens the engine with: chDB compares paths literally
        self._path = os.path.realpath(chdb_path(clickhouse.dsn))
        self._limits: dict[str, int | str] = {
            "max_execution_time": settings.max_execution_time_s,
            "timeout_overflow_mode": "throw",
            "max_result_rows": settings.max_result_rows,
            "max_result_bytes": settings.max_result_bytes,
            "result_overflow_mode": "throw",
            "max_memory_usage": settings.max_memory_bytes,
            "max_query_size": settings.max_query_bytes,
        }
        self.default_database = clickhouse.database

    @property
    def limits(self) -> Mapping[str, int | str]:
        return self._limits

    def run(
        self, sql: str, *, fmt: str, database: str, settings: Mapping[str, str], parameters: Mapping[str, str]
    ) -> Answer:
        connection = chdb.connect(self._path)  # type: ignore[no-untyped-call]
        try:
            for name, value in {**self._limits, **settings, "readonly": 1}.items():
                connection.query(f"SET {name} = {_literal(value)}")
            connection.query(f"USE {_identifier(database)}")
            result = connection.query(sql, fmt, params=dict(parameters))
            return Answer(bytes(result.bytes() or b""), result.rows_read(), result.bytes_read(), result.elapsed())
        except ClickhouseError:
            raise
        except Exception as error:
            raise ClickhouseError.from_engine(error) from None
        finally:
            connection.close()


def _literal(value: Any) -> str:
    if isinstance(value, int):
        return str(value)
    return "'" + str(value).replace("\\", "\\\\").replace("'", "\\'") + "'"


def _identifier(name: str) -> str:
    return "`" + name.replace("\\", "\\\\").replace("`", "\\`") + "`"
