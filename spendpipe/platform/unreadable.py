"""Reading past records that aiokafka cannot parse.

Kafka stores a record header's name as bytes and the broker takes any; aiokafka decodes it as
UTF-8 and raises `UnicodeDecodeError` from `getmany` when it is not. So one record written by a
raw client stops every aiokafka reader of its topic, and worse, the call that raises drops the
records it had already taken from other partitions while their positions moved past them: a
reader that only caught the error would lose them. Nothing in aiokafka skips such a record (and
no other client we could use reads what it cannot decode), so this is written by hand, as small
as it can be.

`TolerantConsumer.getmany` is aiokafka's, except when parsing raises anything but a
`KafkaError`, or hands over a record at an offset no log holds there (a writer of raw batches
sets each record's offset delta: one past its batch comes out at that offset, after its batch's
end or beyond the log's, and a reader that counts by offset would take what follows for records
it already read; a call cut by `max_records` right after such a record is checked against the
raw batches when a gap comes before it). Then every partition asked for and still assigned is
sought back to where the call found it (one assigned during the call, in a rebalance, to its
committed offset), the broker is asked for the failing partition's raw batches from there (one
Fetch, by aiokafka's own client), and the first batch that does not parse, or holds a record out
of place, is the unreadable one: its records from the first that fails to the end of the batch
are passed over (a batch has one writer, and aiokafka cannot read past a bad record within it),
with the batches right after it that fail from their first record.
The records before it are read one at a time, as aiokafka gives them, then the consumer is
sought past the batch. The call returns those records, and reports the range passed over as an
`Unreadable` to whoever reads.

A batch compressed by a codec no library here reads, or with a record aiokafka's parser
misreads (`UNREADABLE`: the Kafka errors no retry can cure) is passed over the same way. Other
Kafka errors (a broker away) are raised as before, once the partitions are sought back to where
the call found them: readers retry them. If the failing batch cannot be found,
`UnreadableBatchError` (a `KafkaError`) is raised, so those readers back off and try again
rather than stop. Every reader here reads uncommitted records, the only isolation level this
supports: it refuses another.
"""

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import ConsumerStoppedError, CorruptRecordException, KafkaError, UnsupportedCodecError
from aiokafka.protocol.fetch import FetchRequest
from aiokafka.record.memory_records import MemoryRecords

from spendpipe.platform.first_logged import FirstLogged

log = logging.getLogger(__name__)

MOST_LOGGED = 100
"""Ranges a consumer logs passing over (unless told to do otherwise with them): a writer that
sends more cannot fill the log."""

MOST_PASSED = 1_000
"""Unreadable batches in a row one call passes over at most."""
FETCH_BYTES = 1 << 20
"""aiokafka's `max_partition_fetch_bytes` unless the consumer is given another."""
GETONE_WAIT_MS = 1_000
"""How long `getone` waits in one call of `getmany` before it asks again."""
READ_ONE_MS = 10_000
"""How long reading one record before the unreadable batch may wait for its fetch."""


@dataclass(frozen=True)
class Unreadable:
    """Records of one batch that could not be parsed, passed over: offsets `first` to `last`."""

    topic: str
    partition: int
    first: int
    last: int
    reason: str

    def __str__(self) -> str:
        return f"{self.topic}[{self.partition}] offsets {self.first}-{self.last}: {self.reason}"


class MisplacedRecordError(ValueError):
    """A record whose offset lies outside its batch, or is not after the record before it."""


UNREADABLE = (UnsupportedCodecError, CorruptRecordException)
"""Kafka errors of parsing that no retry cures: a compression no library here reads; a record
aiokafka's parser misreads (it reads the record's attributes byte, which the broker takes as any
byte, as a varint). A checksum that fails in transit raises the latter too: the raw fetch then
finds nothing wrong, and the reader tries again (`UnreadableBatchError`)."""


class UnreadableBatchError(KafkaError):  # type: ignore[misc]
    """Parsing a fetch failed, and the batch that made it fail was not found (the log moved, a
    leader away): read again later."""


Records = dict[TopicPartition, list[ConsumerRecord[Any, Any]]]


class TolerantConsumer(AIOKafkaConsumer):  # type: ignore[misc]
    """An `AIOKafkaConsumer` whose `getmany` reads past what it cannot parse (module docstring),
    telling `unreadable` of each range passed over; by default the first few are logged, and
    `passed_over` counts them all."""

    def __init__(self, *topics: str, unreadable: Callable[[Unreadable], None] | None = None, **kwargs: Any) -> None:
        if kwargs.get("isolation_level", "read_uncommitted") != "read_uncommitted":
            # its raw fetch would see aborted transactions' batches, which aiokafka never hands
            # over, and blame one of them: the reader would stall on it
            raise ValueError("a TolerantConsumer reads with isolation_level='read_uncommitted' only")
        super().__init__(*topics, **kwargs)
        self._logged = FirstLogged(log, MOST_LOGGED)
        self._heard = unreadable or self._log
        self._reset: str = kwargs.get("auto_offset_reset", "latest")
        self._fetch_bytes: int = kwargs.get("max_partition_fetch_bytes", FETCH_BYTES)
        """What one fetch takes of a partition: where the call found it, the record that failed
        was within that many bytes, plus a batch (a fetch takes a whole batch if it is larger)."""

    def _log(self, unreadable: Unreadable) -> None:
        self._logged.error("passed over records that cannot be read: %s", unreadable)

    @property
    def passed_over(self) -> int:
        """Ranges passed over and logged (none counted here when `unreadable` was given)."""
        return self._logged.count

    async def getmany(
        self, *partitions: TopicPartition, timeout_ms: int = 0, max_records: int | None = None
    ) -> Records:
        records, passed_over = await self.read(*partitions, timeout_ms=timeout_ms, max_records=max_records)
        for unreadable in passed_over:
            self._heard(unreadable)
        return records

    async def getone(self, *partitions: TopicPartition) -> ConsumerRecord[Any, Any]:
        """The next record, waiting for one: `getmany`'s first, so it reads past what it cannot
        parse too (FastStream's subscribers of one message at a time call this)."""
        while True:
            records = await self.getmany(*partitions, timeout_ms=GETONE_WAIT_MS, max_records=1)
            for taken in records.values():
                if taken:
                    return taken[0]

    async def read(
        self, *partitions: TopicPartition, timeout_ms: int = 0, max_records: int | None = None
    ) -> tuple[Records, list[Unreadable]]:
        """`getmany`'s records, and the ranges passed over (then `unreadable` is not told): for a
        reader that accounts for them in order, after the records of their partition returned."""
        asked = list(partitions) or sorted(self.assignment())
        try:
            async with asyncio.timeout(timeout_ms / 1000):
                # where each partition is before the call: aiokafka knows at once, except for a
                # partition still waiting for its first position (a fetch waits for it too)
                found = {tp: await self.position(tp) for tp in asked}
        except TimeoutError:
            return {}, []
        try:
            records = await super().getmany(*partitions, timeout_ms=timeout_ms, max_records=max_records)
            misplaced = await self._misplaced(records, found, max_records)
            if misplaced is None:
                return records, []
            unparsed: Exception = MisplacedRecordError(f"{misplaced}: a record's offset lies outside its batch")
        except UNREADABLE as error:
            unparsed = error  # a compression no library here reads, a record aiokafka misreads
        except ConsumerStoppedError:
            raise
        except (KafkaError, asyncio.CancelledError):
            self._seek_back(found)  # what the failed call took of other partitions is read again
            raise
        except Exception as error:
            unparsed = error
        log.warning("reading %s failed: %r; looking for the batch that cannot be read", asked, unparsed)
        self._seek_back(found)  # the records the failed call took are read again
        if not partitions:
            await self._restart(self.assignment() - found.keys())
        for tp, offset in found.items():
            if tp not in self.assignment():
                continue  # revoked during the call: another reader reads it now
            passed = await self._unreadable_batches(tp, offset)
            if passed:
                try:
                    before = await self._read_up_to(tp, passed[0].first)
                except BaseException:
                    self.seek(tp, offset)  # what was read of it is read again
                    raise
                if max_records is not None and len(before) > max_records:
                    self.seek(tp, before[max_records].offset)  # the rest, and the batch, next time
                    return {tp: before[:max_records]}, []
                self.seek(tp, passed[-1].last + 1)
                return ({tp: before} if before else {}), passed
        raise UnreadableBatchError("a fetched record could not be parsed, and no batch that fails to parse was found")

    def _seek_back(self, found: dict[TopicPartition, int]) -> None:
        """Each partition still assigned back where the call found it."""
        assigned = self.assignment()
        for tp, offset in found.items():
            if tp in assigned:
                self.seek(tp, offset)

    async def _misplaced(
        self, records: Records, found: dict[TopicPartition, int], max_records: int | None
    ) -> TopicPartition | None:
        """The partition of a record out of place in `records`, or None. A call cut by
        `max_records` (or `max_poll_records`) right after a record past its batch leaves the
        position just after it, so the partition that ends such a call, if its records leave a
        gap, is checked in the raw batches (a gap is rare on a topic no transaction writes: a
        marker, a compacted record)."""
        for tp, taken in records.items():
            if not await self._in_place(tp, taken):
                return tp
        limit = max_records or getattr(self, "_max_poll_records", None)
        if limit is None or not records or sum(map(len, records.values())) < limit:
            return None
        tp, taken = next(reversed(records.items()))
        if tp not in found or not taken:
            return None
        gapped = taken[-1].offset != found[tp] + len(taken) - 1  # rising from where the call began
        if gapped and await self._unreadable_batches(tp, found[tp]):
            return tp
        return None

    async def _in_place(self, tp: TopicPartition, taken: list[ConsumerRecord[Any, Any]]) -> bool:
        """Whether `taken`, read from `tp`, have offsets a log can hold: rising, each before where
        the partition now is and before the end of the log. A writer of raw batches can set a
        record's offset delta past its batch; aiokafka hands such a record over at that offset,
        which would tell a reader that counts by offset that what follows was already read."""
        if not taken:
            return True
        ahead: int = await self.position(tp)
        end = self.highwater(tp)
        if isinstance(end, int):
            ahead = min(ahead, end)
        last: int = -1
        for record in taken:
            if record.offset <= last:
                return False
            last = record.offset
        return last < ahead

    async def _restart(self, assigned: set[TopicPartition]) -> None:
        """Partitions assigned during the failed call (a rebalance): back where an assignment
        starts them, their committed offset, or with none the beginning if the consumer starts
        there (a consumer that starts at the end cannot tell where it started)."""
        if not assigned:
            return
        committed = await self.seek_to_committed(*assigned)  # aiokafka leaves offset 0 and None alone
        starts = [
            tp for tp, offset in committed.items() if offset == 0 or (offset is None and self._reset == "earliest")
        ]
        if starts:
            await self.seek_to_beginning(*starts)

    async def _unreadable_batches(self, tp: TopicPartition, offset: int) -> list[Unreadable]:
        """The first batch of `tp` at or after `offset` that does not parse, from the broker's raw
        fetches: its records from the first that fails to its end; then each batch right after
        it in the same answer that fails from its first record, up to `MOST_PASSED` (so a writer
        of many such batches costs one call, not one each). Empty if none within what aiokafka
        could have fetched from there, or the broker did not answer."""
        scanned = 0
        while scanned < self._fetch_bytes:
            raw = await self._fetch_raw(tp, offset)
            if not raw:
                return []
            records = MemoryRecords(raw)
            reached = offset
            passed: list[Unreadable] = []
            while records.has_next() and len(passed) < MOST_PASSED:
                batch = records.next_batch()
                if batch is None or batch.next_offset <= offset:
                    continue
                failure = _failure(batch, offset)
                start = max(offset, getattr(batch, "base_offset", offset))
                if failure is None or (passed and failure[0] != start):
                    if passed:
                        break
                    reached = batch.next_offset
                    continue
                passed.append(Unreadable(tp.topic, tp.partition, failure[0], batch.next_offset - 1, failure[1]))
            if passed:
                return passed
            if reached == offset:
                return []  # no whole batch in the answer: the end of the log
            scanned += len(raw)
            offset = reached
        return []

    async def _fetch_raw(self, tp: TopicPartition, offset: int) -> bytes | None:
        """The record batches of `tp` from `offset`, as the broker sends them (aiokafka's client,
        which the consumer's own fetches use)."""
        client = self._client
        node = client.cluster.leader_for_partition(tp)
        if node is None or node < 0:
            return None
        request = FetchRequest(
            max_wait_time=0,
            min_bytes=0,
            max_bytes=self._fetch_bytes,
            isolation_level=0,
            topics=[(tp.topic, [(tp.partition, offset, self._fetch_bytes)])],
        )
        try:
            response = await client.send(node, request)
        except KafkaError as error:
            log.warning("could not fetch %s from %d to find what cannot be read: %r", tp, offset, error)
            return None
        for topic, answers in response.topics:
            for partition, error_code, _highwater, *rest in answers:
                if topic == tp.topic and partition == tp.partition and error_code == 0:
                    return bytes(rest[-1] or b"")
        return None

    async def _read_up_to(self, tp: TopicPartition, first: int) -> list[ConsumerRecord[Any, Any]]:
        """The records of `tp` from its position up to the unreadable one at `first`, one at a
        time: aiokafka gives each before it reaches the one it cannot parse."""
        before: list[ConsumerRecord[Any, Any]] = []
        while True:
            try:
                fetched = await super().getmany(tp, timeout_ms=READ_ONE_MS, max_records=1)
            except UNREADABLE:
                return before  # reached it
            except (KafkaError, asyncio.CancelledError):
                raise
            except Exception:
                return before  # reached it
            record = next(iter(fetched.get(tp, [])), None)
            if record is None:
                raise UnreadableBatchError(f"{tp} gave no record before the unreadable one at {first}")
            if record.offset >= first or (before and record.offset <= before[-1].offset):
                return before  # it, or past it: the caller seeks past the batch, before this record
            before.append(record)


def _failure(batch: Any, offset: int) -> tuple[int, str] | None:
    """Where the raw `batch` (read from `offset`) stops parsing, and why; None if it parses."""
    base = getattr(batch, "base_offset", offset)
    parsed, previous = max(offset, base) - 1, base - 1
    try:
        if not batch.validate_crc():
            raise CorruptRecordException("the batch fails its checksum")  # damaged on disk
        for record in batch:
            if not previous < record.offset < batch.next_offset:
                raise MisplacedRecordError(f"offset {record.offset} is not after {previous} in its batch")
            previous = record.offset
            parsed = max(parsed, record.offset)
    except Exception as error:
        return min(max(offset, parsed + 1), batch.next_offset - 1), f"{type(error).__name__}: {error}"
    return None
