"""Sending one spend event and learning where Kafka put it (the ledger's position), on a
`BackgroundLoop` of its own: works the same from sync code and from inside a running loop.

The producer is idempotent with acks=all, as the gateway's publisher; events carry no key, as
the publisher sends an event without a key hash. Nothing connects before the first send.
"""

import asyncio
import concurrent.futures

from aiokafka import AIOKafkaProducer

from spendpipe.contracts.events import SpendEvent
from spendpipe.platform.background_loop import BackgroundLoop
from spendpipe.platform.kafka import KafkaSettings


class EventSender:
    def __init__(self, *, kafka: KafkaSettings, topic: str, timeout_s: float) -> None:
        self._kafka = kafka
        self._topic = topic
        self._timeout_s = timeout_s
        self._producer: AIOKafkaProducer | None = None
        self._starting: asyncio.Lock | None = None  # made on the loop, used only there
        self._background = BackgroundLoop(name="spendpipe-budget-manager", main=self._main)

    def send(self, event: SpendEvent) -> "concurrent.futures.Future[tuple[int, int]]":
        """Deliver `event`; the future holds its (partition, offset) or the delivery's error."""
        self._background.start()
        return self._background.submit(self._send(event))

    def close(self, timeout: float = 10.0) -> None:
        self._background.stop(timeout)

    async def _main(self) -> None:
        try:
            await asyncio.Event().wait()  # until stop() cancels it
        finally:
            if self._producer is not None:
                await self._producer.stop()

    async def _send(self, event: SpendEvent) -> tuple[int, int]:
        async with asyncio.timeout(self._timeout_s):
            producer = await self._started()
            metadata = await producer.send_and_wait(self._topic, value=event.to_json())
        return metadata.partition, metadata.offset

    async def _started(self) -> AIOKafkaProducer:
        self._starting = self._starting or asyncio.Lock()
        async with self._starting:
            if self._producer is None:
                producer = AIOKafkaProducer(**self._kafka.aiokafka_kwargs(), enable_idempotence=True, acks="all")
                try:
                    await producer.start()
                except BaseException:
                    await producer.stop()
                    raise
                self._producer = producer
            return self._producer
