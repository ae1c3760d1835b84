"""Which partitions of `spend.events` this aggregator owns, and the fence that makes the inserts
of an aggregator that no longer owns them write nothing.

Several aggregators share a consumer group; the group moves partitions between them at every
rebalance, and an aggregator can still be writing a batch of a partition that has moved on (read
before the rebalance, or cut off from Kafka but not from ClickHouse). So:

- **Claim.** When the group assigns partitions, the aggregator inserts one row per partition
  into `partition_owners` (migration 0012) with its owner epoch: the group's generation at that
  assignment. The coordinator raises the generation at every rebalance, so a later owner's epoch
  is always higher, whatever order the claims land in.
- **Fence.** Every insert that counts (totals with their watermark rows, events) carries
  `Fence.condition`: this epoch is still the highest claim of every partition the flush writes.
  ClickHouse evaluates that scalar subquery when the statement starts; a stale writer's insert
  selects no row and writes no part. After its inserts the flush reads the same condition again
  (`SpendStore.written`): false means another owner claimed meanwhile, and the flush is reported
  as lost ownership (`OwnershipLostError`), neither committed nor retried as it is.
- **Settle.** ClickHouse has no transactions: a stale statement may pass its check just before a
  claim and land after it. Every insert runs with `max_execution_time = write_timeout_s`, so it
  has landed or failed `write_timeout_s` after it started. An owner that acquired a partition
  (one it did not hold in the generation just before) therefore waits `settle_s` (longer than
  that) after its claim before it reads the watermarks and writes; so does an aggregator after
  one of its own flushes failed (a statement of it may still be running on a server). Then the
  watermarks include everything any earlier owner wrote, and replays are skipped as before.

- **Release.** An aggregator that gives partitions back (a rebalance, which waits for its flush
  in flight: `intake`; or a stop) adds a `released` row once its last insert has ended and
  nothing is left to settle; an owner whose predecessor released writes at once.

A partition kept from generation g - 1 to g needs no wait: no one else held it in between. On
chDB one process holds the directory, so an earlier owner of another process has ended: only
owners of this process (several aggregators in one test process) are waited for.

Limit: the epochs of a group compare only within that group's life. A group deleted by the broker
(empty for longer than `offsets.retention.minutes`) starts again at generation 1, below the claims
it left: its aggregators are fenced until the group's rows are removed from `partition_owners`
(docs/exactly-once.md says how).
"""

import logging
import socket
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer

from spendpipe.platform.clickhouse import ClickhouseStore

log = logging.getLogger(__name__)

OWNERS_TABLE = "partition_owners"


class OwnershipLostError(Exception):
    """A flush was fenced: another aggregator claimed one of its partitions. What it wrote, if
    anything, stays (the next owner reads the watermarks after settling); nothing is committed."""


@dataclass(frozen=True, slots=True)
class Fence:
    """The claim a flush writes under."""

    group: str
    topic: str
    epoch: int

    CONDITION = (
        "(SELECT countIf(top = {owner_epoch:UInt64}) = length({owner_partitions:Array(UInt32)}) FROM ("
        f"SELECT max(epoch) AS top FROM {OWNERS_TABLE} "
        "WHERE consumer_group = {owner_group:String} AND topic = {owner_topic:String} "
        "AND has({owner_partitions:Array(UInt32)}, kafka_partition) GROUP BY kafka_partition))"
    )
    """SQL, true while `epoch` is the highest claim of each partition named (a partition never
    claimed fails it too). A scalar subquery: ClickHouse computes it once, as the statement starts."""

    def parameters(self, partitions: Iterable[int]) -> dict[str, Any]:
        return {
            "owner_group": self.group,
            "owner_topic": self.topic,
            "owner_epoch": self.epoch,
            "owner_partitions": sorted(set(partitions)),
        }


def fence_sql(fence: Fence | None, partitions: Iterable[int]) -> tuple[str, dict[str, Any]]:
    """The condition and its parameters; `None` writes unfenced (one writer: tools, benchmarks)."""
    if fence is None:
        return "1", {}
    return Fence.CONDITION, fence.parameters(partitions)


def group_generation(consumer: AIOKafkaConsumer) -> int:
    """The generation of the group assignment the consumer holds. aiokafka (0.14) has no public
    accessor; its coordinator sets `generation` when the group is joined and synced, before it
    calls the rebalance listener's `on_partitions_assigned`."""
    return int(consumer._coordinator.generation)


class Ownership:
    """This aggregator's claims. `assigned`/`revoked` from the rebalance listener; `claim` and
    `release` on the ClickHouse thread; `settle_wait_s` before each flush."""

    def __init__(
        self,
        *,
        group: str,
        topic: str,
        settle_s: float,
        embedded: bool,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._group = group
        self._topic = topic
        self._settle_s = settle_s
        self._embedded = embedded
        self._clock = clock
        self.owner = f"{socket.gethostname()}/{_PROCESS}/{uuid.uuid4().hex[:8]}"
        self._generation: int | None = None
        self._partitions: frozenset[int] = frozenset()
        self._held = False
        """Between an assignment and its revocation."""
        self._acquired: frozenset[int] = frozenset()
        self._claimed = False
        self._settled_at = 0.0

    @property
    def fence(self) -> Fence | None:
        """The fence of the current claim; None while there is none (nothing may be written)."""
        if not (self._held and self._claimed) or self._generation is None:
            return None
        return Fence(self._group, self._topic, self._generation)

    @property
    def needs_claim(self) -> bool:
        return self._held and not self._claimed

    def assigned(self, partitions: Iterable[int], generation: int) -> None:
        partitions = frozenset(partitions)
        consecutive = self._generation is not None and generation == self._generation + 1
        self._acquired = partitions - (self._partitions if consecutive else frozenset())
        self._generation, self._partitions, self._held, self._claimed = generation, partitions, True, False

    def revoked(self) -> "Release | None":
        """The assignment ends (its last flush has ended). Returns what to `release`, if the next
        owner may be told it need not wait: a claimed assignment with every earlier statement
        known to have landed (nothing left to settle); None otherwise (it waits as after a crash)."""
        releasable = self._held and self._claimed and self._partitions and self.settle_wait_s() == 0
        self._held = self._claimed = False
        if not releasable or self._generation is None:
            return None
        return Release(self._generation, self._partitions)

    def failed(self) -> None:
        """A flush failed. On a server a statement of it may still run: wait it out before the
        next watermarks are read. chDB's calls return only when their statement ended."""
        if not self._embedded:
            self._settled_at = max(self._settled_at, self._clock() + self._settle_s)

    def settle_wait_s(self) -> float:
        return max(0.0, self._settled_at - self._clock())

    def claim(self, clickhouse: ClickhouseStore) -> None:
        """Blocking. Insert the claim rows of the current assignment (the same row twice changes
        no maximum), then start the settle wait if an acquired partition's earlier owner may
        still have a statement in flight (`_unsettled`)."""
        generation, partitions, acquired = self._generation, self._partitions, self._acquired
        if generation is None or not self._held or not partitions:
            self._claimed = self._held
            return
        self._insert(clickhouse, partitions, generation, released=False)
        unsettled = self._unsettled(clickhouse, acquired, generation) if acquired else []
        if generation != self._generation:
            return  # reassigned meanwhile: that assignment claims for itself
        if unsettled:
            self._settled_at = max(self._settled_at, self._clock() + self._settle_s)
            log.info(
                "claimed partitions %s of %s at epoch %d; %s may have an earlier owner's statement in flight: "
                "writing in %.1fs",
                sorted(partitions),
                self._topic,
                generation,
                unsettled,
                self._settle_s,
            )
        self._claimed = True

    def release(self, clickhouse: ClickhouseStore, release: "Release") -> None:
        """Blocking. Say to the next owners of `release.partitions` that this one is done."""
        self._insert(clickhouse, release.partitions, release.epoch, released=True)

    def _insert(self, clickhouse: ClickhouseStore, partitions: frozenset[int], epoch: int, *, released: bool) -> None:
        count = len(partitions)
        clickhouse.insert_columns(
            OWNERS_TABLE,
            [
                [self._group] * count,
                [self._topic] * count,
                sorted(partitions),
                [epoch] * count,
                [self.owner] * count,
                [released] * count,
            ],
            ["consumer_group", "topic", "kafka_partition", "epoch", "owner", "released"],
        )

    def _unsettled(self, clickhouse: ClickhouseStore, partitions: frozenset[int], epoch: int) -> list[int]:
        """The partitions whose latest earlier claim did not release them, by an owner whose
        statements may still run: any, on a server; on chDB only one of this process (one process
        holds a chDB directory, so an owner of another process has ended)."""
        rows = clickhouse.rows(
            f"SELECT kafka_partition, argMax(owner, epoch), argMax(released, (epoch, released)) FROM {OWNERS_TABLE} "
            "WHERE consumer_group = {group:String} AND topic = {topic:String} "
            "AND has({partitions:Array(UInt32)}, kafka_partition) AND epoch < {epoch:UInt64} GROUP BY kafka_partition",
            {"group": self._group, "topic": self._topic, "partitions": sorted(partitions), "epoch": epoch},
        )
        return sorted(
            int(partition)
            for partition, owner, released in rows
            if not released and not (self._embedded and str(owner).split("/")[1:2] != [_PROCESS])
        )


@dataclass(frozen=True, slots=True)
class Release:
    epoch: int
    partitions: frozenset[int]


_PROCESS = uuid.uuid4().hex[:12]
"""This process, in owner names: on chDB, an owner of another process has ended."""
