"""The SQL endpoint's server, on loopback in the process that owns the embedded store:

    POST /sql   {"sql": "...", "parameters": {...}}  ->  {"columns": [...], "rows": [[...]]}
    GET  /healthz                                    ->  200 "ok"

Queries run on a read-only client. Decimals and datetimes come back as strings, so money
stays exact in JSON. Binds to 127.0.0.1 by default and has no authentication: it is a
loopback convenience for the embedded store, not a server API.
"""

import json
import logging
import threading
from datetime import date, datetime
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from spendpipe.platform.clickhouse import ClickhouseStore

log = logging.getLogger(__name__)

MAX_BODY = 1 << 20
LOOPBACK = ("127.0.0.1", "::1", "localhost")


class SqlEndpoint:
    """Serves `store` on a daemon thread. `start()` binds and returns; `stop()` shuts down."""

    def __init__(self, *, store: ClickhouseStore, host: str, port: int) -> None:
        self._store = store
        self._address = (host, port)
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        assert self._server is not None, "start() first"
        return int(self._server.server_address[1])

    def start(self) -> "SqlEndpoint":
        if self._address[0] not in LOOPBACK:
            raise ValueError(f"the SQL endpoint has no authentication: bind it to loopback, not {self._address[0]}")
        store = self._store

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path == "/healthz":
                    self._reply(200, b"ok", "text/plain")
                else:
                    self._reply(404, b"not found", "text/plain")

            def do_POST(self) -> None:
                if self.path != "/sql":
                    self._reply(404, b"not found", "text/plain")
                    return
                # JSON only: a browser cannot send it cross-site without a CORS preflight we never answer
                if self.headers.get("Content-Type", "").split(";")[0].strip() != "application/json":
                    self._reply(415, b"send application/json", "text/plain")
                    return
                length = int(self.headers.get("Content-Length") or 0)
                if length > MAX_BODY:
                    self._reply(413, b"request too large", "text/plain")
                    return
                try:
                    request = json.loads(self.rfile.read(length))
                    columns, rows = store.query(request["sql"], request.get("parameters") or None)
                except Exception as error:
                    body = json.dumps({"error": str(error).splitlines()[0][:2000]}).encode()
                    self._reply(400, body, "application/json")
                    return
                body = json.dumps({"columns": columns, "rows": rows}, default=_plain).encode()
                self._reply(200, body, "application/json")

            def _reply(self, status: int, body: bytes, content_type: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                log.debug("sql endpoint: " + format, *args)

        self._server = ThreadingHTTPServer(self._address, Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, name="sql-endpoint", daemon=True)
        self._thread.start()
        log.info("SQL endpoint on http://%s:%d/sql", *self._address[:1], self.port)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()


def _plain(value: object) -> object:
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    raise TypeError(f"cannot encode {type(value).__name__}")
