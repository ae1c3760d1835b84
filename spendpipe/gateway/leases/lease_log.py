"""The gateway's Kafka side of headroom leases: lease requests out on `spend.lease_requests`,
every grant in from `spend.leases` (verified like decisions, then applied to the `LeaseBook`).

A `BackgroundLoop` (as the other followers) holds one producer and a consumer of every partition
of the grants topic, positioned at its end when it starts: a gateway starts with no chain, so
older grants say nothing it needs, and a grant's `free` is only trusted from the moment it is
read. Requests wait for that positioning, so no answer can be written before the reader looks.
Nothing starts in `__init__`.
"""

import asyncio
import concurrent.futures
import logging
import threading
import time
from collections.abc import Callable, Iterable

from aiokafka import AIOKafkaProducer, TopicPartition
from pydantic import ValidationError

from spendpipe.contracts.leases import REQUEST_MESSAGE_TYPE, LeaseGrant, LeaseRequest
from spendpipe.contracts.topics import TYPE_HEADER
from spendpipe.gateway.leases.book import LeaseBook
from spendpipe.platform.background_loop import BackgroundLoop
from spendpipe.platform.compacted import TopicRecord
from spendpipe.platform.kafka import KafkaSettings
from spendpipe.platform.kafka_topics import partition_numbers
from spendpipe.platform.signing import RecordVerifier
from spendpipe.platform.unreadable import TolerantConsumer

log = logging.getLogger(__name__)

FETCH_WAIT_MS = 20
"""Grants are waited on by calls: the reader asks the broker often."""


class LeaseLog:
    def __init__(
        self,
        *,
        kafka: KafkaSettings,
        requests_topic: str,
        grants_topic: str,
        book: LeaseBook,
        verifier: RecordVerifier,
        tick_s: float = 0.25,
    ) -> None:
        self.tick: Callable[[], None] = lambda: None
        """Run every `tick_s` on the log's loop (the gate's sweep of idle chains)."""
        self._tick_s = tick_s
        self._kafka = kafka
        self._requests_topic = requests_topic
        self._grants_topic = grants_topic
        self._book = book
        self._verifier = verifier
        self.ready = threading.Event()
        """Set once the producer is up and the reader stands at the grants topic's end."""
        self._producer: AIOKafkaProducer | None = None
        self._background = BackgroundLoop(name="spendpipe-leases", main=self._run)

    def start(self) -> None:
        self._background.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._background.stop(timeout)

    def send(self, requests: Iterable[LeaseRequest]) -> list["concurrent.futures.Future[None]"]:
        """Write requests without waiting for Kafka (from any thread); a failure is logged, and
        the book asks again after `REASK_S`. The futures end once Kafka took each."""
        futures = []
        for request in requests:
            try:
                future = self._background.submit(self._produce(request))
            except RuntimeError:
                log.warning("spendpipe leases: not running; request for %s not sent", request.key)
                break
            future.add_done_callback(_log_failure)
            futures.append(future)
        return futures

    async def _produce(self, request: LeaseRequest) -> None:
        await asyncio.get_running_loop().run_in_executor(None, self.ready.wait, 30)
        if self._producer is None:
            raise RuntimeError("the lease log did not start")
        await self._producer.send_and_wait(
            self._requests_topic,
            request.model_dump_json(exclude_none=True).encode(),
            key=request.key.encode(),
            headers=[(TYPE_HEADER, REQUEST_MESSAGE_TYPE.encode())],
        )

    async def _run(self) -> None:
        while True:
            consumer = None
            ticking: asyncio.Task[None] | None = None
            try:
                self._producer = AIOKafkaProducer(**self._kafka.aiokafka_kwargs(), acks="all", linger_ms=0)
                await self._producer.start()
                partitions = [
                    TopicPartition(self._grants_topic, p)
                    for p in await partition_numbers(self._kafka, self._grants_topic)
                ]
                consumer = TolerantConsumer(
                    **self._kafka.aiokafka_kwargs(), enable_auto_commit=False, fetch_max_wait_ms=FETCH_WAIT_MS
                )
                await consumer.start()
                consumer.assign(partitions)
                await consumer.seek_to_end(*partitions)
                for partition in partitions:
                    await consumer.position(partition)  # resolve the end now, before any request
                self.ready.set()
                ticking = asyncio.create_task(self._ticks())
                while True:
                    batches = await consumer.getmany(timeout_ms=200)
                    for records in batches.values():
                        for record in records:
                            self._apply(record)
            except asyncio.CancelledError:
                raise
            except Exception as error:
                log.warning("spendpipe leases: Kafka failed, reconnecting: %r", error)
                self.ready.clear()
                await asyncio.sleep(1)
            finally:
                if ticking is not None:
                    ticking.cancel()
                if consumer is not None:
                    await consumer.stop()
                if self._producer is not None:
                    await self._producer.stop()

    async def _ticks(self) -> None:
        while True:
            await asyncio.sleep(self._tick_s)
            try:
                self.tick()
            except Exception:
                log.exception("spendpipe leases: the periodic sweep failed")

    def _apply(self, record: TopicRecord) -> None:
        value = self._verifier.accepted_value(record)
        if value is None:
            return
        try:
            grant = LeaseGrant.model_validate_json(value)
        except ValidationError as error:
            log.error("ignoring an unreadable lease grant: %s", error.errors(include_input=False)[:3])
            return
        if grant.key.encode() != (record.key or b""):
            log.error("ignoring a lease grant filed under another target's key")
            return
        self._book.apply(grant, time.monotonic())


def _log_failure(future: "concurrent.futures.Future[None]") -> None:
    exception = None if future.cancelled() else future.exception()
    if exception is not None:
        log.warning("spendpipe: a lease request was not written: %r", exception)
