"""Headless Chromium (Debian's, at /usr/bin/chromium; `make test` installs it) opening a local
page: the DOM after it ran, a screenshot, and every connection it tried to make.

Chromium is pointed at a proxy that is only a listening socket (`NetworkWatch`): every http(s)
fetch, the page's or the browser's own, reaches it as a request line naming its host, and gets
no answer. The flags turn off most of the browser's own traffic; what they cannot (its component
updater and account service, measured with Chromium 156) goes to Google's service hosts, so
`page_requests()` is every request to any other host: what the page asked for.
"""

import contextlib
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

CHROMIUM = Path("/usr/bin/chromium")
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-features=NetworkTimeServiceQuerying,OptimizationHints,MediaRouter,AutofillServerCommunication",
    "--disable-client-side-phishing-detection",
    "--disable-default-apps",
    "--disable-domain-reliability",
    "--disable-extensions",
    "--no-pings",
)
BROWSER_SERVICE_HOSTS = (".google.com", ".googleapis.com", ".gvt1.com")
"""Where Chromium's own background requests go; a page's request to them would count as the
browser's (the report names no host at all, which `outside_references` checks)."""


class NetworkWatch:
    """A proxy that answers nothing and notes the host of every request."""

    def __init__(self) -> None:
        self._socket = socket.create_server(("127.0.0.1", 0))
        self._socket.settimeout(0.2)
        self.port = self._socket.getsockname()[1]
        self.hosts: list[str] = []
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)

    def _accept(self) -> None:
        while not self._stopped.is_set():
            with contextlib.suppress(TimeoutError):
                connection, _ = self._socket.accept()
                with connection:
                    connection.settimeout(2)
                    self.hosts.append(_host(connection))

    def page_requests(self) -> list[str]:
        return [host for host in self.hosts if not host.endswith(BROWSER_SERVICE_HOSTS)]

    @contextlib.contextmanager
    def running(self) -> Iterator["NetworkWatch"]:
        self._thread.start()
        try:
            yield self
        finally:
            self._stopped.set()
            self._thread.join(timeout=5)
            self._socket.close()


def _host(connection: socket.socket) -> str:
    """`CONNECT host:443 HTTP/1.1` or `GET http://host/path HTTP/1.1` -> host."""
    try:
        line = connection.recv(4096).split(b"\r\n", 1)[0].decode("latin-1")
    except OSError as error:
        return f"(unread request: {error})"
    target = line.split(" ")[1] if line.count(" ") >= 2 else line
    return urlsplit(target if "//" in target else f"//{target}").hostname or line


def chromium(page: Path, workdir: Path, watch: NetworkWatch, *extra: str) -> str:
    """Run Chromium once on `page` with `extra` flags; its stdout."""
    done = subprocess.run(
        [
            str(CHROMIUM),
            *FLAGS,
            f"--user-data-dir={workdir / 'chromium-profile'}",
            f"--proxy-server=http://127.0.0.1:{watch.port}",
            *extra,
            page.resolve().as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def rendered_dom(page: Path, workdir: Path, watch: NetworkWatch) -> str:
    """The page's DOM once loaded and any script in it has run."""
    return chromium(page, workdir, watch, "--dump-dom")


def screenshot(page: Path, png: Path, workdir: Path, watch: NetworkWatch, size: str = "1280,2000") -> None:
    chromium(page, workdir, watch, f"--screenshot={png.resolve()}", f"--window-size={size}")
    assert png.read_bytes().startswith(b"\x89PNG"), png
