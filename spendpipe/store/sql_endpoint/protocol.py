"""ClickHouse's HTTP interface, the part of it clients use to read: what a request asks for.

A query comes in the `query` parameter (GET or POST), in the POST body, or in both (the body
continues the parameter's text), or as a `query` field of a multipart form (clickhouse-connect
sends large bound parameters so). Beside it: `database`, `default_format`, `param_<name>`
values for `{name:Type}` placeholders, credentials (`user`/`password` parameters,
`X-ClickHouse-User`/`X-ClickHouse-Key` headers or HTTP basic auth), and ClickHouse settings.
https://clickhouse.com/docs/interfaces/http
"""

import base64
import binascii
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from spendpipe.store.sql_endpoint.errors import ClickhouseError

TRANSPORT = frozenset(
    {
        "session_id", "session_timeout", "session_check", "query_id", "quota_key", "compress", "decompress",
        "wait_end_of_query", "buffer_size", "client_protocol_version", "role", "send_progress_in_http_headers",
        "http_headers_progress_interval_ms", "cancel_http_readonly_queries_on_client_close",
        "enable_http_compression", "http_response_buffer_size", "http_wait_end_of_query", "add_http_cors_header",
        "log_comment", "max_query_size",
    }
)  # fmt: skip
"""Parameters about the connection rather than the query: read where needed, otherwise ignored
(there are no sessions: every request stands alone, as settings cannot change)."""

_SAFE_SETTING = re.compile(
    r"^(output_format_\w+|format_\w+|date_time_output_format|session_timezone|extremes|join_use_nulls"
    r"|max_block_size|use_client_time_zone|totals_mode|totals_auto_threshold|readonly)$"
)
"""Settings a request may choose: how results are written, never what a query may do."""
_NAMES_A_FILE = re.compile(r"schema|_url$|^format_template_(resultset|row)$")
"""Among those, the ones that name a file the engine reads or writes in this process (a
`Template` format's templates, a `Protobuf` or `CapnProto` schema, `output_format_schema`, which
writes one) or a server (Avro's schema registry): refused, as `file()` is."""
LOWERABLE = ("max_execution_time", "max_result_rows", "max_result_bytes", "max_memory_usage")
"""Limits a request may lower, never raise or lift (0 means none in ClickHouse)."""


@dataclass(frozen=True)
class Credentials:
    user: str | None = None
    password: str | None = None


@dataclass(frozen=True)
class ClickhouseRequest:
    query: str
    database: str | None
    default_format: str
    parameters: dict[str, str] = field(default_factory=dict)
    settings: dict[str, str] = field(default_factory=dict)
    query_id: str = ""
    compress: bool = False
    client_revision: int = 0
    """`client_protocol_version`: the Native framing the client reads (`native.for_revision`)."""


def parse_request(items: Iterable[tuple[str, str]], body: str, *, limits: Mapping[str, int | str]) -> ClickhouseRequest:
    """From the URL's parameters and form fields (`items`) and a plain body: what to run."""
    query, parameters, settings, other = "", {}, {}, {}
    for name, value in items:
        if name == "query":
            query = value
        elif name.startswith("param_"):
            parameters[name.removeprefix("param_")] = value
        elif name in (
            "database", "default_format", "query_id", "enable_http_compression", "user", "password",
            "client_protocol_version",
        ):  # fmt: skip
            other[name] = value
        elif name not in TRANSPORT:
            settings[name] = _setting(name, value, limits)
    settings.pop("readonly", None)  # every query runs with readonly=1
    return ClickhouseRequest(
        query="\n".join(part for part in (query, body) if part),
        database=other.get("database") or None,
        default_format=other.get("default_format") or "TabSeparated",
        parameters=parameters,
        settings=settings,
        query_id=other.get("query_id", ""),
        compress=other.get("enable_http_compression") == "1",
        client_revision=_revision(other.get("client_protocol_version", "0")),
    )


def _revision(value: str) -> int:
    if not value.isdigit():
        raise ClickhouseError(27, "CANNOT_PARSE_INPUT_ASSERTION_FAILED", f"client_protocol_version {value!r}")
    return int(value)


def _setting(name: str, value: str, limits: Mapping[str, int | str]) -> str:
    if name in LOWERABLE:
        if value.isdigit() and 0 < int(value) <= int(limits[name]):
            return value
        raise ClickhouseError(164, "READONLY", f"Setting {name} should not be above {limits[name]} or 0 here")
    if name == "result_overflow_mode" and value == "throw":
        return value
    if not _SAFE_SETTING.match(name) or _NAMES_A_FILE.search(name):
        raise ClickhouseError(164, "READONLY", f"Cannot modify '{name}' setting in readonly mode")
    if name == "readonly" and value not in ("1", "2"):
        raise ClickhouseError(164, "READONLY", "Cannot modify 'readonly' setting in readonly mode")
    return value


def credentials(headers: Mapping[str, str], items: Iterable[tuple[str, str]]) -> Credentials:
    """Who the request says it is, in any of the ways ClickHouse takes: parameters, its own
    headers, or basic auth."""
    params = dict(items)
    if "user" in params or "password" in params:
        return Credentials(params.get("user"), params.get("password"))
    if "x-clickhouse-user" in headers or "x-clickhouse-key" in headers:
        return Credentials(headers.get("x-clickhouse-user"), headers.get("x-clickhouse-key"))
    scheme, _, encoded = headers.get("authorization", "").partition(" ")
    if scheme.lower() == "basic":
        try:
            user, _, password = base64.b64decode(encoded, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            raise ClickhouseError(516, "AUTHENTICATION_FAILED", "Malformed basic authorization") from None
        return Credentials(user, password)
    return Credentials()


CONTENT_TYPES = {
    "TabSeparated": "text/tab-separated-values; charset=UTF-8",
    "TSV": "text/tab-separated-values; charset=UTF-8",
    "CSV": "text/csv; charset=UTF-8; header=absent",
    "CSVWithNames": "text/csv; charset=UTF-8; header=present",
    "JSON": "application/json; charset=UTF-8",
    "JSONCompact": "application/json; charset=UTF-8",
    "JSONEachRow": "application/x-ndjson; charset=UTF-8",
}


def content_type(fmt: str) -> str:
    if fmt in CONTENT_TYPES:
        return CONTENT_TYPES[fmt]
    if fmt.startswith(("TabSeparated", "TSV")):
        return CONTENT_TYPES["TSV"]
    if fmt.startswith("JSON"):
        return CONTENT_TYPES["JSON"]
    return "application/octet-stream"
