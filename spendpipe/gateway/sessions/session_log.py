"""The gateway's side of `spend.sessions`: write a session's records, read everyone's back, and
answer the pre-call hook that waits for its reservation's verdict.

A daemon thread with its own event loop (as the other followers: it works the same in the proxy
and in SDK mode) holds one producer and one consumer assigned every partition from the
beginning, so a cold gateway rebuilds every live session before its own reservations are judged
(they are behind the old records in the log). `reserve()` is awaited on the caller's loop: it
writes the reservation and returns the verdict once this gateway has read that record back and,
if the session made it wait, a later one decided it. Nothing starts in `__init__`.
"""

import asyncio
import concurrent.futures
import contextlib
import logging
import threading
import time
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from pydantic import ValidationError

from spendpipe.contracts.sessions import MESSAGE_TYPE, SessionRecord
from spendpipe.contracts.topics import TYPE_HEADER
from spendpipe.gateway.sessions.ledger import SessionLedger, SessionVerdict
from spendpipe.platform.kafka import KafkaSettings
from spendpipe.platform.kafka_topics import partition_numbers

log = logging.getLogger(__name__)

SWEEP_EVERY_S = 1.0


class SessionLog:
    def __init__(self, *, kafka: KafkaSettings, topic: str, ledger: SessionLedger) -> None:
        self._kafka = kafka
        self._topic = topic
        self.ledger = ledger
        self._lock = threading.Lock()
        self._waiters: dict[str, tuple[asyncio.AbstractEventLoop, asyncio.Future[SessionVerdict]]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ready = threading.Event()
        self._thread: threading.Thread | None = None
        self._producer: AIOKafkaProducer | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopped = False

    def start(self) -> None:
        with self._lock:
            if self._thread is None and not self._stopped:
                # loop and task exist before the thread runs, so a stop() at any moment cancels
                # the task (as in `TopicFollower`)
                self._loop = asyncio.new_event_loop()
                self._task = self._loop.create_task(self._run())
                self._thread = threading.Thread(target=self._main, name="spendpipe-sessions", daemon=True)
                self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop at any moment, from any thread, even before the thread ran; a stopped log does not
        start again."""
        with self._lock:
            self._stopped = True
            loop, task, thread = self._loop, self._task, self._thread
        if loop is not None and task is not None:
            with contextlib.suppress(RuntimeError):  # the loop already closed
                loop.call_soon_threadsafe(task.cancel)
        if thread is not None:
            thread.join(timeout)

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
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(self._produce(record), self._loop)

    async def _produce(self, record: SessionRecord) -> None:
        assert self._producer is not None
        await self._producer.send_and_wait(
            self._topic,
            record.model_dump_json(exclude_none=True).encode(),
            key=record.key.encode(),
            headers=[(TYPE_HEADER, MESSAGE_TYPE.encode())],
        )

    def _main(self) -> None:
        assert self._loop is not None, "start() creates it"
        assert self._task is not None, "start() creates it"
        with contextlib.suppress(asyncio.CancelledError):
            self._loop.run_until_complete(self._task)
        self._loop.close()

    async def _run(self) -> None:
        while True:
            self._producer = AIOKafkaProducer(**self._kafka.aiokafka_kwargs(), acks="all", linger_ms=0)
            try:
                await self._producer.start()
                break
            except Exception as error:
                log.warning("spendpipe sessions: cannot reach Kafka yet: %r", error)
                await self._producer.stop()
                await asyncio.sleep(1)
        self._ready.set()
        try:
            while True:
                try:
                    await self._follow()
                except Exception as error:
                    log.warning("spendpipe sessions reader failed, reading again: %r", error)
                    await asyncio.sleep(1)
        finally:
            await self._producer.stop()

    async def _follow(self) -> None:
        """Read every partition from the beginning. After a failure the ledger is rebuilt from
        the beginning too, so no record is applied twice."""
        consumer = AIOKafkaConsumer(**self._kafka.aiokafka_kwargs(), enable_auto_commit=False, fetch_max_wait_ms=50)
        await consumer.start()
        try:
            partitions = [TopicPartition(self._topic, p) for p in await partition_numbers(self._kafka, self._topic)]
            consumer.assign(partitions)
            await consumer.seek_to_beginning(*partitions)
            with self._lock:
                self.ledger.clear()
            swept = time.monotonic()
            while True:
                batches = await consumer.getmany(timeout_ms=500)
                for records in batches.values():
                    for message in records:
                        self._apply(message.value, message.timestamp / 1000)
                if time.monotonic() - swept > SWEEP_EVERY_S:
                    swept = time.monotonic()
                    with self._lock:
                        self.ledger.sweep(time.time())
        finally:
            await consumer.stop()

    def _apply(self, value: bytes | None, at: float) -> None:
        try:
            record = SessionRecord.model_validate_json(value or b"")
        except ValidationError as error:
            log.error("ignoring an unreadable session record: %s", error)
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
