"""The aggregator's wiring: batch in (`intake`), ClickHouse, dead letters, announce, commit.

Offsets are committed only after ClickHouse holds the batch and every dead letter is on the
dead-letter topic. As soon as ClickHouse has the totals (the enforcer reads them from there),
the flush's counters move, its dead letters go out and then the announcement of the changed
scopes, while the events are copied (`writer`, step 3); all of it before the commit. A flush
that fails is read again after a pause (`intake`).

Dead letters and announcements go out through the FastStream broker's publishers; the events
are read by the intake's own consumer (why: `intake`'s docstring). `start()` starts reading,
after the broker started; `stop()` stops it, before the broker stops.

Several aggregators may share the consumer group: each claims the partitions it is assigned and
writes under that claim (`ownership`); a flush fenced by a later owner is dropped, not committed.

Readiness (`not_ready()`, for /readyz): the consumer has caught up with the backlog it found
(`progress.py`), the last flush since the group last assigned partitions did not fail and did
not lose ownership, and no retry waits to read partitions further (`ReadFurtherError`: say a
partition's leader is away).
"""

import asyncio
import concurrent.futures
import contextlib
import logging
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime

from aiokafka import AIOKafkaConsumer, TopicPartition
from faststream.kafka import KafkaBroker

from spendpipe.aggregator.dead_letters import PublishedLetters, UnreadableRecord, letter_for
from spendpipe.aggregator.intake import EventIntake, Flushed
from spendpipe.aggregator.metrics import AggregatorMetrics
from spendpipe.aggregator.offsets import PartitionOffsets, ReadFurtherError
from spendpipe.aggregator.ownership import Ownership, OwnershipLostError, Release, group_generation
from spendpipe.aggregator.progress import ConsumerProgress
from spendpipe.aggregator.settings import AggregatorSettings
from spendpipe.aggregator.store import SpendStore
from spendpipe.aggregator.writer import BatchWriter, DeadLetter, FlushOutcome, KafkaRecord
from spendpipe.contracts.flushes import MESSAGE_TYPE as FLUSH_TYPE
from spendpipe.contracts.flushes import ScopeRef, ScopesFlushed, announcement_records
from spendpipe.contracts.topics import TYPE_HEADER
from spendpipe.platform.clickhouse import ClickhouseStore
from spendpipe.platform.gc_tuning import collect_young_every
from spendpipe.platform.unreadable import TolerantConsumer

log = logging.getLogger(__name__)

ANNOUNCEMENT_HEADERS = {TYPE_HEADER: FLUSH_TYPE, "content-type": "application/json"}
"""An announcement's record value is its JSON, serialized once (`announcement_records`), with the
content type FastStream gives a model it serializes itself."""
MAX_PARTITION_FETCH_BYTES = 8 << 20
"""Per partition and fetch: room for a batch's worth of records of one partition in a few fetches."""


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
        self._clickhouse = clickhouse
        self._metrics = metrics
        self._topics = settings.topics
        self._unwritten: str | None = None
        """Why the last flush since the group last assigned partitions was not written (it failed,
        or was fenced), as readiness says it; None once one is written or the group reassigns. One
        reason, the latest: a failed flush whose retry is then fenced waits for the group."""
        self._letters = PublishedLetters()
        self._read_up_to: dict[int, int] = {}
        """The highest offset of each partition this process has read: what the metrics call a re-read."""
        self._kept_back = 0
        """Records of a batch the writer sent back to read further (`ReadFurtherError`): the intake
        hands them over again, neither read for the first time nor read again."""
        self._tasks: list[asyncio.Task[None]] = []
        self._claiming: asyncio.Task[None] | None = None
        self._releasing: asyncio.Task[None] | None = None
        self._consumer: AIOKafkaConsumer | None = None
        self.progress = ConsumerProgress(topic=settings.topics.events, lag=metrics.consumer_lag)
        self.ownership = Ownership(
            group=settings.group_id,
            topic=settings.topics.events,
            settle_s=settings.owner_settle_s,
            embedded=clickhouse.settings.embedded,
        )
        self.writer = BatchWriter(
            store=SpendStore(
                clickhouse=clickhouse, calendar=settings.calendar, write_timeout_s=settings.write_timeout_s
            ),
            topic=settings.topics.events,
            dedup_horizon_s=settings.dedup_horizon_s,
            future_allowance_s=settings.future_allowance_s,
            canonical_from=settings.canonical_from,
            parse_in_clickhouse_from=settings.parse_in_clickhouse_from,
        )
        self.intake = EventIntake(
            topic=settings.topics.events,
            flush=self._flush,
            committed=self._committed,
            batch_size=settings.batch_size,
            wait_ms=settings.flush_interval_ms,
            retry_backoff_s=settings.retry_backoff_s,
            revoked=self._revoked,
            assigned=self._assigned,
            waited=metrics.flush_step_seconds.labels("wait").observe,
        )
        metrics.partitions_awaited.set_function(lambda: len(self.intake.awaited))
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

    async def start(self) -> None:
        """After the broker started: join the group, read and write; watch the consumer's lag."""
        settings = self._settings
        collect_young_every(settings.gc_young_threshold)
        consumer = TolerantConsumer(
            **settings.kafka.aiokafka_kwargs(),
            group_id=settings.group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=settings.flush_interval_ms,
            fetch_min_bytes=settings.fetch_min_bytes,
            max_partition_fetch_bytes=MAX_PARTITION_FETCH_BYTES,
            session_timeout_ms=settings.session_timeout_ms,
            heartbeat_interval_ms=settings.session_timeout_ms // 3,
            max_poll_interval_ms=settings.max_poll_interval_ms,
            metadata_max_age_ms=settings.metadata_max_age_ms,
        )
        consumer.subscribe([settings.topics.events], listener=self.intake)
        self._consumer = consumer  # before start: the first assignment may come during it
        await consumer.start()
        self._tasks = [
            asyncio.create_task(self.intake.run(consumer), name="aggregator-intake"),
            asyncio.create_task(self.progress.follow(lambda: self._consumer), name="aggregator-progress"),
        ]
        self._tasks[0].add_done_callback(_log_end)

    async def stop(self) -> None:
        """Stop reading, let the flush in flight finish, leave the group."""
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            # not `await task`: an intake that ended with an error (logged then, `_log_end`)
            # would raise it here and skip the rest
            await asyncio.wait(self._tasks)
        self._tasks = []
        await self.intake.drain()
        self._release(self.ownership.revoked())
        for pending in (self._claiming, self._releasing):
            if pending is not None:
                await pending  # ends by itself: one ClickHouse call, failures logged
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None

    def not_ready(self) -> str | None:
        intake = self._tasks[0] if self._tasks else None
        if intake is not None and intake.done():
            error = None if intake.cancelled() else intake.exception()
            return f"the intake of {self._topics.events} stopped: {error!r}"
        if awaited := self.intake.awaited:
            further = ", ".join(f"partition {p} through offset {o}" for p, o in sorted(awaited.items()))
            return f"a retry waits for {self._topics.events} to be read further: {further}"
        if self._unwritten is not None:
            return self._unwritten
        return self.progress.not_ready()

    async def _revoked(self, revoked: list[TopicPartition]) -> None:
        """Partitions that move between aggregators may be written by another one: reload
        watermarks and recent ids before the next batch. The flush in flight has ended (`intake`):
        tell the next owners they need not wait for this one."""
        self.writer.revoked(tp.partition for tp in revoked)
        self._kept_back = 0  # the intake drops the batch it kept back
        self._letters.forget(tp.partition for tp in revoked)
        self.progress.revoked(revoked)
        self._release(self.ownership.revoked())

    async def _assigned(self, assigned: list[TopicPartition]) -> None:
        """Claim the partitions at once (fencing their earlier owner as early as can be), beside
        the rebalance rather than in it: a slow ClickHouse must not hold up the group. A claim
        not made by the next flush is made by it."""
        self.writer.assigned(tp.partition for tp in assigned)
        self.progress.assigned(assigned)
        # reassigned: what failed or was lost is read again by its owner, which may not be this one
        self._unwritten = None
        if self._consumer is not None:
            self.ownership.assigned((tp.partition for tp in assigned), group_generation(self._consumer))
        self._claiming = asyncio.create_task(self._claim(assigned), name="aggregator-claim")

    async def _claim(self, assigned: list[TopicPartition]) -> None:
        try:
            await self._clickhouse.run(self.ownership.claim, self._clickhouse)
        except Exception as error:
            log.warning("could not claim partitions %s: %r; claiming before the next flush", assigned, error)

    def _release(self, release: Release | None) -> None:
        """Beside the rebalance, not in it (a slow ClickHouse must not hold up the group): a
        release that lands late, or not at all, only makes the next owner wait."""
        if release is not None:
            self._releasing = asyncio.create_task(self._send_release(release), name="aggregator-release")

    async def _send_release(self, release: Release) -> None:
        try:
            await self._clickhouse.run(self.ownership.release, self._clickhouse, release)
        except Exception as error:
            log.warning(
                "could not release partitions %s of %s: %r", sorted(release.partitions), self._topics.events, error
            )

    async def _flush(self, records: Sequence[KafkaRecord], offsets: PartitionOffsets) -> Flushed:
        """Write `records`, publish their letters, announce their scopes: WRITTEN when done,
        FAILED (logged, counted) when the batch must be read again, OWNERSHIP_LOST when another
        aggregator claimed one of its partitions (logged, counted). Raises `ReadFurtherError`, for the
        intake, when the writer will not write a retry before more is read (nothing written)."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        handed: list[concurrent.futures.Future[None]] = []

        def durable(outcome: FlushOutcome) -> None:
            """On the ClickHouse thread, once the totals are in, before the copy into `events`."""
            handed.append(asyncio.run_coroutine_threadsafe(self._totals_in(outcome), loop))

        first_reads = self._first_reads(records, offsets)
        self._metrics.consumed.inc(first_reads)
        self._metrics.rereads.inc(max(0, len(records) - first_reads - self._kept_back))
        self._kept_back = 0
        try:
            ownership = self.ownership
            if ownership.needs_claim:
                await self._clickhouse.run(ownership.claim, self._clickhouse)
            if (wait_s := ownership.settle_wait_s()) > 0:
                await asyncio.sleep(wait_s)  # until an earlier owner's statements have landed
            fence = ownership.fence
            if fence is None:
                raise OwnershipLostError("no partitions claimed (a rebalance is under way)")
            outcome = await self._clickhouse.run(self.writer.write, records, fence, offsets, durable)
            for handing in handed:
                await asyncio.wrap_future(handing)  # before the commit: a crash before it announces again
        except ReadFurtherError:
            self._kept_back = len(records)  # nothing written: the intake reads on and hands them over again
            raise
        except OwnershipLostError as lost:
            await _settle(handed)
            self._unwritten = f"waiting for the group to reassign partitions: {lost}"
            self._metrics.ownership_lost.inc()
            log.warning("flush of %d records not written: %s", len(records), lost)
            return Flushed.OWNERSHIP_LOST
        except Exception as error:
            await _settle(handed)
            self._unwritten = f"the last flush failed, retrying: {repr(error)[:500]}"
            self._metrics.flush_failures.inc()
            log.exception("flush of %d records failed; retrying in %.1fs", len(records), self._settings.retry_backoff_s)
            self.writer.forget_state()
            self.ownership.failed()
            return Flushed.FAILED
        self._unwritten = None
        for step, seconds in outcome.seconds.items():
            self._metrics.flush_step_seconds.labels(step).observe(seconds)
        self._metrics.flush_seconds.observe(loop.time() - started)
        self._metrics.last_flush.set_to_current_time()
        return Flushed.WRITTEN

    async def _totals_in(self, outcome: FlushOutcome) -> None:
        """The flush's totals are in ClickHouse: count them, publish the dead letters, then
        announce (a block never goes out before the letters and counters of its flush)."""
        self._metrics.counted.inc(outcome.counted)
        self._metrics.duplicates.inc(outcome.duplicates)
        self._metrics.replayed.inc(outcome.replayed)
        await self._dead_letter(outcome.dead_letters)
        if outcome.scopes:
            await self._announce(outcome)

    def _committed(self, offsets: PartitionOffsets) -> None:
        self._letters.committed(offsets.highest)

    def _first_reads(self, records: Sequence[KafkaRecord], offsets: PartitionOffsets) -> int:
        """How many of `records` this process had not read before (a failed batch comes again).
        All of them when no partition of the batch starts at or below what was read before."""
        read_up_to = self._read_up_to
        if all(first > read_up_to.get(partition, -1) for partition, first in offsets.first.items()):
            first = len(records)
        else:
            first = sum(1 for record in records if record.offset > read_up_to.get(record.partition, -1))
        for partition, offset in offsets.highest.items():
            read_up_to[partition] = max(offset, read_up_to.get(partition, -1))
        return first

    async def _dead_letter(self, dead_letters: list[DeadLetter]) -> None:
        """Publish each letter not yet published for its record (a retried flush has some)."""
        for dead in dead_letters:
            source = (dead.record.partition, dead.record.offset)
            if source in self._letters:
                continue
            reason = dead.record.reason if isinstance(dead.record, UnreadableRecord) else dead.reason
            log.warning("dead-lettering %s[%d]@%d: %s", self._topics.events, *source, reason)
            letter = letter_for(
                topic=self._topics.events,
                partition=dead.record.partition,
                offset=dead.record.offset,
                key=dead.record.key,
                value=dead.record.value,
                reason=reason,
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
        records = announcement_records(announcement)  # one, unless it would not fit in one record
        for n, value in enumerate(records, start=1):
            try:
                await self._flushes.publish(value, headers=ANNOUNCEMENT_HEADERS)
            except Exception:
                log.exception("could not announce flush %s (piece %d of %d)", announcement.flush_id, n, len(records))


async def _settle(handed: list[concurrent.futures.Future[None]]) -> None:
    """Let what a failed flush handed over finish (its totals are in: the announcement stands),
    so that its letters are not published again beside the retry's. Its errors were the flush's."""
    for handing in handed:
        with contextlib.suppress(Exception):
            await asyncio.wrap_future(handing)


def _log_end(task: asyncio.Task[None]) -> None:
    """The intake runs until stopped: an end by an error takes the aggregator out of service
    (`not_ready`), and says why here."""
    if not task.cancelled() and task.exception() is not None:
        log.error("the aggregator's intake stopped", exc_info=task.exception())
