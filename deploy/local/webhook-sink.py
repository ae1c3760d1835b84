"""The local stack's webhook: answers every POST with 204 and prints its body as one line of
JSON on stdout, so `docker compose logs webhook-sink` shows what the notifier delivered. Runs
on the services image's Python (stdlib only); for the local stack, not for production."""

import json
import signal
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Sink(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            received = json.loads(body)
        except ValueError:
            received = body.decode(errors="replace")
        print(json.dumps({"path": self.path, "body": received}, sort_keys=True), flush=True)
        self.send_response(204)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        """Only the bodies go to stdout."""


def main() -> None:
    # as a container's PID 1 it would ignore SIGTERM without a handler of its own
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    ThreadingHTTPServer(("0.0.0.0", 8080), Sink).serve_forever()


if __name__ == "__main__":
    main()
