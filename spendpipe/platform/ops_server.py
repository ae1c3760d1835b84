"""The operations endpoint every spendpipe process serves, for orchestrators and Prometheus:

    GET /healthz  ->  200 "ok" while the process is alive (liveness)
    GET /readyz   ->  200 when every check passes, else 503; JSON either way:
                      {"ready": false, "checks": {"aggregator": "3120 events behind ...", ...}}
    GET /metrics  ->  the process's Prometheus registry (prometheus_client's own exposition,
                      so the text and OpenMetrics formats and gzip are negotiated as usual)

A check is a callable that returns None when its part of the process is ready, or one line
saying what it is still waiting for. Checks run on the server's request threads: they must only
read state the service keeps up to date, never do I/O or touch the service's event loop.
"""

import json
import logging
import threading
from collections.abc import Callable, Iterable
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server
from wsgiref.types import StartResponse, WSGIEnvironment

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import ThreadingWSGIServer, make_wsgi_app
from pydantic import BaseModel, Field

log = logging.getLogger(__name__)

Check = Callable[[], str | None]
"""None when ready, otherwise what is not ready yet (one line)."""

READY = "ready"


class OpsSettings(BaseModel):
    """`SPENDPIPE_OPS__ENABLED` / `__HOST` / `__PORT`. Port 0 binds a free port (see `OpsServer.port`)."""

    enabled: bool = True
    host: str = "127.0.0.1"
    """127.0.0.1 outside containers; 0.0.0.0 where an orchestrator probes from outside."""
    port: int = Field(default=9464, ge=0, le=65535)


class Readiness:
    """Named checks; the process is ready when every one of them is."""

    def __init__(self) -> None:
        self._checks: dict[str, Check] = {}

    def add(self, name: str, check: Check) -> None:
        self._checks[name] = check

    def report(self) -> dict[str, str]:
        """{name: "ready" or what it waits for}; a check that raises is not ready."""
        report = {}
        for name, check in list(self._checks.items()):
            try:
                waiting = check()
            except Exception as error:  # a broken check must not take the endpoint down
                waiting = f"check failed: {error!r}"
            report[name] = READY if waiting is None else waiting
        return report


class OpsServer:
    """Serves /healthz, /readyz and /metrics on a daemon thread. Nothing binds in `__init__`;
    `start()` binds and returns; `stop()` shuts down. With `enabled=False` both do nothing, so
    callers need no special case. A port that cannot be bound (two `spendpipe run` processes on
    one host, say) is logged as an error and the process runs on without the endpoint: the
    service matters more than its probes, and a probe that gets no answer shows the problem."""

    def __init__(self, *, settings: OpsSettings, registry: CollectorRegistry, readiness: Readiness) -> None:
        self._settings = settings
        self._metrics_app = make_wsgi_app(registry)
        self.readiness = readiness
        self._server: ThreadingWSGIServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        """The bound port (the chosen one when the settings say 0)."""
        if self._server is None:
            raise RuntimeError("the ops server is not running")
        return int(self._server.server_port)

    @property
    def url(self) -> str:
        return f"http://{self._settings.host}:{self.port}"

    def start(self) -> "OpsServer":
        if not self._settings.enabled or self._server is not None:
            return self
        host, port = self._settings.host, self._settings.port
        try:
            self._server = make_server(
                host, port, self._app, server_class=ThreadingWSGIServer, handler_class=_QuietHandler
            )
        except OSError as error:
            log.error("cannot serve health and metrics on %s:%d (%s); set SPENDPIPE_OPS__PORT", host, port, error)
            return self
        self._thread = threading.Thread(target=self._server.serve_forever, name="spendpipe-ops", daemon=True)
        self._thread.start()
        log.info("health and metrics on %s (/healthz /readyz /metrics)", self.url)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def _app(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if environ.get("REQUEST_METHOD") not in ("GET", "HEAD"):
            return _reply(start_response, "405 Method Not Allowed", b"GET only\n", "text/plain")
        if path == "/metrics":
            return self._metrics_app(environ, start_response)  # type: ignore[no-any-return]
        if path == "/healthz":
            return _reply(start_response, "200 OK", b"ok\n", "text/plain")
        if path == "/readyz":
            report = self.readiness.report()
            ready = all(state == READY for state in report.values())
            body = json.dumps({"ready": ready, "checks": report}).encode() + b"\n"
            return _reply(start_response, "200 OK" if ready else "503 Service Unavailable", body, "application/json")
        return _reply(start_response, "404 Not Found", b"/healthz /readyz /metrics\n", "text/plain")


def _reply(start_response: StartResponse, status: str, body: bytes, content_type: str) -> list[bytes]:
    start_response(status, [("Content-Type", content_type), ("Content-Length", str(len(body)))])
    return [body]


class _QuietHandler(WSGIRequestHandler):
    """Probes arrive every few seconds: log them at debug, not on stderr."""

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("ops: " + format, *args)
