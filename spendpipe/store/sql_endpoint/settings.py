"""Where the SQL endpoint listens (the serving process), its limits, and where clients look for it."""

import ipaddress
import re
from typing import Annotated
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, Field, SecretStr, model_validator

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8124
"""Beside ClickHouse's own 8123, so a local ClickHouse server and a pipeline can run together."""
DEFAULT_URL = f"http://{DEFAULT_HOST}:{DEFAULT_PORT}"
"""Where a client finds the endpoint of a pipeline started with the default settings."""

LOOPBACK_NAMES = ("localhost",)


def is_loopback(host: str) -> bool:
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


ENGINE_MAX = 1 << 62
"""Above any limit a machine reaches, and inside the engine's setting types (a value past
UInt64 made every query fail, `SELECT 1` too)."""


class SqlEndpointSettings(BaseModel):
    """The ClickHouse HTTP interface the process that owns an embedded store serves, read-only.

    Every limit is applied to every query as a ClickHouse setting the query cannot lift
    (`readonly=1` forbids changing settings); a request may only ask for a lower one.
    """

    enabled: bool = True
    host: str = DEFAULT_HOST
    port: int = Field(default=DEFAULT_PORT, ge=0, le=65535)
    username: str | None = None
    """Required, with `password`, when `host` is not a loopback address."""
    password: SecretStr | None = None
    max_concurrent_queries: int = Field(default=4, ge=1, le=1024)
    """Queries run at once; one more is refused at once (code 202), as ClickHouse does. With the
    memory limit it bounds the memory analysts' queries can take from the pipeline."""
    max_execution_time_s: int = Field(default=30, ge=1, le=86_400)
    """ClickHouse `max_execution_time` (timeout_overflow_mode=throw)."""
    max_result_rows: int = Field(default=1_000_000, ge=1, le=ENGINE_MAX)
    """ClickHouse `max_result_rows` (result_overflow_mode=throw): a larger result is an error,
    never a silently cut one."""
    max_result_bytes: int = Field(default=256 << 20, ge=1, le=ENGINE_MAX)
    """ClickHouse `max_result_bytes`: uncompressed bytes of the result in memory, before formatting."""
    max_memory_bytes: int = Field(default=1 << 30, ge=16 << 20, le=ENGINE_MAX)
    """ClickHouse `max_memory_usage`: what one query may hold while it runs (its hash tables,
    `groupArray` states, blocks). The result limits do not bound this, and the engine is the
    pipeline's own process, so without it one query could take the memory the aggregator and
    enforcer run in. Below 16 MiB even clickhouse-connect's first query would fail."""
    max_request_bytes: int = Field(default=1 << 20, ge=1, le=1 << 30)
    """Largest request body (the query and any form fields)."""
    max_query_bytes: int = Field(default=256 << 10, ge=1, le=1 << 30)
    """Longest query text, also ClickHouse's `max_query_size` (its default, 256 KiB)."""

    @model_validator(mode="after")
    def _credentials_beyond_loopback(self) -> "SqlEndpointSettings":
        problems = []
        if (self.username is None) != (self.password is None):
            problems.append("__USERNAME and __PASSWORD go together")
        elif self.enabled and not is_loopback(self.host) and self.password is None:
            problems.append(f"bound to {self.host}, beyond loopback: set __USERNAME and __PASSWORD")
        if self.password is not None and not self.password.get_secret_value():
            problems.append("__PASSWORD is empty")
        if problems:
            raise ValueError("; ".join(problems))
        return self


def _endpoint_url(url: str) -> str:
    """Scheme, host and port (credentials may come before the host), checked here: clickhouse-connect
    would take a URL without a host for localhost:80, fail on a bad port at the first query with a
    traceback, and drop a path or query without a word."""
    parts = urlsplit(url)
    parts.port  # noqa: B018  (raises ValueError on a port out of range or not a number)
    if not parts.hostname or not _HOST.match(parts.hostname):
        raise ValueError(f"{url!r} names no host")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError(f"{url!r}: scheme, host and port only (http://host:port)")
    return url


_HOST = re.compile(r"^[A-Za-z0-9._:%-]+$")
"""A name or an address (IPv6 without its brackets): no space, no stray character."""

EndpointUrl = Annotated[str, Field(pattern=r"^https?://"), AfterValidator(_endpoint_url)]
"""A client's `sql_endpoint_url`: where a running pipeline serves SQL over its embedded store."""
