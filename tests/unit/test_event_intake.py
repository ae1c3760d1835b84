"""The aggregator's intake against a consumer stand-in: it reads the next batch while the
flush of the one before runs, commits only what was written, and reads again what was not."""

import asyncio
import time
from collections.abc import Awaitable, Callable
from types import SimpleNamespace

import pytest
from aiokafka import TopicPartition

from spendpipe.aggregator import intake as intake_module
from spendpipe.aggregator.intake import EventIntake
from tests.support.intake import TOPIC, HeldFlushes, StandInConsumer
from tests.support.waiting import eventually

WHAT = "the intake to get there"


async def _nothing(_: list[TopicPartition]) -> None:
    return None


def _intake(
    flushes: HeldFlushes,
    committed: list[dict[int, int]] | None = None,
    *,
    batch_size: int = 1000,
    revoked: Callable[[list[TopicPartition]], Awaitable[None]] = _nothing,
    wait_ms: int = 50,
    waited: Callable[[float], None] = lambda _: None,
    retry_backoff_s: float = 0.01,
) -> EventIntake:
    return EventIntake(
        topic=TOPIC,
        flush=flushes,
        committed=lambda offsets: (committed if committed is not None else []).append(dict(offsets.highest)),
        batch_size=batch_size,
        wait_ms=wait_ms,
        retry_backoff_s=retry_backoff_s,
        revoked=revoked,
        assigned=_nothing,
        waited=waited,
    )


async def test_the_next_batch_is_read_while_a_flush_runs_and_goes_once_the_writer_is_free() -> None:
    consumer, flushes = StandInConsumer(), HeldFlushes()
    intake = _intake(flushes)
    consumer.append(0, 3)
    running = asyncio.create_task(intake.run(consumer))
    try:
        await eventually(lambda: len(flushes.batches) == 1, bool, within=5, what=WHAT)
        consumer.append(0, 4)
        consumer.append(1, 2)
        # read while the first flush is held
        await eventually(lambda: consumer.positions == {0: 7, 1: 2}, bool, within=5, what=WHAT)
        assert len(flushes.batches) == 1
        flushes.release.set()
        await eventually(lambda: len(consumer.commits) == 2, bool, within=5, what=WHAT)
        assert flushes.batches == [
            [(0, 0), (0, 1), (0, 2)],
            [(0, 3), (0, 4), (0, 5), (0, 6), (1, 0), (1, 1)],
        ]
        # each commit names what its flush wrote, never what was read ahead
        assert consumer.commits == [{0: 3}, {0: 7, 1: 2}]
    finally:
        running.cancel()


async def test_a_failed_flush_reads_again_its_batch_and_the_one_read_meanwhile() -> None:
    consumer, flushes = StandInConsumer(), HeldFlushes()
    committed: list[dict[int, int]] = []
    intake = _intake(flushes, committed)
    consumer.append(0, 2)
    running = asyncio.create_task(intake.run(consumer))
    try:
        await eventually(lambda: len(flushes.batches) == 1, bool, within=5, what=WHAT)
        consumer.append(0, 2)
        consumer.append(1, 3)
        await eventually(lambda: consumer.positions == {0: 4, 1: 3}, bool, within=5, what=WHAT)
        flushes.fail_next = True
        flushes.release.set()
        await eventually(lambda: consumer.commits != [], bool, within=5, what=WHAT)
        # partition 0 from the failed batch's first record, partition 1 from the read-ahead's
        assert sorted(consumer.seeks) == [(0, 0), (1, 0)]
        assert flushes.batches[1] == [(0, 0), (0, 1), (0, 2), (0, 3), (1, 0), (1, 1), (1, 2)]
        assert consumer.commits == [{0: 4, 1: 3}]
        assert committed == [{0: 3, 1: 2}]
    finally:
        running.cancel()


async def test_a_batch_read_before_a_rebalance_is_never_written() -> None:
    consumer, flushes = StandInConsumer(), HeldFlushes()
    commits_at_revocation: list[list[dict[int, int]]] = []

    async def revoked(_: list[TopicPartition]) -> None:
        commits_at_revocation.append(list(consumer.commits))

    intake = _intake(flushes, revoked=revoked)
    consumer.append(0, 1)
    running = asyncio.create_task(intake.run(consumer))
    try:
        await eventually(lambda: len(flushes.batches) == 1, bool, within=5, what=WHAT)
        consumer.append(0, 2)
        await eventually(lambda: consumer.positions == {0: 3}, bool, within=5, what=WHAT)
        revoking = asyncio.create_task(intake.on_partitions_revoked([TopicPartition(TOPIC, 0)]))
        flushes.release.set()
        await revoking
        assert commits_at_revocation == [[{0: 1}]]  # it waited for the flush in flight, and its commit
        await intake.on_partitions_assigned([TopicPartition(TOPIC, 0)])
        # what was read before the rebalance is read again, from the committed offset, and
        # written only then
        await eventually(lambda: len(consumer.commits) == 2, bool, within=5, what=WHAT)
        assert (0, 1) in consumer.seeks
        assert flushes.batches == [[(0, 0)], [(0, 1), (0, 2)]]
    finally:
        running.cancel()


async def test_a_full_batch_waits_for_the_writer_and_reads_no_more() -> None:
    consumer, flushes = StandInConsumer(), HeldFlushes()
    intake = _intake(flushes, batch_size=4)
    consumer.append(0, 2)
    running = asyncio.create_task(intake.run(consumer))
    try:
        await eventually(lambda: len(flushes.batches) == 1, bool, within=5, what=WHAT)
        consumer.append(0, 10)
        await eventually(lambda: consumer.positions == {0: 6}, bool, within=5, what=WHAT)
        flushes.release.set()
        caught_up = lambda: consumer.positions == {0: 12} and len(consumer.commits) == 4  # noqa: E731
        await eventually(caught_up, bool, within=5, what=WHAT)
        assert [len(batch) for batch in flushes.batches] == [2, 4, 4, 2]
    finally:
        running.cancel()


async def test_a_flush_that_lost_ownership_is_not_committed_and_nothing_is_written_until_reassigned() -> None:
    consumer, flushes = StandInConsumer(), HeldFlushes()
    intake = _intake(flushes)
    consumer.append(0, 2)
    flushes.fenced = True
    running = asyncio.create_task(intake.run(consumer))
    try:
        await eventually(lambda: len(flushes.batches) == 1, bool, within=5, what=WHAT)
        consumer.append(0, 2)
        flushes.release.set()
        await eventually(lambda: (0, 0) in consumer.seeks, bool, within=5, what=WHAT)
        # read again and again while fenced, but never handed to the writer
        await eventually(lambda: consumer.seeks.count((0, 0)) >= 3, bool, within=5, what=WHAT)
        assert flushes.batches == [[(0, 0), (0, 1)]]
        assert consumer.commits == []
        # the group assigns again: the records are written from the first unwritten one
        flushes.fenced = False
        await intake.on_partitions_revoked([TopicPartition(TOPIC, 0)])
        await intake.on_partitions_assigned([TopicPartition(TOPIC, 0)])
        await eventually(lambda: consumer.commits == [{0: 4}], bool, within=5, what=WHAT)
        assert flushes.batches[1:] == [[(0, 0), (0, 1), (0, 2), (0, 3)]]
    finally:
        running.cancel()


async def test_a_flush_fenced_under_an_assignment_the_group_has_left_does_not_fence_the_next_one() -> None:
    """The loop may learn that a flush lost ownership only after the group has moved on (it was
    in a read's back-off, say, or on the CPU): the assignment that lost it is the flush's, not
    the one current when the loop looks."""
    consumer, flushes = StandInConsumer(), HeldFlushes()
    # no records and a long fetch wait: the loop sits in its read, waiting for the writer
    intake = _intake(flushes, wait_ms=60_000)
    consumer.append(0, 2)
    flushes.fenced = True
    running = asyncio.create_task(intake.run(consumer))
    try:
        await eventually(lambda: len(flushes.batches) == 1, bool, within=5, what=WHAT)
        partitions = [TopicPartition(TOPIC, 0)]
        flushes.release.set()
        # the flush in flight ends fenced and wakes both the loop and the revocation; the
        # revocation (and the assignment after it) runs before the loop looks at the result
        await intake.on_partitions_revoked(partitions)
        flushes.fenced = False
        await intake.on_partitions_assigned(partitions)
        await eventually(lambda: consumer.commits == [{0: 2}], bool, within=5, what=WHAT)
        assert flushes.batches == [[(0, 0), (0, 1)], [(0, 0), (0, 1)]]
    finally:
        running.cancel()


async def test_a_retry_sent_back_to_read_further_is_read_on_past_the_batch_size_and_goes_again() -> None:
    consumer, flushes = StandInConsumer(), HeldFlushes()
    committed: list[dict[int, int]] = []
    intake = _intake(flushes, committed, batch_size=3)
    consumer.append(1, 6)  # counted up to offset 4 by the failed flush, its leader away for now
    consumer.away = {1}
    consumer.append(0, 3)
    flushes.further = [{1: 4}]
    flushes.release.set()
    running = asyncio.create_task(intake.run(consumer))
    try:
        await eventually(lambda: len(flushes.batches) == 1, bool, within=5, what=WHAT)
        consumer.append(0, 2)
        consumer.away = set()
        consumer.arrived.set()
        await eventually(lambda: len(consumer.commits) >= 1, bool, within=5, what=WHAT)
        retried = flushes.batches[1]
        # the batch sent back, then everything read after it, until partition 1 reached offset 4
        assert retried[:3] == [(0, 0), (0, 1), (0, 2)]
        assert {(1, offset) for offset in range(5)} <= set(retried)
        assert len(retried) > 3
        assert consumer.seeks == []  # kept, not read again
        assert flushes.read_through[1] == {}
        assert consumer.commits[0] == {p: max(o for q, o in retried if q == p) + 1 for p, _ in retried}
    finally:
        running.cancel()


async def test_a_partition_read_and_written_before_the_retry_is_named_read_through() -> None:
    consumer, flushes = StandInConsumer(), HeldFlushes()
    intake = _intake(flushes)
    consumer.append(1, 2)
    consumer.positions[1] = 2  # committed: the intake does not read it again
    consumer.append(0, 2)
    flushes.further = [{1: 1}]
    flushes.release.set()
    running = asyncio.create_task(intake.run(consumer))
    try:
        await eventually(lambda: consumer.commits == [{0: 2}], bool, within=5, what=WHAT)
        assert flushes.batches == [[(0, 0), (0, 1)], [(0, 0), (0, 1)]]
        assert flushes.read_through == [{}, {1: 1}]
    finally:
        running.cancel()


async def test_reading_on_reads_only_the_partitions_still_short_of_their_offset() -> None:
    # partition 1's leader is away and partition 2 has plenty to read: the retry waits for partition
    # 1 alone, so the batch does not grow with partition 2 meanwhile (it stays bounded)
    consumer, flushes = StandInConsumer(), HeldFlushes()
    intake = _intake(flushes, batch_size=3, wait_ms=20)
    consumer.append(1, 6)
    consumer.away = {1}
    consumer.append(0, 3)
    consumer.append(2, 0)
    flushes.further = [{1: 4}]
    flushes.release.set()
    running = asyncio.create_task(intake.run(consumer))
    try:
        await eventually(lambda: len(flushes.batches) == 1, bool, within=5, what=WHAT)
        consumer.append(2, 50)
        asked = len(consumer.asked)
        await eventually(lambda: len(consumer.asked) >= asked + 5, bool, within=5, what="rounds of reading on")
        assert consumer.asked[-5:] == [{1}] * 5
        assert consumer.positions == {0: 3, 1: 0, 2: 0}
        assert len(flushes.batches) == 1
        consumer.away = set()
        consumer.arrived.set()
        await eventually(lambda: len(consumer.commits) >= 1, bool, within=5, what=WHAT)
        assert flushes.batches[1] == [(0, 0), (0, 1), (0, 2), *[(1, offset) for offset in range(6)]]
        await eventually(lambda: consumer.positions[2] == 50, bool, within=5, what=WHAT)  # then as usual
    finally:
        running.cancel()


async def test_a_partition_whose_log_ends_before_the_offset_asked_for_is_not_waited_for() -> None:
    # the topic was recreated: partition 1 ends at offset 2, below the totals' watermark 7 that
    # the writer asks for; those records will never come, and the intake does not wait for them
    consumer, flushes = StandInConsumer(), HeldFlushes()
    intake = _intake(flushes)
    consumer.append(1, 2)
    consumer.positions[1] = 2  # committed
    consumer.append(0, 2)
    flushes.further = [{1: 7}]
    flushes.release.set()
    running = asyncio.create_task(intake.run(consumer))
    try:
        await eventually(lambda: consumer.commits == [{0: 2}], bool, within=5, what=WHAT)
        assert flushes.batches == [[(0, 0), (0, 1)], [(0, 0), (0, 1)]]
        assert flushes.read_through == [{}, {1: 7}]
    finally:
        running.cancel()


async def test_a_partition_revoked_while_its_position_is_asked_for_does_not_stop_the_intake() -> None:
    consumer, flushes = StandInConsumer(), HeldFlushes()
    intake = _intake(flushes)
    consumer.append(1, 2)
    consumer.positions[1] = 2
    consumer.append(0, 2)
    consumer.unassigned_once = {1}
    flushes.further = [{1: 1}]
    flushes.release.set()
    running = asyncio.create_task(intake.run(consumer))
    try:
        # aiokafka raised for the partition; the next round asks again (here it is still assigned)
        await eventually(lambda: consumer.commits == [{0: 2}], bool, within=5, what=WHAT)
        assert not running.done()
        assert flushes.read_through == [{}, {1: 1}]
    finally:
        running.cancel()


async def test_the_partitions_a_retry_waits_for_are_told_until_each_is_read_through() -> None:
    consumer, flushes = StandInConsumer(), HeldFlushes()
    intake = _intake(flushes)
    consumer.append(1, 6)
    consumer.away = {1}  # partition 1's leader is away: the retry waits for it
    consumer.append(2, 3)
    consumer.append(0, 3)
    flushes.further = [{1: 4, 2: 1}]
    running = asyncio.create_task(intake.run(consumer))
    try:
        await eventually(lambda: len(flushes.batches) == 1, bool, within=5, what=WHAT)
        assert intake.awaited == {}  # handed over: nothing waited for yet
        flushes.release.set()
        # partition 2 is read through offset 1 at once; partition 1 is waited for
        awaited = await eventually(lambda: intake.awaited, lambda a: a == {1: 4}, within=5, what="partition 1 alone")
        assert awaited == {1: 4}
        assert consumer.commits == []
        consumer.away = set()
        consumer.arrived.set()
        await eventually(lambda: len(consumer.commits) >= 1, bool, within=5, what=WHAT)
        assert intake.awaited == {}
    finally:
        running.cancel()


async def test_a_batch_sent_back_to_read_further_has_its_wait_observed_once_when_written(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    consumer, flushes = StandInConsumer(), HeldFlushes()
    waits: list[float] = []
    intake = _intake(flushes, waited=waits.append)
    clock = [time.time() + 1]  # the intake's clock: its records are a second old when first handed over
    monkeypatch.setattr(intake_module, "time", SimpleNamespace(time=lambda: clock[0]))
    consumer.append(1, 6)
    consumer.away = {1}
    consumer.append(0, 3)
    flushes.further = [{1: 4}]
    flushes.release.set()
    running = asyncio.create_task(intake.run(consumer))
    try:
        await eventually(lambda: intake.awaited, bool, within=5, what="the batch sent back")
        clock[0] += 60  # the partition's leader comes back a minute later
        consumer.away = set()
        consumer.arrived.set()
        await eventually(lambda: len(consumer.commits) >= 1, bool, within=5, what=WHAT)
        assert len(flushes.batches) == 2  # handed over twice, its records waited once: a minute more
        assert len(waits) == 1
        assert 60 < waits[0] < 65
    finally:
        running.cancel()


async def test_a_failed_read_backs_off_only_until_the_flush_in_flight_ends() -> None:
    consumer, flushes = StandInConsumer(), HeldFlushes()
    intake = _intake(flushes, retry_backoff_s=60)
    consumer.append(0, 3)
    running = asyncio.create_task(intake.run(consumer))
    try:
        await eventually(lambda: len(flushes.batches) == 1, bool, within=5, what=WHAT)
        consumer.append(0, 2)
        await eventually(lambda: consumer.positions == {0: 5}, bool, within=5, what="the next batch read")
        # the broker refuses the next fetches: the loop backs off with the next batch in hand
        consumer.failing = True
        await eventually(lambda: consumer.failures, bool, within=5, what="a fetch refused")
        flushes.release.set()
        # the flush in flight ends: the next batch goes now, not after the back-off
        await eventually(lambda: len(flushes.batches) == 2, bool, within=5, what="the next batch handed over")
        assert flushes.batches[1] == [(0, 3), (0, 4)]
        await eventually(lambda: len(consumer.commits) == 2, bool, within=5, what=WHAT)
    finally:
        running.cancel()
