"""The aggregator's FastStream wiring: batch in, ClickHouse, dead letters, announce, commit.

Offsets are committed (manual ack) only after ClickHouse holds the batch and every dead
letter is on the dead-letter topic. The announcement of the changed scopes goes out as soon
as ClickHouse has the totals (the enforcer reads them from there), before the commit. A
flush that fails rewinds the consumer to the batch's first offsets (nack) and the batch is
read again after a pause.

Readiness (`not_ready()`, for /readyz): the consumer has caught up with the backlog it found
(`progress.py`) and the last flush did not fail.
"""

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from aiokafka import ConsumerRebalanceListener, TopicPartition
from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage
from faststream.message import StreamMessage
from faststream.middlewares import AckPolicy

from spendpipe.aggregator.dead_letters import PublishedLetters, letter_for
from spendpipe.aggregator.metrics import AggregatorMetrics
from spendpipe.aggregator.progress import ConsumerProgress
from spendpipe.aggregator.settings import AggregatorSettings
from spendpipe.aggregator.store import SpendStore
from spendpipe.aggregator.writer import BatchWriter, DeadLetter, FlushOutcome, SourceRecord, highest_offsets
from spendpipe.contracts.flushes import MESSAGE_TYPE as FLUSH_TYPE
from spendpipe.contracts.flushes import ScopeRef, ScopesFlushed
from spendpipe.contracts.topics import TYPE_HEADER
from spendpipe.platform.clickhouse import ClickhouseStore

log = logging.getLogger(__name__)


class _ForgetOnRebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    """Partitions that move between aggregators may have been written by another one:
    reload watermarks and recent ids before the next batch."""

    def __init__(
        self, writer: BatchWriter, flushing: asyncio.Lock, progress: ConsumerProgress, letters: PublishedLetters
    ) -> None:
        self._writer = writer
        self._flushing = flushing
        self._progress = progress
        self._letters = letters

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        async with self._flushing:  # let a flush in flight finish and commit before giving up partitions
            self._writer.forget_state()
            self._letters.forget(tp.partition for tp in revoked)
        self._progress.revoked(revoked)

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        self._writer.forget_state()
        self._progress.assigned(assigned)


class Aggregator:
    def __init__(
        self,
        *,
        settings: AggregatorSettings,
        broker: KafkaBroker,
        clickhouse: ClickhouseStore,
        metrics: AggregatorMetrics,
    ) -> None:
        self._settings = settings
        self._broker = broker
        self._clickhouse = clickhouse
        self._metrics = metrics
        self._topics = settings.topics
        self._flushing = asyncio.Lock()
        self._flush_error: str | None = None
        self._letters = PublishedLetters()
        self._read_up_to: dict[int, int] = {}
        """The highest offset of each partition this process has read: what the metrics call a re-read."""
        self._watching: asyncio.Task[None] | None = None
        self.progress = ConsumerProgress(topic=settings.topics.events, lag=metrics.consumer_lag)
        self.writer = BatchWriter(
            store=SpendStore(clickhouse=clickhouse, calendar=settings.calendar),
            topic=settings.topics.events,
            dedup_horizon_s=settings.dedup_horizon_s,
            future_allowance_s=settings.future_allowance_s,
            parse_in_clickhouse_from=settings.parse_in_clickhouse_from,
        )
        self._dead_letters = broker.publisher(
            settings.topics.events_dead_letter,
            title="spend.events.dlq",
            description="Messages from spend.events that could not be used: original bytes, the reason in headers.",
        )
        self._flushes = broker.publisher(
            settings.topics.flushes,
            title="spend.flushes",
            description="ScopesFlushed: the scopes whose totals changed in a committed flush.",
            schema=ScopesFlushed,
        )
        self._register()

    def _register(self) -> None:
        settings = self._settings
        self._subscriber = subscriber = self._broker.subscriber(
            settings.topics.events,
            batch=True,
            group_id=settings.group_id,
            max_records=settings.batch_size,
            batch_timeout_ms=settings.flush_interval_ms,
            fetch_max_wait_ms=settings.flush_interval_ms,
            fetch_min_bytes=settings.fetch_min_bytes,
            max_partition_fetch_bytes=8 << 20,
            auto_offset_reset="earliest",
            ack_policy=AckPolicy.MANUAL,
            listener=_ForgetOnRebalance(self.writer, self._flushing, self.progress, self._letters),
            decoder=_undecoded,
            title="spend.events",
            description="SpendEvent v1 JSON from gateways.",
        )
        subscriber(self.on_batch)

    async def start(self) -> None:
        """After the broker started: watch the consumer's lag (the gauge and readiness)."""
        self._watching = asyncio.create_task(self.progress.follow(lambda: self._subscriber.consumer))

    async def stop(self) -> None:
        if self._watching is not None:
            self._watching.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watching

    def not_ready(self) -> str | None:
        if self._flush_error is not None:
            return f"the last flush failed, retrying: {self._flush_error}"
        return self.progress.not_ready()

    async def on_batch(self, message: KafkaMessage) -> None:
        async with self._flushing:
            await self._flush(message)

    async def _flush(self, message: KafkaMessage) -> None:
        records = _source_records(message.raw_message)
        started = asyncio.get_running_loop().time()
        first_reads = self._first_reads(records)
        self._metrics.consumed.inc(first_reads)
        self._metrics.rereads.inc(len(records) - first_reads)
        try:
            outcome = await self._clickhouse.run(self.writer.write, records)
            await self._dead_letter(outcome.dead_letters)
        except Exception as error:
            self._flush_error = repr(error)[:500]
            self._metrics.flush_failures.inc()
            log.exception("flush of %d records failed; retrying in %.1fs", len(records), self._settings.retry_backoff_s)
            self.writer.forget_state()
            await message.nack()
            await asyncio.sleep(self._settings.retry_backoff_s)
            return
        if outcome.scopes:
            await self._announce(outcome)  # ClickHouse has the totals: no need to wait for the commit
        await message.ack()
        self._letters.committed(highest_offsets(records))
        self._flush_error = None
        self._metrics.counted.inc(outcome.counted)
        self._metrics.duplicates.inc(outcome.duplicates)
        self._metrics.replayed.inc(outcome.replayed)
        self._metrics.flush_seconds.observe(asyncio.get_running_loop().time() - started)
        self._metrics.last_flush.set_to_current_time()

    def _first_reads(self, records: Sequence[SourceRecord]) -> int:
        """How many of `records` this process had not read before (a nack'd batch comes again)."""
        read_up_to = self._read_up_to
        first = sum(1 for record in records if record.offset > read_up_to.get(record.partition, -1))
        for partition, offset in highest_offsets(records).items():
            read_up_to[partition] = max(offset, read_up_to.get(partition, -1))
        return first

    async def _dead_letter(self, dead_letters: list[DeadLetter]) -> None:
        """Publish each letter not yet published for its record (a retried flush has some)."""
        for dead in dead_letters:
            source = (dead.record.partition, dead.record.offset)
            if source in self._letters:
                continue
            log.warning("dead-lettering %s[%d]@%d: %s", self._topics.events, *source, dead.reason)
            letter = letter_for(
                topic=self._topics.events,
                partition=dead.record.partition,
                offset=dead.record.offset,
                key=dead.record.key,
                value=dead.record.value,
                reason=dead.reason,
            )
            await self._dead_letters.publish(letter.value, key=letter.key, headers=letter.headers)
            self._letters.add(source)
            self._metrics.dead_letters.inc()

    async def _announce(self, outcome: FlushOutcome) -> None:
        """Best effort: the totals are in ClickHouse whether or not the announcement lands. A
        lost announcement delays the enforcer until the scope's next flush (noted for the
        enforcer: a periodic sweep of recently changed scopes would close that gap)."""
        announcement = ScopesFlushed(
            flush_id=str(uuid.uuid4()),
            flushed_at=datetime.now(UTC),
            events=outcome.counted,
            scopes=tuple(ScopeRef(type=s.type.value, id=s.id) for s in sorted(outcome.scopes, key=str)),
            models=tuple(sorted(outcome.models)),
            latest_occurred_at=outcome.latest_occurred_at,
        )
        try:
            await self._flushes.publish(announcement, headers={TYPE_HEADER: FLUSH_TYPE})
        except Exception:
            log.exception("could not announce flush %s", announcement.flush_id)


async def _undecoded(message: StreamMessage[Any]) -> None:
    """The writer decodes each record itself (into `SpendEvent`, or a dead letter); FastStream's
    default would parse every record's JSON once more first, for nothing."""


def _source_records(raw: object) -> Sequence[SourceRecord]:
    records = raw if isinstance(raw, tuple) else (raw,)
    return [SourceRecord(r.partition, r.offset, r.value, r.key) for r in records]
