"""The SQL endpoint's server: ClickHouse's HTTP interface over the embedded store, read-only.

    GET|POST /?query=...   a query (or in the POST body), answered in the format asked for
    GET /  and  GET /ping  "Ok.\\n", as ClickHouse answers

Walls, in the order a request meets them: on loopback the `Host` header must name loopback
and this port (a page whose name rebinds to 127.0.0.1 sends its own name, so DNS rebinding
reads nothing); the user and password when configured (required beyond loopback); the
request and query size limits; one statement from the read-only allow-list (`statements`);
then the engine's `readonly=1` and result/time limits (`engine`). Refusals and failures come
back as ClickHouse writes them: status, `X-ClickHouse-Exception-Code`, `Code: N. DB::Exception`.

Starlette on uvicorn, on a daemon thread with its own event loop; each query runs on a worker
thread, so a slow query does not hold up `/ping` or another query.
"""

import gzip
import hmac
import json
import logging
import socket
import threading
import uuid

import anyio
import anyio.to_thread
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import Message

from spendpipe.platform.clickhouse import ClickhouseSettings
from spendpipe.store.sql_endpoint.engine import Answer, EmbeddedQueries
from spendpipe.store.sql_endpoint.errors import ClickhouseError
from spendpipe.store.sql_endpoint.native import NATIVE, for_revision
from spendpipe.store.sql_endpoint.protocol import ClickhouseRequest, content_type, credentials, parse_request
from spendpipe.store.sql_endpoint.settings import SqlEndpointSettings, is_loopback
from spendpipe.store.sql_endpoint.statements import check_read_only, output_format

log = logging.getLogger(__name__)

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "[::1]")


class SqlEndpoint:
    """Serves the store named by `clickhouse` (embedded, opened by this process) on a daemon
    thread. `start()` binds (a bind error raises there) and returns; `stop()` shuts down."""

    def __init__(self, *, clickhouse: ClickhouseSettings, settings: SqlEndpointSettings) -> None:
        self._settings = settings
        self._queries = EmbeddedQueries(clickhouse=clickhouse, settings=settings)
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._port = settings.port
        self._slots: anyio.CapacityLimiter | None = None  # made on the server's event loop

    @property
    def port(self) -> int:
        return self._port

    @property
    def queries_running(self) -> int:
        """How many queries hold one of the `max_concurrent_queries` slots now."""
        return 0 if self._slots is None else int(self._slots.borrowed_tokens)

    def start(self) -> "SqlEndpoint":
        host = self._settings.host
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host.strip("[]"), self._settings.port))
        except OSError:
            sock.close()
            raise
        sock.listen(128)
        self._port = sock.getsockname()[1]
        app = Starlette(
            routes=[
                Route("/", self._query, methods=["GET", "POST"]),
                Route("/ping", self._ping, methods=["GET", "HEAD"]),
                Route("/healthz", self._ping, methods=["GET", "HEAD"]),
            ]
        )
        config = uvicorn.Config(app, log_level="warning", lifespan="off", access_log=False)
        self._server = uvicorn.Server(config)
        server = self._server
        self._thread = threading.Thread(target=lambda: server.run(sockets=[sock]), name="sql-endpoint", daemon=True)
        self._thread.start()
        log.info("SQL endpoint (ClickHouse HTTP interface, read-only) on http://%s:%d", host, self._port)
        return self

    def stop(self) -> None:
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(timeout=10)

    async def _ping(self, request: Request) -> Response:
        if (refusal := self._host_refused(request)) is not None:
            return _error(refusal)
        return PlainTextResponse("Ok.\n")

    async def _query(self, request: Request) -> Response:
        try:
            if (refusal := self._host_refused(request)) is not None:
                raise refusal
            items = list(request.query_params.multi_items())
            self._authenticate(request, items)
            body = await self._body(request)
            if request.headers.get("content-type", "").startswith("multipart/form-data"):
                items += await _form_items(request, body)
                body = b""
            parsed = parse_request(items, body.decode(errors="strict"), limits=self._queries.limits)
            if not parsed.query and request.method == "GET":
                return PlainTextResponse("Ok.\n")
            return await self._answer(request, parsed)
        except ClickhouseError as error:
            return _error(error)
        except UnicodeDecodeError:
            return _error(ClickhouseError(36, "BAD_ARGUMENTS", "The request body is not UTF-8"))

    async def _answer(self, request: Request, parsed: ClickhouseRequest) -> Response:
        if len(parsed.query.encode()) > self._settings.max_query_bytes:
            raise ClickhouseError(
                229, "QUERY_IS_TOO_LARGE", f"Query is longer than {self._settings.max_query_bytes} bytes"
            )
        fmt = output_format(check_read_only(parsed.query)) or parsed.default_format
        if self._slots is None:
            self._slots = anyio.CapacityLimiter(self._settings.max_concurrent_queries)
        try:
            # taken here, without awaiting: two requests that arrive together cannot both see a
            # free slot and then queue for it
            self._slots.acquire_nowait()
        except anyio.WouldBlock:
            limit = self._settings.max_concurrent_queries
            raise ClickhouseError(
                202, "TOO_MANY_SIMULTANEOUS_QUERIES", f"Too many simultaneous queries. Maximum: {limit}"
            ) from None
        try:
            answer = await anyio.to_thread.run_sync(
                lambda: self._queries.run(
                    parsed.query,
                    fmt=fmt,
                    database=parsed.database or self._queries.default_database,
                    settings=parsed.settings,
                    parameters=parsed.parameters,
                )
            )
            content = answer.body
            if fmt == NATIVE and parsed.client_revision:
                content = await anyio.to_thread.run_sync(for_revision, content, parsed.client_revision)
        finally:
            self._slots.release()
        headers = _headers(parsed, fmt, answer)
        if parsed.compress and "gzip" in request.headers.get("accept-encoding", ""):
            content = gzip.compress(content, compresslevel=3)
            headers["Content-Encoding"] = "gzip"
        return Response(content, headers=headers, media_type=content_type(fmt))

    def _host_refused(self, request: Request) -> ClickhouseError | None:
        """On loopback, only requests that name loopback and this port: DNS rebinding defence."""
        if not is_loopback(self._settings.host):
            return None
        allowed = {f"{host}:{self._port}" for host in LOOPBACK_HOSTS}
        if request.headers.get("host", "").lower() in allowed:
            return None
        return ClickhouseError(497, "ACCESS_DENIED", "Host header names neither loopback nor this port")

    def _authenticate(self, request: Request, items: list[tuple[str, str]]) -> None:
        if self._settings.username is None or self._settings.password is None:
            return
        given = credentials(request.headers, items)
        user_ok = hmac.compare_digest((given.user or "").encode(), self._settings.username.encode())
        password_ok = hmac.compare_digest(
            (given.password or "").encode(), self._settings.password.get_secret_value().encode()
        )
        if not (user_ok and password_ok):
            raise ClickhouseError(
                516,
                "AUTHENTICATION_FAILED",
                f"{given.user or 'default'}: Authentication failed: password is incorrect, "
                "or there is no user with such name",
            )

    async def _body(self, request: Request) -> bytes:
        """The body, read up to the limit: a larger one is refused before it is all read."""
        limit = self._settings.max_request_bytes
        if int(request.headers.get("content-length") or 0) > limit:
            raise _too_large(limit)
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise _too_large(limit)
            chunks.append(chunk)
        return b"".join(chunks)


async def _form_items(request: Request, body: bytes) -> list[tuple[str, str]]:
    async def replay() -> Message:
        return {"type": "http.request", "body": body, "more_body": False}

    form = await Request(request.scope, replay).form()
    return [(name, value) for name, value in form.multi_items() if isinstance(value, str)]


def _too_large(limit: int) -> ClickhouseError:
    return ClickhouseError(229, "QUERY_IS_TOO_LARGE", f"Request body is larger than {limit} bytes")


def _headers(parsed: ClickhouseRequest, fmt: str, answer: Answer) -> dict[str, str]:
    summary = {
        "read_rows": str(answer.rows_read),
        "read_bytes": str(answer.bytes_read),
        "written_rows": "0",
        "written_bytes": "0",
        "total_rows_to_read": str(answer.rows_read),
        "elapsed_ns": str(int(answer.elapsed_s * 1e9)),
    }
    return {
        "X-ClickHouse-Format": fmt,
        "X-ClickHouse-Query-Id": parsed.query_id or str(uuid.uuid4()),
        "X-ClickHouse-Summary": json.dumps(summary, separators=(",", ":")),
    }


def _error(error: ClickhouseError) -> Response:
    log.debug("sql endpoint refused or failed: %s", error.text().strip())
    return PlainTextResponse(
        error.text(),
        status_code=error.status,
        headers={"X-ClickHouse-Exception-Code": str(error.code)},
    )
