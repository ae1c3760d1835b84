"""Exactly-once writing of one consumed batch into ClickHouse.

Order of work for a batch (all of it before the Kafka offsets are committed):

1. Decode. A message that is not a valid v1 `SpendEvent` becomes a dead letter.
2. Drop duplicates: the same event id twice in the batch, an id counted recently
   (`RecentEventIds`), or, for events older than that memory, an id already in `events`. A
   record that was itself counted by an earlier attempt (same partition and offset) is not a
   duplicate but a replay: nothing to write, but its scopes are announced again.
3. Stage the new events in the writer's temporary table in ClickHouse.
4. Insert the totals of the staged events into `spend_totals` (rolled up by ClickHouse, see
   `rollup`), together with one watermark row per partition (the highest offset included),
   in one insert: one part, all or nothing.
5. Copy the staged events into `events`, which carry their own partition and offset.

Each table skips records at or below its own watermark. So a batch replayed after a crash
anywhere in 3-5 (offsets not yet committed) adds nothing twice: a table that already has
the batch skips it, a table that does not yet have it takes it. Totals go first because the
duplicate memory is rebuilt from `events` at start-up: an event is never remembered as
counted unless its totals are in.

Announcements follow what was written, not what this attempt added: the outcome names the
scopes of every event of the batch that is in the totals, whether this attempt or an earlier
one (whose announcement may never have gone out) put it there.
"""

import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import NamedTuple

from spendpipe.aggregator.dedup import Origin, RecentEventIds, event_digest
from spendpipe.aggregator.rollup import touched_scopes
from spendpipe.aggregator.store import SpendStore, source_name
from spendpipe.contracts.events import InvalidEventError, SpendEvent, decode_event
from spendpipe.contracts.scopes import Scope

log = logging.getLogger(__name__)

Clock = Callable[[], float]


@dataclass(frozen=True, slots=True)
class SourceRecord:
    """What the writer needs of one Kafka record."""

    partition: int
    offset: int
    value: bytes | None
    key: bytes | None = None


@dataclass(frozen=True, slots=True)
class DeadLetter:
    record: SourceRecord
    reason: str


@dataclass
class FlushOutcome:
    counted: int = 0
    """Events newly in the totals."""
    duplicates: int = 0
    """Events dropped because another record with their id was counted before."""
    replayed: int = 0
    """Records counted by an earlier attempt (a failed flush, a crash before the commit), read again."""
    dead_letters: list[DeadLetter] = field(default_factory=list)
    scopes: set[Scope] = field(default_factory=set)
    """Scopes to announce: those of every event of the batch in the totals, newly or by an
    earlier attempt whose announcement may never have gone out."""
    models: set[str] = field(default_factory=set)
    latest_occurred_at: datetime | None = None


class _Fresh(NamedTuple):
    """An event not counted before, the record it came in and its origin, for the memory."""

    event: SpendEvent
    record: SourceRecord
    origin: Origin


@dataclass
class _Watermarks:
    totals: dict[int, int] = field(default_factory=dict)
    events: dict[int, int] = field(default_factory=dict)


class BatchWriter:
    """Not thread-safe: one writer per consumer, called from the ClickHouse thread."""

    def __init__(
        self,
        *,
        store: SpendStore,
        topic: str,
        dedup_horizon_s: float,
        future_allowance_s: float = 300.0,
        clock: Clock = time.time,
    ) -> None:
        self._store = store
        self._topic = topic
        self._recent = RecentEventIds(horizon_s=dedup_horizon_s)
        self._future_allowance_s = future_allowance_s
        # An event counted at t is dated at most t + allowance and remembered until t + horizon:
        # a later copy dated older than horizon - allowance may have been forgotten, so those
        # copies are looked up in `events`.
        self._late_after_s = max(0.0, dedup_horizon_s - future_allowance_s)
        self._clock = clock
        self._watermarks: _Watermarks | None = None

    def forget_state(self) -> None:
        """Reload watermarks and recent ids from ClickHouse before the next batch: call it
        after partitions were reassigned or a write failed half-way."""
        self._watermarks = None

    def write(self, records: Sequence[SourceRecord]) -> FlushOutcome:
        outcome = FlushOutcome()
        decoded = self._decode(records, outcome)
        marks = self._load_state()
        fresh, replayed = self._drop_duplicates(decoded, outcome)
        now_s = self._clock()
        now = datetime.fromtimestamp(now_s, UTC)
        staged = [(new.event, new.record.partition, new.record.offset) for new in fresh]
        self._store.stage(staged, topic=self._topic, ingested_at=now)
        outcome.counted = self._write_totals(fresh, records, marks)
        self._write_events(fresh, records, marks)
        self._recent.remember(((new.event.event_id, new.origin) for new in fresh), now_s)
        self._recent.expire(now_s)
        _announce([new.event for new in fresh] + replayed, outcome)
        return outcome

    def _decode(self, records: Sequence[SourceRecord], outcome: FlushOutcome) -> list[tuple[SpendEvent, SourceRecord]]:
        decoded = []
        latest = datetime.fromtimestamp(self._clock() + self._future_allowance_s, UTC)
        for record in records:
            try:
                if record.value is None:
                    raise InvalidEventError("empty message (no value)")
                event = decode_event(record.value)
            except InvalidEventError as error:
                outcome.dead_letters.append(DeadLetter(record, error.reason))
                continue
            if event.occurred_at > latest:
                reason = (
                    f"occurred_at {event.occurred_at.isoformat()} is more than {self._future_allowance_s:g} s "
                    f"ahead of the aggregator's clock ({latest.isoformat()} at the latest)"
                )
                outcome.dead_letters.append(DeadLetter(record, reason))
                continue
            decoded.append((event, record))
        return decoded

    def _load_state(self) -> _Watermarks:
        marks = self._watermarks  # forget_state may clear the attribute from another thread
        if marks is None:
            marks = _Watermarks(
                totals=self._store.totals_watermarks(self._topic),
                events=self._store.events_watermarks(self._topic),
            )
            since = datetime.fromtimestamp(self._clock() - self._recent.horizon_s, UTC)
            self._recent.clear()
            for event_id, ingested_at, origin in self._store.event_ids_ingested_since(since):
                self._recent.remember([(event_id, origin)], ingested_at.replace(tzinfo=UTC).timestamp())
            self._watermarks = marks
        return marks

    def _drop_duplicates(
        self, decoded: list[tuple[SpendEvent, SourceRecord]], outcome: FlushOutcome
    ) -> tuple[list[_Fresh], list[SpendEvent]]:
        """(fresh, replayed): events not counted yet, and events counted from this very record
        by an earlier attempt. A copy of an id counted from another record is dropped as a
        duplicate, or dead-lettered if what it says differs."""
        late_before = self._clock() - self._late_after_s
        late_ids = [e.event_id for e, _ in decoded if e.occurred_at.timestamp() < late_before]
        known = self._store.existing_event_ids(late_ids)
        fresh: list[_Fresh] = []
        replayed: list[SpendEvent] = []
        in_batch: dict[str, Origin] = {}
        for event, record in decoded:
            here = Origin(record.partition, record.offset, event_digest(event))
            first = in_batch.get(event.event_id) or self._recent.origin(event.event_id) or known.get(event.event_id)
            in_batch.setdefault(event.event_id, first or here)
            if first is None:
                fresh.append(_Fresh(event, record, here))
            elif first == here:
                outcome.replayed += 1
                replayed.append(event)
            elif first.digest != here.digest:
                outcome.dead_letters.append(DeadLetter(record, _conflict(event.event_id, first)))
            else:
                outcome.duplicates += 1
        return fresh, replayed

    def _write_totals(self, fresh: list[_Fresh], records: Sequence[SourceRecord], marks: _Watermarks) -> int:
        """Returns how many events are new in the totals (the rest landed in an earlier attempt)."""
        new = sum(1 for _, record, _ in fresh if record.offset > marks.totals.get(record.partition, -1))
        advanced = {
            partition: offset
            for partition, offset in highest_offsets(records).items()
            if offset > marks.totals.get(partition, -1)
        }
        if not new and not advanced:
            return 0
        self._store.insert_totals(
            after=_watermarks_of(records, marks.totals),
            watermarks={source_name(self._topic, p): offset for p, offset in advanced.items()},
        )
        marks.totals.update(advanced)
        return new

    def _write_events(self, fresh: list[_Fresh], records: Sequence[SourceRecord], marks: _Watermarks) -> None:
        new = [record for _, record, _ in fresh if record.offset > marks.events.get(record.partition, -1)]
        if not new:
            return
        self._store.insert_events(after=_watermarks_of(records, marks.events))
        for partition, offset in highest_offsets(new).items():
            marks.events[partition] = offset


def _conflict(event_id: str, first: Origin) -> str:
    return (
        f"conflicting duplicate: event_id {event_id!r} was counted from partition {first.partition} "
        f"offset {first.offset} with other content (time, attribution, model, cost, tokens or status)"
    )


def _announce(events: list[SpendEvent], outcome: FlushOutcome) -> None:
    outcome.scopes = touched_scopes((e.key_hash, e.user_id, e.team_id, e.org_id, e.end_user) for e in events)
    outcome.models = {event.billed_model for event in events}
    outcome.latest_occurred_at = max((e.occurred_at for e in events), default=None)


def _watermarks_of(records: Sequence[SourceRecord], marks: dict[int, int]) -> dict[int, int]:
    """The watermark of every partition in the batch; -1 where nothing was written yet."""
    return {record.partition: marks.get(record.partition, -1) for record in records}


def highest_offsets(records: Iterable[SourceRecord]) -> dict[int, int]:
    highest: dict[int, int] = {}
    for record in records:
        if record.offset > highest.get(record.partition, -1):
            highest[record.partition] = record.offset
    return highest
