"""A webhook receiver on 127.0.0.1 that answers slowly or at length cannot hold the notifier:
an attempt ends within `timeout_s` in all, however the answer trickles, and an answer's body is
never read (only its status counts)."""

import asyncio
import contextlib

import httpx
from prometheus_client import CollectorRegistry
from pydantic import SecretStr

from spendpipe.notifier.metrics import NotifierMetrics
from spendpipe.notifier.notifications import of_decision
from spendpipe.notifier.settings import RetrySettings, WebhookSettings
from spendpipe.notifier.webhooks import Webhook, WebhookDelivery
from tests.unit.test_notifier import block


class Trickling:
    """Answers its first request a header byte every 0.2 s, never finishing; later ones `200`
    with a body of `body_bytes`, sent at once."""

    def __init__(self, body_bytes: int) -> None:
        self.requests = 0
        self.body_bytes = body_bytes
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> str:
        self._server = await asyncio.start_server(self._answer, "127.0.0.1", 0)
        return f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}/hook"

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        with contextlib.suppress(Exception):
            await self._server.wait_closed()

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, asyncio.CancelledError):
            head = await reader.readuntil(b"\r\n\r\n")
            length = next(
                int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")
            )
            await reader.readexactly(length)
            self.requests += 1
            if self.requests == 1:
                writer.write(b"HTTP/1.1 200 OK\r\n")
                for _ in range(1000):
                    writer.write(b"X")
                    await writer.drain()
                    await asyncio.sleep(0.2)  # the slow receiver under test, not a wait for a condition
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % self.body_bytes)
            chunk = b"x" * (1 << 20)
            for _ in range(self.body_bytes // len(chunk)):
                writer.write(chunk)
                await writer.drain()
            writer.close()


async def test_an_answer_trickled_a_byte_at_a_time_is_given_up_and_tried_again() -> None:
    registry = CollectorRegistry()
    retry = RetrySettings(initial_backoff_s=0.1, max_backoff_s=0.1, timeout_s=1)
    async with Trickling(body_bytes=256 << 20) as url, httpx.AsyncClient() as client:
        hook = Webhook("hook", WebhookSettings(url=SecretStr(url)))
        delivery = WebhookDelivery(
            webhooks=[hook], retry=retry, metrics=NotifierMetrics(registry=registry), client=client
        )

        # each read of the first answer comes within httpx's timeout: only a deadline on the
        # whole attempt ends it (the 1,000 bytes take 200 s); the second answer's 256 MiB body
        # is not read
        await asyncio.wait_for(delivery.deliver(of_decision(block(1))), timeout=60)

    assert registry.get_sample_value("spendpipe_notifier_delivery_failures_total", {"webhook": "hook"}) == 1
    assert registry.get_sample_value("spendpipe_notifier_delivered_total", {"webhook": "hook", "kind": "block"}) == 1
