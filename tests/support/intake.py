"""Stand-ins for the aggregator's intake (`spendpipe.aggregator.intake`): a consumer holding
partitions as lists of records, and a flush the test holds and lets go."""

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from aiokafka import TopicPartition
from aiokafka.errors import IllegalStateError, KafkaError

from spendpipe.aggregator.intake import Flushed
from spendpipe.aggregator.offsets import PartitionOffsets, ReadFurtherError
from spendpipe.aggregator.store import KafkaRecord
from spendpipe.platform.unreadable import Unreadable

TOPIC = "spend.events"


@dataclass(frozen=True)
class Record:
    partition: int
    offset: int
    value: bytes = b"{}"
    key: bytes | None = None
    timestamp: int = field(default_factory=lambda: int(time.time() * 1000))
    """Kafka's, in milliseconds: when it was appended."""


@dataclass
class StandInConsumer:
    """Partitions as lists of records and a position each, as aiokafka's consumer keeps them."""

    log: dict[int, list[Record]] = field(default_factory=dict)
    positions: dict[int, int] = field(default_factory=dict)
    commits: list[dict[int, int]] = field(default_factory=list)
    seeks: list[tuple[int, int]] = field(default_factory=list)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    asked: list[set[int]] = field(default_factory=list)
    """The partitions each `getmany` read from."""
    unassigned_once: set[int] = field(default_factory=set)
    """`position` of these raises as aiokafka's does for a partition revoked meanwhile, once each."""
    away: set[int] = field(default_factory=set)
    """Partitions whose leader is away: nothing is fetched of them, their high watermark unknown."""
    failing: bool = False
    """`getmany` raises a `KafkaError` while set (the broker refusing the fetch)."""
    failures: int = 0
    """How many times it did."""

    def append(self, partition: int, count: int) -> None:
        records = self.log.setdefault(partition, [])
        first = len(records)
        records.extend(Record(partition, first + n) for n in range(count))
        self.positions.setdefault(partition, 0)
        self.arrived.set()

    async def getmany(
        self, *partitions: TopicPartition, timeout_ms: int, max_records: int
    ) -> dict[TopicPartition, list[Record]]:
        """From `partitions` only, when named, as aiokafka's does."""
        wanted = {tp.partition for tp in partitions} or set(self.log)
        self.asked.append(wanted)
        if self.failing:
            self.failures += 1
            raise KafkaError("the fetch was refused")
        while True:
            fetched: dict[TopicPartition, list[Record]] = {}
            for partition, records in self.log.items():
                if partition not in wanted or partition in self.away:
                    continue
                start = self.positions[partition]
                taken = records[start : start + max_records - sum(map(len, fetched.values()))]
                if taken:
                    fetched[TopicPartition(TOPIC, partition)] = taken
                    self.positions[partition] = start + len(taken)
            if fetched or not timeout_ms:
                return fetched
            self.arrived.clear()
            try:
                await asyncio.wait_for(self.arrived.wait(), timeout_ms / 1000)
            except TimeoutError:
                return {}

    async def read(
        self, *partitions: TopicPartition, timeout_ms: int, max_records: int
    ) -> tuple[dict[TopicPartition, list[Record]], list[Unreadable]]:
        """`TolerantConsumer.read`: `getmany`'s records, and nothing passed over."""
        return await self.getmany(*partitions, timeout_ms=timeout_ms, max_records=max_records), []

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        self.commits.append({tp.partition: offset for tp, offset in offsets.items()})

    async def committed(self, tp: TopicPartition) -> int | None:
        """The partition's last commit, or where it stands if none: a partition starts at its
        commit, and the stand-in's log has no record that is not handed over (no transaction
        markers), so an idle intake has nothing to commit."""
        made = [commit[tp.partition] for commit in self.commits if tp.partition in commit]
        return made[-1] if made else self.positions.get(tp.partition)

    def assignment(self) -> set[TopicPartition]:
        return {TopicPartition(TOPIC, partition) for partition in self.log}

    async def position(self, tp: TopicPartition) -> int:
        if tp.partition in self.unassigned_once:
            self.unassigned_once.discard(tp.partition)
            raise IllegalStateError(f"Partition {tp} is not assigned")
        return self.positions[tp.partition]

    def highwater(self, tp: TopicPartition) -> int | None:
        return None if tp.partition in self.away else len(self.log[tp.partition])

    async def end_offsets(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        return {tp: len(self.log[tp.partition]) for tp in tps}

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.seeks.append((tp.partition, offset))
        self.positions[tp.partition] = offset


class HeldFlushes:
    """A flush that holds each batch until the test lets it go, and fails when told to."""

    def __init__(self) -> None:
        self.batches: list[list[tuple[int, int]]] = []
        self.release = asyncio.Event()
        self.fail_next = False
        self.fenced = False
        """Every flush loses ownership while set."""
        self.further: list[dict[int, int]] = []
        """The next flushes raise `ReadFurtherError` with these, one each."""
        self.read_through: list[dict[int, int]] = []

    async def __call__(self, records: Sequence[KafkaRecord], offsets: PartitionOffsets) -> Flushed:
        # the offsets the intake kept as it read are those of the records it hands over
        assert offsets == PartitionOffsets.of(records, offsets.read_through)
        self.batches.append([(r.partition, r.offset) for r in records])
        self.read_through.append(dict(offsets.read_through))
        await self.release.wait()
        if self.further:
            raise ReadFurtherError(self.further.pop(0))
        if self.fenced:
            return Flushed.OWNERSHIP_LOST
        if self.fail_next:
            self.fail_next = False
            return Flushed.FAILED
        return Flushed.WRITTEN
