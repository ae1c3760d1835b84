"""The aggregator's intake: its own consumer of `spend.events`, reading the next batch while
ClickHouse writes the one before.

Written by hand, not with FastStream's batch subscriber (which the aggregator used until
2026-12-02), for two reasons. That subscriber reads nothing while its handler runs, so the
event loop sat idle while ClickHouse wrote and ClickHouse sat idle while the loop unpacked the
next records: about a quarter of each flush, measured. And its acknowledgement commits the
consumer's position, which after reading ahead would commit records not yet written. Here the
batch being read and the batch being written are separate, and each commit names the offsets
written: the highest offset of each partition of the batch, plus one.

The rules:
- Batches are written one at a time, in the order read. While one is written the next one
  grows, up to `batch_size` records; when the writer is free, whatever has been read goes (a
  quiet pipeline flushes each record as it comes, a busy one in large batches).
- A batch is committed after `flush` returned WRITTEN (ClickHouse holds it, its dead letters
  are published). A flush that FAILED rewinds: every partition of the failed
  batch and of the batch read meanwhile is sought back to its first unwritten offset, and the
  records are read again after `retry_backoff_s`.
- When the intake is idle (nothing read in hand, no flush in flight, no retry kept back), a
  partition whose position passed its last commit without records (a transaction's commit or
  abort marker takes an offset, and no record of it is handed over) is committed at its
  position: every record before it is written, and the lag and readiness would otherwise count
  the marker as a record behind forever.
- A read that failed (`KafkaError`) is tried again after `retry_backoff_s`, or as soon as the
  flush in flight ends, whichever comes first: the next batch in hand need not wait for Kafka.
- A rebalance waits for the flush in flight (and its commit), and the batch read before it is
  dropped and read again by whoever holds its partitions next (aiokafka restarts an assigned
  partition from its committed offset).
- A flush that lost ownership (another aggregator claimed one of its partitions: `ownership`)
  is not committed and not retried: both batches are dropped and their partitions sought back,
  and nothing more is written until the group assigns partitions again (it will: the group has
  moved on to a later generation, which this consumer learns at its next heartbeat).
- A retry the writer will not write yet (`ReadFurtherError`: it is cut shorter than the attempt
  whose totals landed, and would count a copy of an event counted there) is kept, with the batch
  read meanwhile, and read on, past `batch_size` if need be, until every partition it names is
  read through the offset it needs; then it goes again, saying which of those partitions have no
  record in it because they were read and written before (`PartitionOffsets.read_through`).
  Only a retry after a failed flush, a restart or a rebalance is ever asked to. Meanwhile only
  the partitions still short of their offset are read (what others fetched waits in aiokafka's
  buffer), so the batch grows by those records and what a fetch brings past them (at most a
  `batch_size` per partition), whichever partition's leader is away; a partition whose log
  ends before its offset (the topic recreated, the log truncated) holds none of the records
  asked for, and is not waited for.
"""

import asyncio
import contextlib
import enum
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import IllegalStateError, KafkaError

from spendpipe.aggregator.dead_letters import UnreadableRecord
from spendpipe.aggregator.offsets import PartitionOffsets, ReadFurtherError, earliest
from spendpipe.aggregator.store import KafkaRecord
from spendpipe.platform.unreadable import Unreadable

log = logging.getLogger(__name__)


class Flushed(enum.Enum):
    WRITTEN = "written"
    """In ClickHouse: commit it."""
    FAILED = "failed"
    """Read it again after a pause."""
    OWNERSHIP_LOST = "ownership lost"
    """Another aggregator owns a partition of it: drop it, write nothing until reassigned."""
    READ_FURTHER = "read further"
    """Not written (`ReadFurtherError`): keep it, read on until the partitions named are read through
    what they need, and hand it over again."""


Flush = Callable[[Sequence[KafkaRecord], PartitionOffsets], Awaitable[Flushed]]
Rebalanced = Callable[[list[TopicPartition]], Awaitable[None]]


@dataclass
class _Batch:
    generation: int
    """The assignment it was read under: a batch of an earlier one is never written."""
    records: list[KafkaRecord] = field(default_factory=list)
    offsets: PartitionOffsets = field(default_factory=PartitionOffsets)
    created_ms: float = 0.0
    """The sum of its records' Kafka timestamps, each fetched run of a partition's records
    taken as evenly spread between its first and last (no pass over the records for it)."""
    stamped: int = 0
    """How many records `created_ms` counts."""

    def __len__(self) -> int:
        return len(self.records)

    def then(self, later: "_Batch") -> "_Batch":
        """This batch and `later`, read right after it, as one (under this one's assignment: if
        `later` was read under another, the loop drops both)."""
        return _Batch(
            self.generation,
            self.records + later.records,
            self.offsets.then(later.offsets),
            self.created_ms + later.created_ms,
            self.stamped + later.stamped,
        )

    def add(self, fetched: dict[TopicPartition, list[KafkaRecord]], unreadable: list[Unreadable]) -> None:
        """aiokafka's records as they came (no object of our own per record), then a stand-in for
        each range of records passed over as unreadable, which comes after them in its partition."""
        for partition, records in fetched.items():
            self.records.extend(records)
            self.offsets.add_run(partition.partition, records)
            if records:
                self._stamp(len(records), _timestamp(records[0]), _timestamp(records[-1]))
        for passed_over in unreadable:
            stand_in = UnreadableRecord(passed_over)
            self.records.append(stand_in)
            self.offsets.add_run(stand_in.partition, [stand_in])

    def _stamp(self, count: int, first_ms: int, last_ms: int) -> None:
        if first_ms >= 0 and last_ms >= 0:
            self.created_ms += count * (first_ms + last_ms) / 2
            self.stamped += count

    def mean_age_s(self, now_s: float) -> float | None:
        """How long its records have waited since they were produced, on average (None: no
        record carries a time); never less than 0 (a writer's clock ahead of ours, on a topic
        whose records keep the writer's time)."""
        return max(0.0, now_s - self.created_ms / 1000 / self.stamped) if self.stamped else None


def _timestamp(record: object) -> int:
    """A record's Kafka timestamp in milliseconds; -1 when it has none (aiokafka's value for
    the old message format, and what a record without one reads as here)."""
    timestamp = getattr(record, "timestamp", None)
    return timestamp if isinstance(timestamp, int) else -1


class EventIntake(ConsumerRebalanceListener):  # type: ignore[misc]
    """Runs `consumer` (subscribed with this as its listener, started) and hands batches to
    `flush`; `committed` hears of each batch committed. `revoked`/`assigned` are called after
    the intake's own rebalance work."""

    def __init__(
        self,
        *,
        topic: str,
        flush: Flush,
        committed: Callable[[PartitionOffsets], None],
        batch_size: int,
        wait_ms: int,
        retry_backoff_s: float,
        revoked: Rebalanced,
        assigned: Rebalanced,
        waited: Callable[[float], None] = lambda _: None,
    ) -> None:
        """`waited` hears, for each batch written, how long its records had waited when the flush
        that wrote it began (their mean age in seconds, from their Kafka timestamps): once per
        batch, and what a batch sent back to read further waited meanwhile included."""
        self._waited = waited
        self._topic = topic
        self._flush = flush
        self._committed = committed
        self._batch_size = batch_size
        self._wait_ms = wait_ms
        self._retry_backoff_s = retry_backoff_s
        self._on_revoked = revoked
        self._on_assigned = assigned
        self._generation = 0
        self._lost: int | None = None
        """The generation under which a flush lost ownership: no write until the next one."""
        self._writing: asyncio.Task[Flushed] | None = None
        self._writing_batch: _Batch | None = None
        self._needed: dict[int, int] = {}
        """What `ReadFurtherError.needed` of the batch kept back still asks for, of partitions not yet
        read through it: nothing is written until it is empty."""
        self._through: dict[int, int] = {}
        """The batch kept back's `read_through`, as `_read_through` finds each partition done."""
        self._commits: dict[int, int] = {}
        """Each assigned partition's commit as this consumer knows it: the group's when first
        asked, then what it committed (or asked to commit: a refused commit is not asked again
        until the position moves)."""

    @property
    def awaited(self) -> dict[int, int]:
        """What the batch kept back (`ReadFurtherError`) still waits for: each partition not yet
        read through the offset it needs, and that offset; empty when no batch is kept back. A
        copy, for readers on other threads (readiness, the metrics)."""
        return dict(self._needed)

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        # first, so that `run` starts no write of what it read under this assignment
        self._generation += 1
        self._needed, self._through = {}, {}  # the batch kept back is dropped; its next writer asks again
        self._commits = {}  # the next owners commit meanwhile
        writing = self._writing
        if writing is not None:
            # let the flush in flight finish and commit before the partitions go
            with contextlib.suppress(Exception):
                await asyncio.shield(writing)
        await self._on_revoked(revoked)

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        self._generation += 1
        await self._on_assigned(assigned)

    async def run(self, consumer: AIOKafkaConsumer) -> None:
        """Until cancelled. The flush in flight, if any, is left to finish (see `drain`).
        `consumer` is a `TolerantConsumer`: its `read` passes over records aiokafka cannot parse,
        for which the batch holds a stand-in, dead-lettered."""
        batch = _Batch(self._generation)
        while True:
            if len(batch) < self._batch_size or self._needed:
                await self._read(consumer, batch)
            writing = self._writing
            if writing is not None and writing.done():
                written = self._writing_batch
                self._writing = self._writing_batch = None
                result = writing.result()
                if result is Flushed.OWNERSHIP_LOST and written is not None:
                    # the assignment the flush ran under, which the group may have left by now
                    self._lost = written.generation
                if result is Flushed.READ_FURTHER and written is not None:
                    # every record read and not written, in order; what is needed may be read already
                    batch = written.then(batch)
                elif result is not Flushed.WRITTEN and written is not None:
                    batch = await self._rewind(consumer, written, batch)
                    continue
                writing = None
            if batch.generation != self._generation:
                batch = await self._rewind(consumer, batch, _Batch(self._generation), pause=False)
                continue
            if self._lost == self._generation:
                # fenced: wait for the group to reassign; what is read meanwhile is read again
                batch = await self._rewind(consumer, batch)
                continue
            if self._needed and not await self._read_through(consumer, batch):
                continue  # read on (a rebalance meanwhile: the next round drops the batch)
            if writing is None and batch.records:
                self._writing_batch = batch
                self._writing = asyncio.create_task(self._write(consumer, batch))
                batch = _Batch(self._generation)
            elif writing is None and not self._needed and self._lost != self._generation:
                await self._commit_idle(consumer)
            elif writing is not None and len(batch) >= self._batch_size:
                await asyncio.wait([writing])

    async def drain(self) -> None:
        """Wait for the flush in flight, after `run` was cancelled."""
        if self._writing is not None:
            with contextlib.suppress(Exception):
                await self._writing

    async def _read(self, consumer: AIOKafkaConsumer, batch: _Batch) -> None:
        """Add to `batch` what comes within the wait, returning early when the writer becomes
        free with records in hand (then it returns as soon as it has any)."""
        writing = self._writing
        idle = writing is None or writing.done()
        further = bool(self._needed)  # reading on for a retry: past the batch size, waiting for records
        assigned = consumer.assignment() if further else set()
        waited_for = [tp for p in self._needed if (tp := TopicPartition(self._topic, p)) in assigned]
        fetch = asyncio.ensure_future(
            consumer.read(
                *waited_for,  # none: every partition
                timeout_ms=0 if (batch.records and idle and not further) else self._wait_ms,
                max_records=self._batch_size if further else self._batch_size - len(batch),
            )
        )
        if writing is not None and not idle:
            await asyncio.wait([fetch, writing], return_when=asyncio.FIRST_COMPLETED)
            if not fetch.done():
                fetch.cancel()  # safe: aiokafka hands records over only when it returns
        try:
            fetched = await fetch
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if fetch.cancelled() and current is not None and not current.cancelling():
                return  # cancelled above: the writer is free
            raise
        except KafkaError as error:
            log.warning("reading %s failed: %r; reading again within %.1fs", self._topic, error, self._retry_backoff_s)
            if writing is not None and not idle:
                # the flush in flight ending gives the loop work that needs no read: its result,
                # the next batch to hand over (a stop cancels either wait at once)
                await asyncio.wait([writing], timeout=self._retry_backoff_s)
            else:
                await asyncio.sleep(self._retry_backoff_s)
            return
        batch.add(*fetched)

    async def _write(self, consumer: AIOKafkaConsumer, batch: _Batch) -> Flushed:
        waited = batch.mean_age_s(time.time())  # heard if this flush writes the batch
        try:
            result = await self._flush(batch.records, batch.offsets)
        except ReadFurtherError as further:
            log.info("%s; reading on before the retry of %d records of %s", further, len(batch), self._topic)
            if batch.generation == self._generation:  # else revoked meanwhile: the batch is dropped
                self._needed, self._through = dict(further.needed), {}
            return Flushed.READ_FURTHER
        except Exception:
            log.exception("flush of %d records of %s failed", len(batch), self._topic)
            return Flushed.FAILED
        if result is not Flushed.WRITTEN:
            return result
        if waited is not None:
            self._waited(waited)
        try:
            # what was written: each partition's highest offset in the batch, plus one
            commits = {TopicPartition(self._topic, p): o + 1 for p, o in batch.offsets.highest.items()}
            await consumer.commit(commits)
        except KafkaError as error:
            # the batch is in ClickHouse, and whoever reads it again skips it as a replay; a later
            # commit covers it (a group that moved on, the broker away)
            log.warning("could not commit a written batch of %s: %r", self._topic, error)
        else:
            self._committed(batch.offsets)
        for tp, offset in commits.items():
            self._commits[tp.partition] = max(offset, self._commits.get(tp.partition, 0))
        return Flushed.WRITTEN

    async def _commit_idle(self, consumer: AIOKafkaConsumer) -> None:
        """Commit each assigned partition at its position where that passed the last commit: the
        intake is idle, so every record before the position is written (module docstring)."""
        passed: dict[TopicPartition, int] = {}
        generation = self._generation
        for tp in consumer.assignment():
            try:
                if (committed := self._commits.get(tp.partition)) is None:
                    committed = await consumer.committed(tp) or 0  # None: the group has no commit
                position = await consumer.position(tp)
            except (IllegalStateError, KafkaError) as error:
                log.debug("not committing the positions of %s now: %r", self._topic, error)
                return  # revoked meanwhile, or the coordinator away: the next idle round asks again
            if generation != self._generation:
                return  # a rebalance meanwhile
            self._commits[tp.partition] = committed
            if position > committed:
                passed[tp] = position
        if not passed:
            return
        try:
            await consumer.commit(passed)
        except KafkaError as error:
            log.warning("could not commit the positions of %s: %r", self._topic, error)
        for tp, position in passed.items():
            self._commits[tp.partition] = position  # asked once: not again until it moves

    async def _read_through(self, consumer: AIOKafkaConsumer, batch: _Batch) -> bool:
        """Whether every partition `ReadFurtherError` named (and still assigned) is read through the
        offset it needs: the consumer's position is past it, or the partition's log ends at or
        before it. The batch holds every record read and not written, so a partition it has no
        record of was read and written before it, which `read_through` tells the writer; so is a
        log that ends too soon, which will never hold the records asked for. Then the batch may go."""
        assigned = consumer.assignment()
        for partition, offset in list(self._needed.items()):
            tp = TopicPartition(self._topic, partition)
            if tp in assigned:
                try:
                    position = await consumer.position(tp)  # waits only for a partition not yet fetched
                except IllegalStateError:
                    return False  # revoked meanwhile: the next round drops the batch
                if batch.generation != self._generation:
                    return False  # revoked while asking: the next round drops the batch
                if position > offset:
                    if partition not in batch.offsets.first:
                        self._through[partition] = position - 1
                elif await self._ends_before(consumer, tp, position, offset):
                    if batch.generation != self._generation:
                        return False
                    self._through[partition] = offset
                else:
                    continue
            del self._needed[partition]
        if self._needed or batch.generation != self._generation:
            return False
        batch.offsets.read_through, self._through = self._through, {}
        return True

    async def _ends_before(self, consumer: AIOKafkaConsumer, tp: TopicPartition, position: int, offset: int) -> bool:
        """Whether the partition's log ends at or before `offset`, so the records up to it that the
        totals counted are gone (the topic recreated, the log truncated), and the consumer has
        read what it holds. Asked of the broker (the fetched high watermark of a new leader can
        lag for a moment) only when the consumer is at that high watermark; an error is a no."""
        fetched_end = consumer.highwater(tp)
        if fetched_end is None or not position >= fetched_end or fetched_end > offset:
            return False
        try:
            end = (await consumer.end_offsets([tp]))[tp]
        except KafkaError as error:
            log.warning("could not read the end offset of %s: %r; reading on", tp, error)
            return False
        if end > offset:
            return False
        log.warning(
            "partition %d of %s ends at offset %d, at or before the offset %d that the totals' watermark names "
            "(the topic recreated, or its log truncated): the records up to it are gone, the retry goes without them",
            tp.partition,
            self._topic,
            end,
            offset,
        )
        return True

    async def _rewind(self, consumer: AIOKafkaConsumer, *unwritten: _Batch, pause: bool = True) -> _Batch:
        """Seek every partition still assigned back to the first record of `unwritten`, so it
        is read again; returns a new, empty batch."""
        assigned = consumer.assignment()
        for partition, offset in earliest(batch.offsets for batch in unwritten).items():
            tp = TopicPartition(self._topic, partition)
            if tp in assigned:
                consumer.seek(tp, offset)
        if pause:
            await asyncio.sleep(self._retry_backoff_s)
        return _Batch(self._generation)
