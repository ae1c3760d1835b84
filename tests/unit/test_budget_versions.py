"""Versioned budget records (`contracts/budgets.LatestBudgets`): what a reader of `spend.budgets`
applies, and what it ignores as stale, whatever order records arrive in."""

from decimal import Decimal

from spendpipe.contracts.budgets import Budget, BudgetChange, BudgetDeletion, LatestBudgets, VersionClock

SCOPE = "team:eng"


def budget(cap: str, version: int | None) -> bytes:
    return Budget(scope=SCOPE, max_budget=Decimal(cap), version=version).model_dump_json(exclude_none=True).encode()


def deletion(version: int) -> bytes:
    return BudgetDeletion(scope=SCOPE, version=version, deleted=True).model_dump_json().encode()


def cap_of(change: BudgetChange | str) -> Decimal | str | None:
    if isinstance(change, str):
        return change
    return None if change.budget is None else change.budget.max_budget


def test_a_replayed_older_budget_or_deletion_is_stale() -> None:
    latest = LatestBudgets()

    assert cap_of(latest.offer(SCOPE.encode(), budget("10", 5))) == Decimal(10)
    assert cap_of(latest.offer(SCOPE.encode(), budget("1", 9))) == Decimal(1)
    assert latest.offer(SCOPE.encode(), budget("10", 5)) == "stale"  # the older cap, written again
    assert latest.offer(SCOPE.encode(), deletion(8)) == "stale"
    assert latest.offer(SCOPE.encode(), budget("1", 9)) == "stale"  # the same record read again
    assert cap_of(latest.offer(SCOPE.encode(), deletion(12))) is None
    assert latest.offer(SCOPE.encode(), budget("1", 9)) == "stale"  # deleted stays deleted
    assert cap_of(latest.offer(SCOPE.encode(), budget("3", 13))) == Decimal(3)


def test_records_from_before_versions_apply_in_order_until_the_first_versioned_one() -> None:
    latest = LatestBudgets()

    assert cap_of(latest.offer(SCOPE.encode(), budget("10", None))) == Decimal(10)
    assert cap_of(latest.offer(SCOPE.encode(), budget("20", None))) == Decimal(20)
    assert cap_of(latest.offer(SCOPE.encode(), None)) is None  # a tombstone of those days
    assert cap_of(latest.offer(SCOPE.encode(), budget("30", None))) == Decimal(30)
    assert cap_of(latest.offer(SCOPE.encode(), budget("1", 4))) == Decimal(1)
    assert latest.offer(SCOPE.encode(), budget("30", None)) == "stale"
    assert latest.offer(SCOPE.encode(), None) == "stale"  # a tombstone carries no version: never newer


def test_a_record_under_another_scope_s_key_or_not_a_budget_is_unreadable() -> None:
    latest = LatestBudgets()

    assert latest.offer(b"team:other", budget("10", 5)) == "unreadable"
    assert latest.offer(SCOPE.encode(), b'{"scope": "team:eng", "version": 5}') == "unreadable"
    assert latest.offer(SCOPE.encode(), b"not json") == "unreadable"
    assert cap_of(latest.offer(SCOPE.encode(), budget("10", 1))) == Decimal(10)  # none of them counted


def test_a_writer_s_versions_always_rise() -> None:
    clock = VersionClock()
    versions = [clock.next() for _ in range(1000)]

    assert versions == sorted(set(versions))
