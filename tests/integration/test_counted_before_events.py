"""A flush whose totals landed but whose events did not (the copy into `events` failed, the
process died between the inserts, or the read after the totals failed) is read again, with a
copy of one of its events that arrived meanwhile (a gateway resend) beside it, on any
partition. The totals count the event once, the copy is the duplicate (dead-lettered when its
content differs), never the record the totals counted; and the events the totals hold are
counted once in the outcomes (`events_counted`)."""

from decimal import Decimal
from typing import Any

import pytest

from spendpipe.aggregator.offsets import PartitionOffsets, ReadFurtherError
from spendpipe.aggregator.store import SpendStore
from spendpipe.aggregator.writer import BatchWriter, FlushOutcome, SourceRecord
from spendpipe.contracts.events import SpendEvent
from spendpipe.contracts.windows import Window
from spendpipe.platform.clickhouse import ClickhouseStore
from tests.conftest import ParseRoute, on_every_engine
from tests.support.events import expected_spend, make_event
from tests.support.pipeline import counted_events, totals

pytestmark = on_every_engine

TOPIC = "spend.events"


class FailsOnce(SpendStore):
    """`step` (a `SpendStore` method the writer calls after the totals insert) raises the first
    `times` calls, after doing its work when `after_work` (a reply lost on the way back)."""

    def __init__(self, *, step: str, times: int = 1, after_work: bool = False, **arguments: Any) -> None:
        super().__init__(**arguments)
        self.failures: list[str] = []
        original = getattr(self, step)

        def failing(**kwargs: Any) -> Any:
            if len(self.failures) >= times:
                return original(**kwargs)
            if after_work:
                original(**kwargs)
            self.failures.append(f"{step} failed after the totals insert")
            raise RuntimeError(self.failures[-1])

        setattr(self, step, failing)


def writer(store: SpendStore, route: ParseRoute) -> BatchWriter:
    return BatchWriter(store=store, topic=TOPIC, dedup_horizon_s=600, **route)


def fresh_writer(clickhouse: ClickhouseStore, route: ParseRoute) -> BatchWriter:
    """A restarted aggregator."""
    return writer(SpendStore(clickhouse=clickhouse), route)


def record(partition: int, offset: int, event: SpendEvent) -> SourceRecord:
    return SourceRecord(partition, offset, event.to_json(), key=f"key-{partition}-{offset}".encode())


def stored_copies(clickhouse: ClickhouseStore, event: SpendEvent) -> list[tuple[int, int, Decimal]]:
    """(partition, offset, cost) of each row of `events` with the event's id."""
    rows = clickhouse.rows(
        "SELECT kafka_partition, kafka_offset, toString(cost) FROM events WHERE event_id = {id:UUID} "
        "ORDER BY kafka_partition, kafka_offset",
        {"id": event.event_id},
    )
    return [(int(p), int(o), Decimal(cost)) for p, o, cost in rows]


def letters(outcome: FlushOutcome) -> list[tuple[int, int, bytes | None, str]]:
    return [(d.record.partition, d.record.offset, d.record.key, d.reason) for d in outcome.dead_letters]


@pytest.mark.parametrize("how", ["same writer", "restarted"])
@pytest.mark.parametrize("copy_partition", [0, 2])
def test_a_copy_of_an_event_the_totals_hold_is_a_duplicate_on_any_partition(
    clickhouse: ClickhouseStore, parse_route: ParseRoute, how: str, copy_partition: int
) -> None:
    original = make_event()
    store = FailsOnce(step="insert_events", clickhouse=clickhouse)
    failing = writer(store, parse_route)
    handed: list[FlushOutcome] = []
    with pytest.raises(RuntimeError):
        failing.write([record(1, 5, original)], durable=handed.append)
    assert store.failures
    assert [outcome.counted for outcome in handed] == [1]
    failing.forget_state()  # what `Aggregator._flush` does when a flush fails

    # read again from the uncommitted offset, with a resend of the event that came meanwhile
    retry = failing if how == "same writer" else fresh_writer(clickhouse, parse_route)
    batch = [record(copy_partition, 3, original.model_copy()), record(1, 5, original)]
    outcome = retry.write(sorted(batch, key=lambda r: (r.partition, r.offset)), durable=handed.append)

    assert (outcome.counted, outcome.duplicates, outcome.replayed, outcome.dead_letters) == (0, 1, 1, [])
    assert [o.counted for o in handed] == [1, 0]
    assert totals(clickhouse, "day") == expected_spend([original], Window.DAY)
    assert totals(clickhouse, "minute") == expected_spend([original], Window.MINUTE)
    assert stored_copies(clickhouse, original) == [(1, 5, original.cost)]

    # and the copy read again in a later batch, after the commit: still a duplicate
    later = fresh_writer(clickhouse, parse_route).write([record(copy_partition, 4, original.model_copy())])
    assert (later.counted, later.duplicates) == (0, 1)
    assert totals(clickhouse, "day") == expected_spend([original], Window.DAY)


@pytest.mark.parametrize("how", ["same writer", "restarted"])
def test_a_conflicting_copy_on_a_lower_partition_is_dead_lettered_and_the_counted_one_stays(
    clickhouse: ClickhouseStore, parse_route: ParseRoute, how: str
) -> None:
    original = make_event()
    other = original.model_copy(update={"cost": original.cost * 2})
    store = FailsOnce(step="insert_events", clickhouse=clickhouse)
    failing = writer(store, parse_route)
    with pytest.raises(RuntimeError):
        failing.write([record(1, 5, original)])
    failing.forget_state()

    retry = failing if how == "same writer" else fresh_writer(clickhouse, parse_route)
    outcome = retry.write([record(0, 3, other), record(1, 5, original)])

    assert (outcome.counted, outcome.duplicates, outcome.replayed) == (0, 0, 1)
    assert letters(outcome) == [
        (
            0,
            3,
            b"key-0-3",
            f"conflicting duplicate: event_id '{original.event_id}' was counted from partition 1 offset 5 "
            "with other content (time, attribution, model, cost, tokens or status)",
        )
    ]
    assert totals(clickhouse, "day") == expected_spend([original], Window.DAY)
    assert stored_copies(clickhouse, original) == [(1, 5, original.cost)]


def test_a_retry_that_fails_after_its_totals_too_still_keeps_the_counted_copy(
    clickhouse: ClickhouseStore, parse_route: ParseRoute
) -> None:
    # Two attempts in a row land their totals and not their events. The third sees both records
    # of the id at or below the watermarks: it must not take the copy, dropped by the second
    # attempt, for the counted one because it comes first by partition.
    original, bystander = make_event(), make_event()
    other = original.model_copy(update={"cost": original.cost * 2})
    failing = writer(FailsOnce(step="insert_events", times=2, clickhouse=clickhouse), parse_route)
    with pytest.raises(RuntimeError):
        failing.write([record(1, 5, original)])
    failing.forget_state()
    with pytest.raises(RuntimeError):
        failing.write([record(0, 3, other), record(0, 4, bystander), record(1, 5, original)])
    failing.forget_state()

    outcome = fresh_writer(clickhouse, parse_route).write(
        [record(0, 3, other), record(0, 4, bystander), record(1, 5, original)]
    )

    assert [(partition, offset) for partition, offset, _, _ in letters(outcome)] == [(0, 3)]
    assert totals(clickhouse, "day") == expected_spend([original, bystander], Window.DAY)
    assert stored_copies(clickhouse, original) == [(1, 5, original.cost)]
    assert counted_events(clickhouse) == 2


@pytest.mark.parametrize("step", ["written", "insert_events"])
def test_events_in_the_totals_are_counted_once_when_the_flush_failed_after_its_totals(
    clickhouse: ClickhouseStore, parse_route: ParseRoute, step: str
) -> None:
    # `written` fails after the totals landed (no outcome is handed over), `insert_events` after
    # the outcome was handed over: either way the handed-over outcomes count each event once
    events = [make_event() for _ in range(5)]
    batch = [record(i % 2, 10 + i, event) for i, event in enumerate(events)]
    failing = writer(FailsOnce(step=step, clickhouse=clickhouse), parse_route)
    handed: list[FlushOutcome] = []
    with pytest.raises(RuntimeError):
        failing.write(batch, durable=handed.append)
    failing.forget_state()

    more = [make_event() for _ in range(3)]
    retried = batch + [record(0, 20 + i, event) for i, event in enumerate(more)]
    outcome = failing.write(sorted(retried, key=lambda r: (r.partition, r.offset)), durable=handed.append)
    again = failing.write(batch, durable=handed.append)  # read again before the commit

    assert sum(o.counted for o in handed) == 8
    assert outcome.replayed == 5
    assert (again.counted, again.replayed) == (0, 5)
    assert counted_events(clickhouse) == 8
    assert totals(clickhouse, "day") == expected_spend(events + more, Window.DAY)


def test_a_reply_lost_after_the_totals_landed_is_counted_by_the_retry(
    clickhouse: ClickhouseStore, parse_route: ParseRoute
) -> None:
    # the totals insert itself raises after it landed (a connection reset on the reply)
    events = [make_event() for _ in range(4)]
    batch = [record(0, i, event) for i, event in enumerate(events)]
    failing = writer(FailsOnce(step="insert_totals", after_work=True, clickhouse=clickhouse), parse_route)
    handed: list[FlushOutcome] = []
    with pytest.raises(RuntimeError):
        failing.write(batch, durable=handed.append)
    failing.forget_state()
    outcome = failing.write(batch, durable=handed.append)

    assert (outcome.counted, outcome.replayed) == (4, 4)
    assert [o.counted for o in handed] == [4]
    assert totals(clickhouse, "day") == expected_spend(events, Window.DAY)


def test_a_revoked_partition_leaves_what_it_did_not_count(clickhouse: ClickhouseStore, parse_route: ParseRoute) -> None:
    # after a rebalance the partition's next owner may have written past this writer: a batch of
    # it read again later counts nothing that was in the totals before
    events = [make_event() for _ in range(3)]
    batch = [record(0, i, event) for i, event in enumerate(events)]
    failing = writer(FailsOnce(step="written", clickhouse=clickhouse), parse_route)
    with pytest.raises(RuntimeError):
        failing.write(batch)
    failing.revoked([0])

    outcome = failing.write(batch)

    assert (outcome.counted, outcome.replayed) == (0, 3)
    assert totals(clickhouse, "day") == expected_spend(events, Window.DAY)


@pytest.mark.parametrize("how", ["same writer", "restarted"])
def test_a_retry_cut_shorter_than_the_failed_flush_does_not_count_a_copy_of_what_it_left_out(
    clickhouse: ClickhouseStore, parse_route: ParseRoute, how: str
) -> None:
    # The failed flush counted the original from partition 0; its copy into `events` failed. The
    # retry is cut shorter: it holds partition 1 only (its records and a resend that came since),
    # none of partition 0. The resend must not be counted: the retry reads partition 0 first.
    original, bystander, later = make_event(), make_event(), make_event()
    store = FailsOnce(step="insert_events", clickhouse=clickhouse)
    failing = writer(store, parse_route)
    with pytest.raises(RuntimeError):
        failing.write([record(0, 5, original), record(1, 2, bystander)])
    assert store.failures
    failing.forget_state()

    retry = failing if how == "same writer" else fresh_writer(clickhouse, parse_route)
    short = [record(1, 2, bystander), record(1, 3, original.model_copy()), record(1, 4, later)]
    with pytest.raises(ReadFurtherError) as asked:
        retry.write(short)
    assert asked.value.needed == {0: 5}
    assert totals(clickhouse, "day") == expected_spend([original, bystander], Window.DAY)

    # the intake reads on, and hands the batch again with partition 0 up to the watermark
    outcome = retry.write([record(0, 5, original), *short])

    assert (outcome.counted, outcome.duplicates, outcome.replayed) == (1, 1, 2)
    assert totals(clickhouse, "day") == expected_spend([original, bystander, later], Window.DAY)
    assert totals(clickhouse, "minute") == expected_spend([original, bystander, later], Window.MINUTE)
    assert stored_copies(clickhouse, original) == [(0, 5, original.cost)]
    assert counted_events(clickhouse) == 3


@pytest.mark.parametrize("how", ["same writer", "restarted"])
def test_a_retry_that_counts_nothing_new_reads_what_it_left_out_before_it_copies_anything(
    clickhouse: ClickhouseStore, parse_route: ParseRoute, how: str
) -> None:
    # The failed flush counted the original from partition 0 and dead-lettered a conflicting copy
    # on partition 1; its copy into `events` failed. A retry of partition 1 alone counts nothing
    # new, but written as it is it took the copy for the counted record: `events` held it in the
    # original's place, with its cost, and it was not dead-lettered. It reads partition 0 first.
    original = make_event()
    other = original.model_copy(update={"cost": original.cost * 2})
    failing = writer(FailsOnce(step="insert_events", clickhouse=clickhouse), parse_route)
    with pytest.raises(RuntimeError):
        failing.write([record(0, 5, original), record(1, 2, other)])
    failing.forget_state()

    retry = failing if how == "same writer" else fresh_writer(clickhouse, parse_route)
    short = [record(1, 2, other)]
    with pytest.raises(ReadFurtherError) as asked:
        retry.write(short)
    assert asked.value.needed == {0: 5}
    outcome = retry.write([record(0, 5, original), *short])

    assert (outcome.counted, outcome.duplicates) == (0, 0)
    assert letters(outcome) == [
        (
            1,
            2,
            b"key-1-2",
            f"conflicting duplicate: event_id '{original.event_id}' was counted from partition 0 offset 5 "
            "with other content (time, attribution, model, cost, tokens or status)",
        )
    ]
    assert stored_copies(clickhouse, original) == [(0, 5, original.cost)]
    assert totals(clickhouse, "day") == expected_spend([original], Window.DAY)


def test_a_partition_read_through_its_watermark_before_the_batch_needs_no_more_records(
    clickhouse: ClickhouseStore, parse_route: ParseRoute
) -> None:
    # `events` holds partition 0 only up to offset 4: its last record, offset 5, was a duplicate
    # and is in no table but the totals' watermark. After a restart that looks like a gap, until
    # the intake says it read partition 0 through offset 5 before this batch (it was committed).
    first, second = make_event(), make_event()
    fresh_writer(clickhouse, parse_route).write([record(0, 4, first), record(0, 5, first.model_copy())])

    restarted = fresh_writer(clickhouse, parse_route)
    batch = [record(1, 0, second)]
    with pytest.raises(ReadFurtherError) as asked:
        restarted.write(batch)
    assert asked.value.needed == {0: 5}
    outcome = restarted.write(batch, offsets=PartitionOffsets.of(batch, read_through={0: 5}))
    assert outcome.counted == 1
    assert restarted.write([record(1, 1, make_event())]).counted == 1  # asked once only
    assert counted_events(clickhouse) == 3


def test_a_partition_another_aggregator_owns_is_left_to_it(
    clickhouse: ClickhouseStore, parse_route: ParseRoute
) -> None:
    # the totals of partition 0 are past its events, but partition 0 is another aggregator's:
    # its owner's retry reads it, this one's batches of partition 1 go as they are
    original, other = make_event(), make_event()
    failing = writer(FailsOnce(step="insert_events", clickhouse=clickhouse), parse_route)
    with pytest.raises(RuntimeError):
        failing.write([record(0, 5, original)])

    mine = fresh_writer(clickhouse, parse_route)
    mine.assigned([1])
    assert mine.write([record(1, 0, other)]).counted == 1


def test_a_partition_whose_log_ends_before_its_watermark_is_taken_as_read_through(
    clickhouse: ClickhouseStore, parse_route: ParseRoute
) -> None:
    # The flush that counted partition 0 up to offset 5 failed its copy into `events`; then the
    # topic was recreated, and partition 0 holds two records. The intake finds its log ends before
    # offset 5 and says so (`read_through`); the batch goes. Its records of partition 0, at or below
    # the old watermark, are taken for replays (docs/exactly-once.md, limits).
    original, recreated, other = make_event(), make_event(), make_event()
    failing = writer(FailsOnce(step="insert_events", clickhouse=clickhouse), parse_route)
    with pytest.raises(RuntimeError):
        failing.write([record(0, 5, original)])

    restarted = fresh_writer(clickhouse, parse_route)
    batch = [record(0, 0, recreated), record(1, 0, other)]
    with pytest.raises(ReadFurtherError) as asked:
        restarted.write(batch)
    assert asked.value.needed == {0: 5}
    outcome = restarted.write(batch, offsets=PartitionOffsets.of(batch, read_through={0: 5}))

    assert outcome.counted == 1
    assert totals(clickhouse, "day") == expected_spend([original, other], Window.DAY)
