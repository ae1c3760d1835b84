"""A webhook receiver on 127.0.0.1 for the notifier's tests: it accepts (200), refuses with a
status (503), or is not listening at all (connection refused), as a test switches it; every
accepted POST is kept with its path, `Idempotency-Key` header and JSON body."""

import json
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


@dataclass(frozen=True)
class Received:
    path: str
    idempotency_key: str
    body: dict[str, Any]


@dataclass
class WebhookReceiver:
    status: int = 200
    accepted: list[Received] = field(default_factory=list)
    refused: int = 0
    port: int = 0
    _runner: web.AppRunner | None = None

    async def listen(self) -> None:
        """Start (again) on the same port: the first call binds a free one."""
        app = web.Application()
        app.router.add_post("/{hook}", self._post)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port, reuse_address=True)
        await site.start()
        if not self.port:
            self.port = self._runner.addresses[0][1]

    async def close(self) -> None:
        """Stop listening: connections are refused until `listen()` again."""
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    def url(self, hook: str) -> str:
        return f"http://127.0.0.1:{self.port}/{hook}"

    def keys(self, hook: str) -> list[str]:
        return [r.idempotency_key for r in self.accepted if r.path == f"/{hook}"]

    async def _post(self, request: web.Request) -> web.Response:
        if self.status != 200:
            self.refused += 1
            return web.Response(status=self.status)
        body = json.loads(await request.read())
        self.accepted.append(Received(request.path, request.headers.get("Idempotency-Key", ""), body))
        return web.Response(status=200)
