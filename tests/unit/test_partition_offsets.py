from spendpipe.aggregator.offsets import PartitionOffsets, earliest
from spendpipe.aggregator.store import SourceRecord


def _records(partition: int, offsets: range) -> list[SourceRecord]:
    return [SourceRecord(partition=partition, offset=offset, value=b"{}") for offset in offsets]


def test_runs_added_as_fetched_give_what_one_pass_over_the_records_gives() -> None:
    fetches = [(0, _records(0, range(5, 9))), (2, _records(2, range(0, 3))), (0, _records(0, range(9, 12)))]
    kept = PartitionOffsets()
    for partition, run in fetches:
        kept.add_run(partition, run)
    kept.add_run(1, [])
    assert kept == PartitionOffsets.of(record for _, run in fetches for record in run)
    assert kept == PartitionOffsets(first={0: 5, 2: 0}, highest={0: 11, 2: 2})


def test_records_in_any_order_give_each_partitions_lowest_and_highest_offset() -> None:
    offsets = PartitionOffsets.of(_records(1, range(9, 2, -2)))
    assert offsets == PartitionOffsets(first={1: 3}, highest={1: 9})


def test_earliest_takes_each_partitions_lowest_first_offset_across_batches() -> None:
    written = PartitionOffsets(first={0: 10, 1: 4}, highest={0: 20, 1: 8})
    read_meanwhile = PartitionOffsets(first={0: 21, 2: 7}, highest={0: 30, 2: 9})
    assert earliest([written, read_meanwhile]) == {0: 10, 1: 4, 2: 7}
    assert earliest([]) == {}
