"""Publishing events to Kafka from a background thread, so a request never waits on Kafka.

`publish()` only appends the event to a bounded in-memory queue (a `deque`; the append and its
number take one uncontended lock, `HandOver._submitting`), and `publish_deferred()` appends a
function that builds the event, so the request path does not even pay for building it. A
`BackgroundLoop` (a daemon thread with its own event loop) builds what was deferred and drains the
queue into an idempotent aiokafka producer (acks=all). The thread does not poll: with nothing to do
it sleeps on an `asyncio.Event`, and the hand-over that finds it asleep wakes it
(`call_soon_threadsafe`, one write to the loop's wake-up pipe), so an idle gateway's publisher
never takes the GIL from the host's threads. Woken, or done with a batch while more wait, it
lingers (`linger_s`, 50 ms by default) so that many events share one wake-up, and sends them as one
record batch per partition (`send_batch`: aiokafka's cost per `send` is paid per batch, not per
event). Each event's partition is the one a plain `send()` of its key would take (aiokafka's
default partitioner).

When Kafka cannot take a batch (unreachable at start, gone mid-run, or too slow), the batch goes
to the disk spool and is replayed, oldest first, once Kafka answers again. `close(timeout)` gives
Kafka all but the last `spool_reserve(timeout)` of its time: then a delivery under way is cut
short and what is still held is spooled, so a close that runs out while Kafka is slow leaves
nothing that is neither delivered nor spooled.
Only when the queue or the spool is full, an event comes after `close()`, or the thread fails on
an error it did not expect (`publisher_failed`, for the batch it held), is an event lost;
each loss is counted in `spendpipe_gateway_events_lost_total` and logged. A hand-over racing
`close()` is never left behind: the thread looks at the queue again before it stops, and one that
appends after the thread's last look counts itself as lost (`HandOver._end`).
"""

import asyncio
import atexit
import collections
import contextlib
import functools
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import DefaultPartitioner
from aiokafka.producer.message_accumulator import BatchBuilder

from spendpipe.contracts.events import SpendEvent
from spendpipe.gateway.metrics import GatewayMetrics
from spendpipe.gateway.recording.spool import DiskSpool
from spendpipe.platform.background_loop import BackgroundLoop
from spendpipe.platform.kafka import KafkaSettings

log = logging.getLogger(__name__)

Item = TypeVar("Item")
Payload = tuple[bytes | None, bytes]
"""(Kafka key, value)"""
Deferred = Callable[[], SpendEvent | None]
"""Builds an event on the publisher's thread; None when there is none to publish (the function
counts and logs why)."""


@dataclass(frozen=True)
class PublisherOptions:
    queue_size: int = 100_000
    batch_size: int = 2_000
    linger_s: float = 0.05
    """How long the thread, woken by a hand-over, lets more gather before it drains the queue: one
    wake-up and one Kafka batch per partition for many events rather than for each."""
    delivery_timeout_s: float = 10.0
    """How long one batch may wait for Kafka's acknowledgement before it is spooled."""
    retry_backoff_s: float = 1.0
    """How long to wait, after Kafka failed, before trying it again."""


def spool_reserve(timeout: float) -> float:
    """The part of a close's `timeout` kept for spooling what Kafka did not take by then."""
    return min(5.0, timeout / 2)


class HandOver(Generic[Item]):
    """A queue that request threads append to and one background thread drains, sleeping while
    it is empty: the hand-over that finds it asleep wakes it (`_wake_up`). The in-thread publisher
    and the subprocess publisher (`publisher_process.py`) both hand over this way."""

    def __init__(self, *, metrics: GatewayMetrics, background: BackgroundLoop) -> None:
        self._metrics = metrics
        self._queue: collections.deque[Item] = collections.deque()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake = asyncio.Event()
        self._asleep = False
        """The thread waits on `_wake`: the next hand-over must wake it."""
        self._ended = False
        """The thread takes nothing more: a hand-over counts what it appended as lost (`_end`)."""
        self._handled = 0
        """How many items handed over are handled (delivered, spooled or counted as lost), in the
        order they were handed over."""
        self._progress = threading.Condition()
        self._last_submitted = 0
        """How many items were appended: `wait_idle` waits until that many are handled."""
        self._submitting = threading.Lock()
        """Held for an append and its number, so numbers follow the queue's order and
        `_last_submitted` never goes back (two threads numbering apart could store theirs in the
        other order, and a `wait_idle` then return before its caller's own item is handled)."""
        self._background = background

    def _start(self) -> None:
        if self._background.start():
            atexit.register(self.close)

    def close(self, timeout: float = 30.0) -> bool:
        raise NotImplementedError

    def _lose(self, count: int, reason: str) -> None:
        self._metrics.lost.labels(reason=reason).inc(count)
        log.error("spendpipe lost %d spend event(s): %s", count, reason)

    def _wake_up(self) -> None:
        """Called from any thread. The thread sets `_asleep` before it looks at the queue a last
        time, and a hand-over appends before it reads `_asleep`, so an item is never left behind
        by a sleeping thread (a wake-up too many only costs the thread one look)."""
        self._asleep = False
        loop = self._loop
        if loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop is closed: the thread ended
                loop.call_soon_threadsafe(self._wake.set)

    def _end(self) -> None:
        """The thread's last act. A hand-over that passed its `_closed` check before `close()` set
        it may append after the thread's last look: either this take finds the item, or the
        hand-over, which reads `_ended` after its append, finds it set (`_lose_late`). Either way
        the item is counted as lost once (a `popleft` takes it once), never left in the queue."""
        self._ended = True
        self._lose_late()

    def _lose_late(self) -> None:
        if left := self._take(len(self._queue) + 1):
            self._lose(len(left), "closed")
            self._mark_handled(len(left))

    def _mark_handled(self, count: int) -> None:
        with self._progress:
            self._handled += count
            self._progress.notify_all()

    def _take(self, limit: int) -> list[Item]:
        taken: list[Item] = []
        while len(taken) < limit:
            try:
                taken.append(self._queue.popleft())
            except IndexError:
                break
        return taken


class EventPublisher(HandOver[SpendEvent | Deferred]):
    """Owns the queue, the background thread, the producer and the spool.

    Lifecycle: nothing starts in `__init__`; the first `publish()` starts the thread.
    `close()` drains the queue, delivers or spools what is left, and stops; it is also
    registered with `atexit`. After `close()`, `publish()` counts events as lost, and the
    thread does not start again.
    """

    def __init__(
        self,
        *,
        kafka: KafkaSettings,
        topic: str,
        spool: DiskSpool,
        metrics: GatewayMetrics,
        options: PublisherOptions,
    ) -> None:
        super().__init__(metrics=metrics, background=BackgroundLoop(name="spendpipe-publisher", main=self._run))
        self._kafka = kafka
        self._topic = topic
        self._spool = spool
        self._options = options
        self._stopping = threading.Event()
        self._closed = False
        self._kafka_down_until = 0.0
        self._deliver_until = float("inf")
        """Set by `close()`: past it (on `time.monotonic()`, the event loop's clock), Kafka is not
        tried and what is held is spooled."""
        self._delivering: asyncio.Timeout | None = None
        self._torn_reported = 0

    def start(self) -> None:
        """Start the background thread and connect to Kafka now rather than on the first event
        (the first request then does not pay for the connection)."""
        self._start()

    def publish(self, event: SpendEvent) -> None:
        """Hand an event over; never blocks and never raises."""
        self._hand_over(event)

    def publish_deferred(self, build: Deferred) -> None:
        """Hand over a function that builds the event, to be called on the publisher's thread;
        never blocks and never raises. `build` must hold no reference to anything its caller
        may still change."""
        self._hand_over(build)

    def _hand_over(self, item: SpendEvent | Deferred) -> None:
        self._start()
        if self._closed:
            self._lose(1, "closed")
            return
        if len(self._queue) >= self._options.queue_size:  # several threads may pass at once: a few over
            self._lose(1, "queue_full")
            return
        with self._submitting:
            self._queue.append(item)
            self._last_submitted += 1
        if self._ended:
            self._lose_late()
        elif self._asleep:
            self._wake_up()

    def wait_idle(self, timeout: float) -> bool:
        """Block until every event handed over so far is acknowledged by Kafka or spooled,
        and the spool is empty unless Kafka is down. True when that happened in time."""
        target = self._last_submitted
        with self._progress:
            return self._progress.wait_for(
                lambda: self._handled >= target and (self._nothing_to_replay() or self._kafka_is_down()),
                timeout,
            )

    def progress(self) -> tuple[int, bool, bool]:
        """(how many items handed over are handled: delivered, spooled or counted as lost, in the
        order they were handed over; the spool holds nothing for this process to replay; Kafka is
        down)."""
        return self._handled, self._nothing_to_replay(), self._kafka_is_down()

    def wait_progress(self, last: tuple[int, bool, bool]) -> tuple[int, bool, bool]:
        """Block until `progress()` differs from `last` (as the thread notes its progress: no
        polling), and return it."""
        with self._progress:
            self._progress.wait_for(lambda: self.progress() != last)
            return self.progress()

    def close(self, timeout: float = 30.0) -> bool:
        """Stop: deliver what is held for all but `spool_reserve(timeout)` of `timeout`, then spool
        the rest; True when the background thread finished within `timeout`."""
        self._closed = True
        self._deliver_until = min(self._deliver_until, time.monotonic() + timeout - spool_reserve(timeout))
        self._stopping.set()
        self._wake_up()
        loop = self._loop
        if loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop is closed: the thread ended
                loop.call_soon_threadsafe(self._cut_delivery)
        return self._background.stop(timeout, cancel=False)  # `_run` drains, then ends

    def _cut_delivery(self) -> None:
        """A delivery under way ends by the close's deadline (the loop's thread)."""
        delivering = self._delivering
        if delivering is not None and not delivering.expired():
            when = delivering.when()
            delivering.reschedule(self._deliver_until if when is None else min(when, self._deliver_until))

    @property
    def running(self) -> bool:
        """The background thread runs: started, and not ended by `close()` or an error."""
        return self._background.alive

    async def _run(self) -> None:
        self._loop = asyncio.get_running_loop()
        producer: AIOKafkaProducer | None = None
        in_hand = 0
        try:
            producer = await self._deliver(None, [])  # connect early; a failure just means "spool"
            while True:
                items = self._take(self._options.batch_size)
                if items:
                    in_hand = len(items)
                    payloads = [_encode(event) for event in self._build(items)]
                    if payloads:
                        producer = await self._send_or_spool(producer, payloads)
                    self._mark_handled(len(items))
                    in_hand = 0
                # the spool drains between fresh batches too, not only when traffic stops
                if not self._spool.empty:
                    producer = await self._replay_spool(producer)
                    self._mark_handled(0)
                if items:
                    if len(self._queue) < self._options.batch_size and not self._stopping.is_set():
                        await asyncio.sleep(self._options.linger_s)  # busy: let the next batch gather
                    continue
                # the queue is looked at again: a hand-over may have come after the take above and
                # before the `close()` that set `_stopping`
                if self._stopping.is_set() and not self._queue and (self._nothing_to_replay() or self._kafka_is_down()):
                    break
                await self._sleep()
        finally:
            if in_hand:  # ended by an error it did not expect (logged by `BackgroundLoop`) mid-batch
                self._lose(in_hand, "publisher_failed")
                self._mark_handled(in_hand)
            self._end()
            await self._stop_producer(producer)

    async def _sleep(self) -> None:
        """Until something is handed over or `close()` is called; while events wait in the
        spool for Kafka, at most until Kafka is tried again."""
        self._asleep = True
        if self._queue or self._stopping.is_set():  # handed over before `_asleep` was seen
            self._asleep = False
            return
        if self._spool.empty:
            retry_in = None
        elif self._spool.held_elsewhere:  # another process replays what is left: look again later
            retry_in = self._options.retry_backoff_s
        else:
            retry_in = max(0.0, self._kafka_down_until - time.monotonic())
        try:
            async with asyncio.timeout(retry_in):
                await self._wake.wait()
        except TimeoutError:
            pass
        finally:
            self._asleep = False
            self._wake.clear()
        if not self._stopping.is_set():  # hand-overs meanwhile do not wake it: `_asleep` is off
            await asyncio.sleep(self._options.linger_s)

    def _build(self, items: list[SpendEvent | Deferred]) -> list[SpendEvent]:
        events: list[SpendEvent] = []
        for item in items:
            if isinstance(item, SpendEvent):
                events.append(item)
                continue
            try:
                event = item()
            except Exception:  # the function counts its own failures; this one it did not expect
                log.exception("spendpipe could not build a spend event")
                self._lose(1, "unbuildable")
                continue
            if event is not None:
                events.append(event)
        return events

    async def _send_or_spool(
        self, producer: AIOKafkaProducer | None, payloads: list[Payload]
    ) -> AIOKafkaProducer | None:
        producer = await self._deliver(producer, payloads)
        if producer is None:
            try:
                dropped = self._spool.append([value for _, value in payloads])
            except OSError as error:  # a full disk or a bad spool_dir must not stop the publisher
                log.error("spendpipe could not write to the spool: %r", error)
                self._lose(len(payloads), "spool_error")
                return None
            self._metrics.spooled.inc(len(payloads) - dropped)
            if dropped:
                self._lose(dropped, "spool_full")
            self._metrics.spool_bytes.set(self._spool.size_bytes)
        return producer

    async def _replay_spool(self, producer: AIOKafkaProducer | None) -> AIOKafkaProducer | None:
        if self._kafka_is_down():
            return producer
        oldest = self._spool.oldest()
        if oldest is None:
            return producer
        segment, values = oldest
        if self._spool.torn_lines > self._torn_reported:
            self._lose(self._spool.torn_lines - self._torn_reported, "spool_torn_line")
            self._torn_reported = self._spool.torn_lines
        producer = await self._deliver(producer, [(_key_of(value), value) for value in values])
        if producer is not None:
            self._spool.remove(segment)
            log.info("spendpipe delivered %d spooled event(s) from %s", len(values), segment.name)
        self._metrics.spool_bytes.set(self._spool.size_bytes)
        return producer

    def _nothing_to_replay(self) -> bool:
        """The spool holds nothing this process is to replay now: it is empty, or what is left is
        being replayed by another process sharing the directory (`DiskSpool.held_elsewhere`)."""
        return self._spool.empty or self._spool.held_elsewhere

    def _kafka_is_down(self) -> bool:
        """Kafka is not to be tried now: it failed within `retry_backoff_s`, or `close()`'s time
        for delivering ran out (what is held is spooled)."""
        now = time.monotonic()
        return now < self._kafka_down_until or now >= self._deliver_until

    async def _deliver(self, producer: AIOKafkaProducer | None, payloads: list[Payload]) -> AIOKafkaProducer | None:
        """Send and wait for acknowledgements. Returns the producer to keep using, or None
        when Kafka did not take the batch (the caller spools it)."""
        if self._kafka_is_down():
            return None
        until = min(time.monotonic() + self._options.delivery_timeout_s, self._deliver_until)
        try:
            async with asyncio.timeout_at(until) as self._delivering:
                producer = producer or await self._start_producer()
                partitions = sorted(await producer.partitions_for(self._topic))
                pending = [
                    await producer.send_batch(batch, self._topic, partition=partition)
                    for partition, batch in record_batches(producer, partitions, payloads)
                ]
                await asyncio.gather(*pending)
        except Exception as error:  # any failure means: not known to be delivered
            log.warning("spendpipe could not deliver %d event(s) to Kafka: %r", len(payloads), error)
            self._kafka_down_until = time.monotonic() + self._options.retry_backoff_s
            await self._stop_producer(producer)
            return None
        finally:
            self._delivering = None
        self._metrics.published.inc(len(payloads))
        return producer

    async def _start_producer(self) -> AIOKafkaProducer:
        producer = AIOKafkaProducer(
            **self._kafka.aiokafka_kwargs(),
            enable_idempotence=True,
            acks="all",
            linger_ms=0,  # `record_batches` hands it whole batches, gathered for `linger_s`
            max_batch_size=512 * 1024,
            request_timeout_ms=int(self._options.delivery_timeout_s * 1000),
            retry_backoff_ms=200,
        )
        try:
            await producer.start()
            await producer.partitions_for(self._topic)  # topic metadata now, not on the first send
        except BaseException:
            await self._stop_producer(producer, timeout_s=1.0)
            raise
        return producer

    async def _stop_producer(self, producer: AIOKafkaProducer | None, timeout_s: float | None = None) -> None:
        if producer is None:
            return
        until = time.monotonic() + (timeout_s or self._options.delivery_timeout_s)
        if self._stopping.is_set():  # closing: what is held waits for the spool, not for this
            until = min(until, max(self._deliver_until, time.monotonic()) + _STOP_AT_CLOSE_S)
        try:
            async with asyncio.timeout_at(until):
                await producer.stop()
        except Exception as error:
            log.debug("spendpipe producer did not stop cleanly: %r", error)


_STOP_AT_CLOSE_S = 1.0
"""How long a producer may take to stop once a close's time for delivering ran out."""


def record_batches(
    producer: AIOKafkaProducer, partitions: list[int], payloads: list[Payload]
) -> list[tuple[int, BatchBuilder]]:
    """The payloads in record batches, one or more per partition, each record on the partition
    `producer.send()` would choose for its key (aiokafka's default partitioner, Kafka's murmur2),
    so a replayed event meets its first attempt's duplicate check. One `send_batch` costs the
    producer about what one `send` does, whatever the batch holds."""
    building: dict[int, BatchBuilder] = {}
    full: list[tuple[int, BatchBuilder]] = []
    known = tuple(partitions)
    for key, value in payloads:
        partition = _partition_of(key, known) if key is not None else _PARTITIONER(None, partitions, partitions)
        batch = building.get(partition)
        if batch is None or batch.append(key=key, value=value, timestamp=None) is None:
            if batch is not None:
                full.append((partition, batch))
            batch = building[partition] = producer.create_batch()
            if batch.append(key=key, value=value, timestamp=None) is None:
                raise ValueError(f"an event of {len(value)} bytes does not fit in a Kafka batch")
    return full + list(building.items())


@functools.lru_cache(maxsize=4096)
def _partition_of(key: bytes, partitions: tuple[int, ...]) -> int:
    """The partition of a key (a key hash: few and repeated, so cached; murmur2 is pure Python)."""
    return int(_PARTITIONER(key, list(partitions), list(partitions)))


_PARTITIONER = DefaultPartitioner()


def _key_of(value: bytes) -> bytes | None:
    """The Kafka key an event was first sent with (its key hash), so a replayed event lands on the
    same partition as its first attempt and meets the same aggregator's duplicate check."""
    try:
        key_hash = orjson.loads(value).get("key_hash")
    except orjson.JSONDecodeError:
        return None
    return key_hash.encode() if isinstance(key_hash, str) else None


def _encode(event: SpendEvent) -> Payload:
    key = event.key_hash.encode() if event.key_hash else None
    return key, event.to_json()
