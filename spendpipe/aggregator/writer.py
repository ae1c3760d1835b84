"""Exactly-once writing of one consumed batch into ClickHouse.

Order of work for a batch (all of it before the Kafka offsets are committed):

1. Parse and check the records into the session's parsed stage: a record that is not a valid
   v1 `SpendEvent`, or is dated too far ahead, becomes a dead letter with the reason. A batch
   of `canonical_from` records or more is loaded as it came, and ClickHouse reads the records
   in the gateways' canonical form (`parse.CANONICAL_SQL`: one regular expression, one typed
   read, about 20 ms a statement and 3 µs a record). What it leaves (all of a smaller batch)
   is checked in full: by ClickHouse (`parse.PARSE_SQL`) when `parse_in_clickhouse_from`
   records or more are left, else by pydantic, in Python. The full SQL statement pays a fixed
   cost of analysis (about 0.3 s on this machine kind, whatever the batch) and then little per
   record; pydantic pays per record (about 40 µs). So small batches, the ones a quiet pipeline
   flushes and waits on for its refusals, go the way that is quick for them, and a backlog the
   way that is quick for it. All three give the same verdicts and values: the SQL is
   property-tested against the pydantic models (`tests/integration/test_parse_contract.py`).
2. Drop duplicates: the same event id twice in the batch, an id counted recently
   (`RecentEventIds`), or, for events older than that memory, an id already in `events`. A
   record that was itself counted by an earlier attempt (same partition and offset) is not a
   duplicate but a replay: nothing to write, but its scopes are announced again. A copy whose
   content differs is a conflict, dead-lettered. Duplicates and conflicts are listed in the
   excluded table; nothing else of the batch passes through Python. The records at or below
   the totals' watermarks were decided by an earlier attempt, whatever `events` holds (its copy
   may have failed): they come first in the batch's order, so a copy of one of them is the
   duplicate on any partition, and a retry copies them into `events` before it counts more
   (`_copy_counted`). That needs every such record in the batch: a retry cut shorter than the
   attempt whose totals landed (the refetch came in another order, fewer partitions, a lower
   batch size) is not written before it holds them (`ReadFurtherError`, `_unread`).
3. Insert the totals of the usable parsed events into `spend_totals` (rolled up by ClickHouse,
   see `rollup`), together with one watermark row per partition (the highest offset included),
   in one insert: one part, all or nothing. Then read what the totals hold of the batch (the
   scopes to announce) and whether the fence held: the outcome is handed over now (`durable`),
   so the announcement goes out while step 4 runs. The enforcer reads only the totals, so a
   block can be published before the events are in `events` (by one insert, or until the
   retry of a flush that failed in step 4).
4. Copy the usable parsed events into `events`, which carry their own partition and offset.

With several aggregators, steps 3 and 4 carry the flush's fence (`ownership`): a writer whose
partitions were claimed by a later owner writes nothing, and `write` raises `OwnershipLostError`
(checked after step 3, before anything is handed over, and again after step 4).

Each table skips records at or below its own watermark. So a batch replayed after a crash
anywhere in 3-4 (offsets not yet committed) adds nothing twice: a table that already has
the batch skips it, a table that does not yet have it takes it. Totals go first because the
duplicate memory is rebuilt from `events` at start-up: an event is never remembered as
counted unless its totals are in.

Why a short retry reads on rather than anything else: what an earlier attempt counted is known
only as the totals' watermarks (the totals are sums, not ids), and the records below them are in
Kafka; writing the ids beside the totals would cost every flush what only a retry needs. So the
retry waits for those records (`_unread`), and the usual flush checks one empty dict.

Announcements follow what was written, not what this attempt added: the outcome names the
scopes of every event of the batch that is in the totals, whether this attempt or an earlier
one (whose announcement may never have gone out) put it there.
"""

import logging
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import NoReturn

from spendpipe.aggregator.dedup import Origin, RecentEventIds, same_content
from spendpipe.aggregator.offsets import PartitionOffsets, ReadFurtherError
from spendpipe.aggregator.ownership import Fence, OwnershipLostError
from spendpipe.aggregator.store import KafkaRecord, ParsedIds, SourceRecord, SpendStore, source_name
from spendpipe.contracts.events import InvalidEventError, SpendEvent, decode_event
from spendpipe.contracts.scopes import Scope

log = logging.getLogger(__name__)

Clock = Callable[[], float]

__all__ = ["BatchWriter", "DeadLetter", "FlushOutcome", "KafkaRecord", "SourceRecord"]


@dataclass(frozen=True, slots=True)
class DeadLetter:
    record: KafkaRecord
    reason: str


@dataclass
class FlushOutcome:
    counted: int = 0
    """Events in the totals that no outcome of this writer counted before: those this attempt
    added, and those an earlier attempt added without handing its outcome over."""
    duplicates: int = 0
    """Events dropped because another record with their id was counted before."""
    replayed: int = 0
    """Records the totals held before this attempt (a failed flush, a crash before the commit), read again."""
    dead_letters: list[DeadLetter] = field(default_factory=list)
    scopes: set[Scope] = field(default_factory=set)
    """Scopes to announce: those of every event of the batch in the totals, newly or by an
    earlier attempt whose announcement may never have gone out."""
    models: set[str] = field(default_factory=set)
    latest_occurred_at: datetime | None = None
    seconds: dict[str, float] = field(default_factory=dict)
    """Time the write spent in each step: `stage` (1-2), `rollup` (on a retry `_copy_counted`,
    then 3, and reading what the totals hold of the batch for the announcement, with the
    ownership check), `events` (4, and the ownership check after it)."""


Durable = Callable[[FlushOutcome], None]
"""Hears a flush's outcome once its totals are in ClickHouse and were written under the fence
(`BatchWriter.write`), on the writer's thread: it must not block."""


@dataclass
class _Watermarks:
    totals: dict[int, int] = field(default_factory=dict)
    events: dict[int, int] = field(default_factory=dict)
    unsettled: dict[int, int] = field(default_factory=dict)
    """The writer's partitions whose totals' watermark is past their last row in `events`, with that
    watermark: records the totals may hold and `events` not (an earlier attempt's copy failed),
    until a batch is seen to reach or pass it (`BatchWriter._unread`). Also, harmlessly, those whose
    last records were dropped (duplicates, dead letters): no row in `events` marks those."""


@dataclass
class _Sorted:
    fresh: dict[bytes, bytes] = field(default_factory=dict)
    """Ids counted for the first time, with their origin."""
    excluded: list[tuple[int, int]] = field(default_factory=list)
    conflicts: list[tuple[int, int, str]] = field(default_factory=list)
    """(partition, offset, reason)."""
    duplicates: int = 0
    """Copies of an id counted from another record, with the same content."""


class BatchWriter:
    """Not thread-safe: one writer per consumer, called from the ClickHouse thread."""

    def __init__(
        self,
        *,
        store: SpendStore,
        topic: str,
        dedup_horizon_s: float,
        future_allowance_s: float = 300.0,
        canonical_from: int = 500,
        parse_in_clickhouse_from: int = 5_000,
        clock: Clock = time.time,
    ) -> None:
        """`canonical_from`: a batch of this many records or more is loaded into ClickHouse and
        its records in the gateways' canonical form parsed there (`parse.CANONICAL_SQL`);
        `parse_in_clickhouse_from`: the records left (all of a smaller batch) are checked by
        ClickHouse's full parse when there are this many or more, else by pydantic."""
        self._store = store
        self._canonical_from = canonical_from
        self._parse_in_clickhouse_from = parse_in_clickhouse_from
        self._topic = topic
        self._recent = RecentEventIds(horizon_s=dedup_horizon_s)
        self._future_allowance_s = future_allowance_s
        # An event counted at t is dated at most t + allowance and remembered until t + horizon:
        # a later copy dated older than horizon - allowance may have been forgotten, so those
        # copies are looked up in `events`.
        self._late_after_s = max(0.0, dedup_horizon_s - future_allowance_s)
        self._clock = clock
        self._watermarks: _Watermarks | None = None
        self._uncounted: dict[int, int] = {}
        """Per partition, the offset past which this writer's totals inserts may have put events
        in the totals that no outcome has counted yet (the insert raised, or the flush failed
        before its hand-over): the retry counts them. Kept across `forget_state`, not across a
        reassignment (`revoked`)."""
        self._owned: frozenset[int] | None = None
        """The partitions this writer's flushes may write: the group's assignment (`assigned`);
        None, every partition (one writer: tools, tests)."""

    def assigned(self, partitions: Iterable[int]) -> None:
        """The group assigned these partitions: `forget_state`; a retry must have read, of each,
        what the totals hold and `events` does not (`_unread`)."""
        self._owned = frozenset(partitions)
        self.forget_state()

    def forget_state(self) -> None:
        """Reload watermarks and recent ids from ClickHouse before the next batch: call it
        after partitions were reassigned or a write failed half-way."""
        self._watermarks = None

    def revoked(self, partitions: Iterable[int]) -> None:
        """The partitions went to the group again: `forget_state`, and leave what this writer
        put in their totals uncounted (their next owner may have written past it since)."""
        self.forget_state()
        partitions = set(partitions)
        if self._owned is not None:
            self._owned = self._owned - partitions
        for partition in partitions:
            self._uncounted.pop(partition, None)

    def write(
        self,
        records: Sequence[KafkaRecord],
        fence: Fence | None = None,
        offsets: PartitionOffsets | None = None,
        durable: Durable = lambda _: None,
    ) -> FlushOutcome:
        """`fence`: the claim the inserts are made under; None writes unfenced (one writer).
        `offsets`: those of `records`, when the caller kept them as it read. `durable` hears the
        outcome as soon as the totals are in and still owned, before the copy into `events`
        (step 3): the scopes can be announced then. The outcome returned is the same object,
        with the steps' times added."""
        started = time.perf_counter()
        offsets = PartitionOffsets.of(records) if offsets is None else offsets
        highest = offsets.highest
        outcome = FlushOutcome()
        marks = self._load_state()
        in_totals = _watermarks_of(highest, marks.totals)  # what the totals held before this attempt
        if marks.unsettled and (needed := self._unread(offsets, marks)):
            raise ReadFurtherError(needed)
        replay = any(first <= in_totals[partition] for partition, first in offsets.first.items())
        held = in_totals if replay else None  # the usual batch: no record in the totals
        now_s = self._clock()
        store = self._store
        refused = self._parse(records, now_s)
        parsed = store.parsed_ids(held)
        late_before = datetime.fromtimestamp(now_s - self._late_after_s, UTC)
        counted_before = store.first_counts(late_before) if parsed.oldest and parsed.oldest < late_before else {}
        ordered = self._sort(parsed, counted_before)
        outcome.duplicates = ordered.duplicates
        store.exclude(ordered.excluded)
        self._dead_letters(records, refused, ordered.conflicts, outcome)
        staged = time.perf_counter()
        self._copy_counted(highest, marks, fence)
        self._write_totals(highest, marks, fence, one_minute=parsed.one_minute)
        uncounted = {partition: self._uncounted.get(partition, mark) for partition, mark in in_totals.items()}
        written = store.written(new_after=uncounted, in_totals=held, fence=fence, partitions=highest)
        if not written.owned:
            self._lost(highest)
        outcome.counted = written.new
        outcome.replayed = written.replayed
        outcome.scopes = written.scopes
        outcome.models = set(written.models)
        outcome.latest_occurred_at = written.latest_occurred_at
        rolled = time.perf_counter()
        self._counted(highest, marks)
        durable(outcome)
        if self._write_events(highest, marks, fence) and not store.owns(fence, highest):
            self._lost(highest)  # the copy into `events` was fenced: the next owner makes it
        self._recent.remember(ordered.fresh, now_s)
        self._recent.expire(now_s)
        outcome.seconds = {"stage": staged - started, "rollup": rolled - staged, "events": time.perf_counter() - rolled}
        return outcome

    def _lost(self, highest: dict[int, int]) -> NoReturn:
        self.forget_state()  # what landed, the next owner reads from ClickHouse
        raise OwnershipLostError(f"partitions {sorted(highest)} of {self._topic} were claimed by another aggregator")

    def _parse(self, records: Sequence[KafkaRecord], now_s: float) -> list[tuple[int, int, str]] | None:
        """Fill the parsed stage (see the module's docstring, step 1). Returns the records
        pydantic refused, as (partition, offset, reason), or None when ClickHouse checked
        records the canonical form did not take: its refusals are rows of the stage, which
        `dead_rows` reads."""
        ingested_at = datetime.fromtimestamp(now_s, UTC)
        latest = datetime.fromtimestamp(now_s + self._future_allowance_s, UTC)
        store = self._store
        rest: Sequence[KafkaRecord] = records
        loaded = len(records) >= self._canonical_from
        if loaded:
            store.load_raw(records)
            store.parse_canonical(topic=self._topic, ingested_at=ingested_at, latest=latest)
            left = set(store.unparsed())
            if not left:
                return []
            rest = [record for record in records if (record.partition, record.offset) in left]
        if len(rest) >= self._parse_in_clickhouse_from:
            if not loaded:
                store.load_raw(records)
            store.parse(topic=self._topic, ingested_at=ingested_at, latest=latest, allowance_s=self._future_allowance_s)
            return None
        decoded: list[tuple[SpendEvent, int, int]] = []
        refused: list[tuple[int, int, str]] = []
        for record in rest:
            try:
                if record.value is None:
                    raise InvalidEventError("empty message (no value)")
                event = decode_event(record.value)
            except InvalidEventError as error:
                refused.append((record.partition, record.offset, error.reason))
                continue
            if event.occurred_at > latest:
                refused.append((record.partition, record.offset, _ahead(event, latest, self._future_allowance_s)))
                continue
            decoded.append((event, record.partition, record.offset))
        store.load_decoded(decoded, topic=self._topic, ingested_at=ingested_at, add=loaded)
        return refused

    def _load_state(self) -> _Watermarks:
        marks = self._watermarks  # forget_state may clear the attribute from another thread
        if marks is None:
            self._store.forget_session()
            totals = self._store.totals_watermarks(self._topic)
            events = self._store.events_watermarks(self._topic)
            owned = self._owned
            unsettled = {
                partition: mark
                for partition, mark in totals.items()
                if mark > events.get(partition, -1) and (owned is None or partition in owned)  # others': their owners'
            }
            marks = _Watermarks(totals=totals, events=events, unsettled=unsettled)
            since = datetime.fromtimestamp(self._clock() - self._recent.horizon_s, UTC)
            self._recent.clear()
            ids, origins, latest = self._store.ids_ingested_since(since)
            if latest is not None:
                # stamped with the latest count: each is remembered at least as long as it should be
                self._recent.remember(dict(zip(ids, origins, strict=True)), latest.replace(tzinfo=UTC).timestamp())
            self._watermarks = marks
        return marks

    def _unread(self, offsets: PartitionOffsets, marks: _Watermarks) -> dict[int, int]:
        """What the intake must read before this batch may be written: per partition of this
        writer's, the totals' watermark, where the totals may hold records (decided by an earlier
        attempt whose copy into `events` failed) that are neither in `events` nor in the batch.
        A copy of one of those in the batch would be taken for the original: counted again if
        it is past the watermarks, copied into `events` in the original's place (and not
        dead-lettered when its content differs) if it is not. Neither the memory (rebuilt from
        `events`) nor the batch has the original. Empty when the batch holds or has passed every
        such record: then each partition is settled for the batches after it. Not the usual
        batch: `marks.unsettled` is empty once each partition was seen through."""
        needed: dict[int, int] = {}
        seen: list[int] = []
        for partition, mark in marks.unsettled.items():
            first = offsets.first.get(partition)
            if marks.events.get(partition, -1) >= mark or offsets.read_through.get(partition, -1) >= mark:
                reached = True  # copied since by this writer; or read (and written) before this batch
            else:  # past it (written before this batch), or through it
                reached = first is not None and (first > mark or offsets.highest[partition] >= mark)
            if reached:
                seen.append(partition)
            else:
                needed[partition] = mark
        if not needed:
            for partition in seen:
                del marks.unsettled[partition]
        return needed

    def _sort(self, parsed: ParsedIds, counted_before: dict[bytes, bytes]) -> _Sorted:
        """Fresh ids, and the rows not to write: copies of an id counted from another record.
        The first count of an id is the one `events` or the memory holds, else the batch's
        first record of it in `parsed`'s order, where the records the totals hold already come
        first: each of those was counted by an earlier attempt (or dropped then as a copy of
        one counted before it, which the same rule finds again), so a copy of it past the
        watermarks, even on a lower partition, is the duplicate."""
        ids, origins = parsed.ids, parsed.origins
        # built back to front, so an id twice in the batch keeps its first record
        batch = dict(zip(reversed(ids), reversed(origins), strict=True))
        first_of = {**counted_before, **self._recent.known(batch)}
        if not first_of and len(batch) == len(ids):
            return _Sorted(fresh=batch)  # the usual batch: every id new, nothing per event here
        ordered = _Sorted()
        for event_id, here in zip(ids, origins, strict=True):
            first = first_of.get(event_id)
            if first is None:
                first_of[event_id] = ordered.fresh[event_id] = here
            elif first != here:  # the same record is a replay: `written` counts those
                source = Origin.unpack(here)
                ordered.excluded.append((source.partition, source.offset))
                if same_content(first, here):
                    ordered.duplicates += 1
                else:
                    reason = _conflict(event_id, Origin.unpack(first))
                    ordered.conflicts.append((source.partition, source.offset, reason))
        return ordered

    def _dead_letters(
        self,
        records: Sequence[KafkaRecord],
        refused: list[tuple[int, int, str]] | None,
        conflicts: list[tuple[int, int, str]],
        outcome: FlushOutcome,
    ) -> None:
        """`refused`: what pydantic refused, or None to read ClickHouse's refusals from the stage
        (a small batch saves the query: every statement costs a flush a few milliseconds)."""
        if refused is None:
            refused = [(row.partition, row.offset, row.reason) for row in self._store.dead_rows()]
        dead = refused + conflicts
        if not dead:
            return
        by_source = {(record.partition, record.offset): record for record in records}
        for partition, offset, reason in sorted(dead):
            outcome.dead_letters.append(DeadLetter(by_source[(partition, offset)], reason))

    def _write_totals(
        self, highest: dict[int, int], marks: _Watermarks, fence: Fence | None, *, one_minute: bool
    ) -> None:
        """`highest`: each partition's highest offset in the batch. The rows past the totals'
        watermarks go in; from here until an outcome counts them they are `_uncounted` (an insert
        that raises may still have landed)."""
        after = _watermarks_of(highest, marks.totals)
        advanced = _past(highest, marks.totals)
        if not advanced:
            return
        for partition in advanced:
            self._uncounted.setdefault(partition, after[partition])
        self._store.insert_totals(
            after=after,
            watermarks={source_name(self._topic, p): offset for p, offset in advanced.items()},
            fence=fence,
            one_minute=one_minute,
        )
        marks.totals.update(advanced)

    def _counted(self, highest: dict[int, int], marks: _Watermarks) -> None:
        """The outcome about to be handed over counts every event of the batch in the totals:
        what this writer left uncounted is counted up to the batch's end."""
        for partition, offset in highest.items():
            if partition not in self._uncounted:
                continue
            if offset >= marks.totals.get(partition, -1):
                del self._uncounted[partition]
            else:  # a shorter batch than the one whose totals landed: the rest is still uncounted
                self._uncounted[partition] = max(self._uncounted[partition], offset)

    def _copy_counted(self, highest: dict[int, int], marks: _Watermarks, fence: Fence | None) -> None:
        """Copy into `events`, before this attempt counts anything, the rows of the batch an
        earlier attempt put in the totals but not in `events` (its copy failed, its process
        died, or the copy was fenced). The memory of every later attempt then has them: should
        this attempt fail after its totals too, the next never sees in its batch two records of
        one id both counted by earlier attempts, one of them dropped then as a copy of the other,
        which it could not tell apart. A retry only: the usual batch has nothing to copy here."""
        up_to = {partition: min(offset, marks.totals.get(partition, -1)) for partition, offset in highest.items()}
        behind = _past(up_to, marks.events)
        if not behind:
            return
        self._store.insert_events(
            after=_watermarks_of(behind, marks.events),
            up_to=behind,
            fence=fence,
            watermarks={source_name(self._topic, p): offset for p, offset in behind.items()},
        )
        marks.events.update(behind)

    def _write_events(self, highest: dict[int, int], marks: _Watermarks, fence: Fence | None) -> bool:
        """Whether it inserted (a batch already in `events` needs no insert, and no fence check
        after it: the one after the totals holds for it)."""
        advanced = _past(highest, marks.events)
        if not advanced:
            return False
        self._store.insert_events(
            after=_watermarks_of(highest, marks.events),
            fence=fence,
            watermarks={source_name(self._topic, p): offset for p, offset in advanced.items()},
        )
        marks.events.update(advanced)
        return True


def _ahead(event: SpendEvent, latest: datetime, allowance_s: float) -> str:
    """The reason for an event dated past the future allowance, word for word as `parse._AHEAD`
    writes it."""
    return (
        f"occurred_at {event.occurred_at.isoformat()} is more than {allowance_s:g} s ahead of the aggregator's "
        f"clock ({latest:%Y-%m-%dT%H:%M:%S.%f} at the latest)"
    )


def _conflict(event_id: bytes, first: Origin) -> str:
    return (
        f"conflicting duplicate: event_id {str(uuid.UUID(bytes=event_id))!r} was counted from partition "
        f"{first.partition} offset {first.offset} with other content (time, attribution, model, cost, tokens or status)"
    )


def _past(highest: dict[int, int], marks: dict[int, int]) -> dict[int, int]:
    """The partitions of the batch with records past a table's watermark, and their highest offset."""
    return {partition: offset for partition, offset in highest.items() if offset > marks.get(partition, -1)}


def _watermarks_of(highest: dict[int, int], marks: dict[int, int]) -> dict[int, int]:
    """The watermark of every partition in the batch; -1 where nothing was written yet."""
    return {partition: marks.get(partition, -1) for partition in highest}
