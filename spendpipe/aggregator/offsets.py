"""Each partition's offsets in a batch: its first and highest offset.

The intake keeps them as fetches come (aiokafka hands each partition's records in offset
order), a few dict updates per fetch, so no step of a flush walks every record to learn them:
the commit, the watermarks, the ownership check, the dead-letter bookkeeping and the count of
first reads all read them here. A pass over 200,000 fetched records costs tens of milliseconds
(each record is a separate object, mostly out of the CPU's cache), and a flush made about nine
such passes, most on the thread that reads the next batch (profiled 2026-12-03).

`ReadFurtherError` is the writer's answer to a retry cut shorter than what the totals hold: the batch
must reach further before anything of it is counted (`BatchWriter`, docs/exactly-once.md).
"""

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from spendpipe.aggregator.store import KafkaRecord


@dataclass
class PartitionOffsets:
    first: dict[int, int] = field(default_factory=dict)
    """Each partition's lowest offset in the batch."""
    highest: dict[int, int] = field(default_factory=dict)
    """Each partition's highest offset in the batch: what a commit names, plus one."""
    read_through: dict[int, int] = field(default_factory=dict)
    """Partitions read through an offset the batch's records do not show: with no record in the
    batch, read before it, every record up to there written (committed); or whose log ends
    before the offset asked for (the topic recreated, the log truncated), so none of the
    records up to it will come. Set only on a batch handed again after `ReadFurtherError`, for
    the partitions it asked for."""

    def add_run(self, partition: int, run: Sequence[KafkaRecord]) -> None:
        """Add a run of one partition's records, in offset order and after any run of that
        partition added before: what consecutive fetches of one assignment give."""
        if not run:
            return
        self.first.setdefault(partition, run[0].offset)
        self.highest[partition] = run[-1].offset

    def then(self, later: "PartitionOffsets") -> "PartitionOffsets":
        """These offsets and those of the batch read right after them, as one batch."""
        return PartitionOffsets(first={**later.first, **self.first}, highest={**self.highest, **later.highest})

    @classmethod
    def of(cls, records: Iterable[KafkaRecord], read_through: dict[int, int] | None = None) -> "PartitionOffsets":
        """The offsets of records in any order, in one pass: for callers holding a plain list."""
        offsets = cls(read_through=dict(read_through or {}))
        first, highest = offsets.first, offsets.highest
        for record in records:
            partition, offset = record.partition, record.offset
            if offset < first.get(partition, offset + 1):
                first[partition] = offset
            if offset > highest.get(partition, -1):
                highest[partition] = offset
        return offsets


def earliest(batches: Iterable[PartitionOffsets]) -> dict[int, int]:
    """Each partition's lowest first offset across `batches`."""
    first: dict[int, int] = {}
    for offsets in batches:
        for partition, offset in offsets.first.items():
            first[partition] = min(offset, first.get(partition, offset))
    return first


class ReadFurtherError(Exception):
    """A retried batch must not be written yet: the totals hold records, counted by an earlier
    attempt, that are neither in `events` nor in the batch, so a copy of one of them in the batch
    would be taken for a new event. `needed`: per partition, the offset the intake must have read
    through (into the batch, or written before it) before it hands the batch over again."""

    def __init__(self, needed: dict[int, int]) -> None:
        super().__init__(f"read partitions through {needed} before this batch is written")
        self.needed = needed
