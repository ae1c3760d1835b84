"""Versioned budget records (`contracts/budgets.LatestBudgets`): what a reader of `spend.budgets`
applies, what it refuses as a replay, and what it passes over when it reads the topic again."""

from decimal import Decimal

from spendpipe.contracts.budgets import Budget, BudgetChange, BudgetDeletion, LatestBudgets, VersionClock

SCOPE = "team:eng"


def budget(cap: str, version: int | None) -> bytes:
    return Budget(scope=SCOPE, max_budget=Decimal(cap), version=version).model_dump_json(exclude_none=True).encode()


def deletion(version: int) -> bytes:
    return BudgetDeletion(scope=SCOPE, version=version, deleted=True).model_dump_json().encode()


class Topic:
    """One scope's records in offset order, as a reader meets them."""

    def __init__(self) -> None:
        self.records: list[bytes | None] = []

    def write(self, value: bytes | None) -> int:
        self.records.append(value)
        return len(self.records) - 1


def offer(latest: LatestBudgets, topic: Topic, value: bytes | None) -> Decimal | str | None:
    """Write `value` and have the reader read it: the cap it applies, `deleted`, a refusal, or None."""
    change = latest.offer(SCOPE.encode(), value, (0, topic.write(value)))
    if not isinstance(change, BudgetChange):
        return change
    return "deleted" if change.budget is None else change.budget.max_budget


def test_a_replayed_older_budget_or_deletion_is_stale() -> None:
    latest, topic = LatestBudgets(), Topic()

    assert offer(latest, topic, budget("10", 5)) == Decimal(10)
    assert offer(latest, topic, budget("1", 9)) == Decimal(1)
    assert offer(latest, topic, budget("10", 5)) == "stale"  # the older cap, written again
    assert offer(latest, topic, deletion(8)) == "stale"
    assert offer(latest, topic, budget("1", 9)) is None  # the record in force, written again: no change
    assert offer(latest, topic, deletion(12)) == "deleted"
    assert offer(latest, topic, budget("1", 9)) == "stale"  # deleted stays deleted
    assert offer(latest, topic, budget("3", 13)) == Decimal(3)


def test_a_reader_that_reads_the_topic_again_changes_and_refuses_nothing() -> None:
    latest, topic = LatestBudgets(), Topic()
    for value in (budget("10", 5), budget("1", 9), deletion(12), budget("3", 13)):
        offer(latest, topic, value)

    again = [latest.offer(SCOPE.encode(), value, (0, offset)) for offset, value in enumerate(topic.records)]

    assert again == [None, None, None, None]


def test_an_older_budget_replayed_in_another_partition_is_stale_whichever_partition_is_read_first() -> None:
    """The newer record sits at offset 5 of partition 1; a replay of the older one was written at
    offset 2000 of partition 0. A reader that starts cold may read either partition first."""
    older, newer = budget("1000", 1_000), budget("10", 2_000)
    for first, then in (((1, 5), newer), ((0, 2000), older)), (((0, 2000), older), ((1, 5), newer)):
        latest = LatestBudgets()
        for position, value in (first, then):
            latest.offer(SCOPE.encode(), value, position)

        assert latest.offer(SCOPE.encode(), older, (0, 2001)) == "stale"  # the newer cap is in force
        assert latest.offer(SCOPE.encode(), newer, (1, 5)) is None  # read before


def test_records_from_before_versions_apply_in_order_until_the_first_versioned_one() -> None:
    latest, topic = LatestBudgets(), Topic()

    assert offer(latest, topic, budget("10", None)) == Decimal(10)
    assert offer(latest, topic, budget("20", None)) == Decimal(20)
    assert offer(latest, topic, None) == "deleted"  # a tombstone of those days
    assert offer(latest, topic, budget("30", None)) == Decimal(30)
    assert offer(latest, topic, budget("1", 4)) == Decimal(1)
    assert offer(latest, topic, budget("30", None)) == "stale"
    assert offer(latest, topic, None) == "stale"  # a tombstone carries no version: never newer


def test_a_record_under_another_scope_s_key_or_not_a_budget_is_unreadable() -> None:
    latest, topic = LatestBudgets(), Topic()

    assert latest.offer(b"team:other", budget("10", 5), (0, topic.write(None))) == "unreadable"
    assert offer(latest, topic, b'{"scope": "team:eng", "version": 5}') == "unreadable"
    assert offer(latest, topic, b"not json") == "unreadable"
    assert offer(latest, topic, budget("10", 1)) == Decimal(10)  # none of them counted


def test_a_writer_s_versions_always_rise() -> None:
    clock = VersionClock()
    versions = [clock.next() for _ in range(1000)]

    assert versions == sorted(set(versions))
