"""The gateway's side of `spend.sessions`: write a session's records, read everyone's back, and
answer the pre-call hook that waits for its reservation's verdict.

A `BackgroundLoop` (as the other followers: it works the same in the proxy and in SDK mode)
holds one producer and a `CompactedTopicReader` of every partition from the beginning, so a
cold gateway rebuilds every live session before its own reservations are judged (they are
behind the old records in the log). `reserve()` is awaited on the caller's loop: it
writes the reservation and returns the verdict once this gateway has read that record back and,
if the session made it wait, a later one decided it. Nothing starts in `__init__`.
"""

import asyncio
import concurrent.futures
import logging
import threading
import time
from typing import Any

from aiokafka import AIOKafkaProducer
from pydantic import ValidationError

from spendpipe.contracts.sessions import MESSAGE_TYPE, SessionRecord
from spendpipe.contracts.topics import TYPE_HEADER
from spendpipe.gateway.sessions.ledger import SessionLedger, SessionVerdict
from spendpipe.platform.background_loop import BackgroundLoop
from spendpipe.platform.compacted import CompactedTopicReader, TopicRecord
from spendpipe.platform.kafka import KafkaSettings

log = logging.getLogger(__name__)

SWEEP_EVERY_S = 1.0


class SessionLog:
    def __init__(self, *, kafka: KafkaSettings, topic: str, ledger: SessionLedger) -> None:
        self._kafka = kafka
        self._topic = topic
        self.ledger = ledger
        self._lock = threading.Lock()
        self._waiters: dict[str, tuple[asyncio.AbstractEventLoop, asyncio.Future[SessionVerdict]]] = {}
        self._ready = threading.Event()
        self._producer: AIOKafkaProducer | None = None
        self._background = BackgroundLoop(name="spendpipe-sessions", main=self._run)

    def start(self) -> None:
        self._background.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop at any moment, from any thread, even before `start()`; a stopped log does not
        start again."""
        self._background.stop(timeout)

    def live_sessions(self) -> int:
        with self._lock:
            return len(self.ledger)

    async def reserve(self, record: SessionRecord, *, wait_s: float) -> SessionVerdict | None:
        """Write the reservation and wait for its verdict; None if none came within `wait_s`
        (the caller then withdraws it)."""
        self.start()
        future: asyncio.Future[SessionVerdict] = asyncio.get_running_loop().create_future()
        with self._lock:
            self._waiters[record.call_id] = (asyncio.get_running_loop(), future)
        try:
            await asyncio.wait_for(asyncio.wrap_future(self._send(record)), wait_s)
            return await asyncio.wait_for(future, wait_s)
        except (TimeoutError, OSError, RuntimeError) as error:
            log.warning("spendpipe: no verdict on session call %s: %r", record.call_id, error)
            return None
        finally:
            with self._lock:
                self._waiters.pop(record.call_id, None)

    def write(self, record: SessionRecord) -> None:
        """Write a record without waiting (a call's end, from a logging hook)."""
        self.start()
        future = self._send(record)
        future.add_done_callback(_log_failure)

    def _send(self, record: SessionRecord) -> "concurrent.futures.Future[Any]":
        if not self._ready.wait(30):
            raise RuntimeError("the sessions log did not start")
        return self._background.submit(self._produce(record))

    async def _produce(self, record: SessionRecord) -> None:
        assert self._producer is not None
        await self._producer.send_and_wait(
            self._topic,
            record.model_dump_json(exclude_none=True).encode(),
            key=record.key.encode(),
            headers=[(TYPE_HEADER, MESSAGE_TYPE.encode())],
        )

    async def _run(self) -> None:
        try:
            await self._connect()
            self._ready.set()
            while True:
                try:
                    await self._follow()
                except Exception as error:
                    log.warning("spendpipe sessions reader failed, reading again: %r", error)
                    await asyncio.sleep(1)
        finally:  # also when stopped while connecting
            if self._producer is not None:
                await self._producer.stop()

    async def _connect(self) -> None:
        while True:
            self._producer = AIOKafkaProducer(**self._kafka.aiokafka_kwargs(), acks="all", linger_ms=0)
            try:
                await self._producer.start()
                return
            except Exception as error:
                log.warning("spendpipe sessions: cannot reach Kafka yet: %r", error)
                await self._producer.stop()
                await asyncio.sleep(1)

    async def _follow(self) -> None:
        """Read every partition from the beginning. After a failure the ledger is rebuilt from
        the beginning too, so no record is applied twice."""
        # Kafka answers a fetch as soon as a record arrives, so its longest wait (500 ms) does not
        # delay a reservation read back (7 ms either way, measured); a shorter one only made an
        # idle gateway fetch 20 times a second (docs/performance.md)
        async with CompactedTopicReader(kafka=self._kafka, topic=self._topic, on_record=self._apply) as reader:
            with self._lock:
                self.ledger.clear()
            sweeping = asyncio.create_task(self._sweep())
            try:
                await reader.follow()
            finally:
                sweeping.cancel()

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(SWEEP_EVERY_S)
            with self._lock:
                self.ledger.sweep(time.time())

    def _apply(self, message: TopicRecord) -> None:
        at = message.timestamp / 1000
        try:
            record = SessionRecord.model_validate_json(message.value or b"")
        except ValidationError as error:
            log.error("ignoring an unreadable session record: %s", error)
            return
        if record.key.encode() != (message.key or b""):
            # filed under another key, it is on another partition than the session's other records:
            # gateways could apply it at different points and reach different verdicts
            log.error("ignoring a session record filed under another session's key")
            return
        with self._lock:
            verdicts = self.ledger.apply(record, at)
            waiting = [(self._waiters.get(v.call_id), v) for v in verdicts]
        for waiter, verdict in waiting:
            if waiter is not None:
                loop, future = waiter
                loop.call_soon_threadsafe(_resolve, future, verdict)


def _resolve(future: "asyncio.Future[SessionVerdict]", verdict: SessionVerdict) -> None:
    if not future.done():
        future.set_result(verdict)


def _log_failure(future: "concurrent.futures.Future[Any]") -> None:
    if not future.cancelled() and future.exception() is not None:
        log.warning("spendpipe: a session record was not written: %r", future.exception())
