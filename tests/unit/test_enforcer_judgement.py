"""After a flush the enforcer reads each scope's spend once: the decision's measurements are passed
on to the soft-budget and burn-rate alerts, which then read only the burn rate's recent spend."""

from decimal import Decimal
from typing import cast

from spendpipe.contracts.budgets import validate_budget
from spendpipe.contracts.scopes import Scope, ScopeType
from spendpipe.enforcer.enforcer import Enforcer
from spendpipe.enforcer.rate_reader import RateReader
from spendpipe.enforcer.targets import BudgetBook, Target
from spendpipe.store.totals import Measurement, SpendTotals
from tests.unit.test_enforcer_state import FakeClock, FakeReader, at

ENG = Scope(ScopeType.TEAM, "eng")
NO_BUDGET = [Scope(ScopeType.TEAM, "other"), Scope(ScopeType.KEY, "0" * 64), Scope(ScopeType.END_USER, "c-1")]
BUDGET = {
    "scope": "team:eng",
    "max_budget": 10,
    "soft_budget": 4,
    "budget_duration": "24h",
    "model_max_budget": {"gpt-4o": {"max_budget": "4", "budget_duration": "1d"}},
}


class CountingReader(FakeReader):
    """Counts the queries the enforcer makes, and how many targets each one reads."""

    def __init__(self) -> None:
        super().__init__()
        self.queries: list[tuple[str, int]] = []

    def measure_many(self, targets: list[Target], now: int) -> list[list[Measurement]]:
        self.queries.append(("measure_many", len(targets)))
        return super().measure_many(targets, now)

    def spent_since(self, targets: list[Target], since: int) -> list[Decimal]:
        self.queries.append(("spent_since", len(targets)))
        return super().spent_since(targets, since)


def counting_setup(*budgets: dict[str, object]) -> tuple[Enforcer, CountingReader]:
    book = BudgetBook()
    for budget in budgets:
        book.put(validate_budget(budget))
    reader = CountingReader()
    rates = cast(RateReader, object())  # no rate limits: never asked
    return Enforcer(book=book, reader=cast(SpendTotals, reader), rates=rates, clock=FakeClock(at(28, 13))), reader


def spends(reader: FakeReader) -> None:
    reader.spends["team:eng"], reader.recent["team:eng"] = Decimal(5), Decimal("0.5")  # soft reached, burning
    reader.spends["team:eng|gpt-4o"], reader.recent["team:eng|gpt-4o"] = Decimal(1), Decimal(1)


def test_a_flush_measures_once_and_its_alerts_read_only_the_recent_spend() -> None:
    enforcer, reader = counting_setup(BUDGET)
    spends(reader)

    judged = enforcer.judge_scopes([ENG, *NO_BUDGET])
    soft, burn = enforcer.alerts_after(judged)

    # two caps and the soft budget in one read; the recent spend of the two burnable targets in another
    assert reader.queries == [("measure_many", 3), ("spent_since", 2)]
    assert judged.decisions == []
    # the same alerts as measuring anew for each kind
    again, fresh = counting_setup(BUDGET)
    spends(fresh)
    assert [a.key for a in soft] == [a.key for a in again.soft_budget_alerts([ENG])]
    assert [a.key for a in burn] == [a.key for a in again.burn_rate_alerts([ENG])]
    assert len(soft) == 1
    assert len(burn) == 2


def test_scopes_without_budgets_cost_no_read_and_lifetime_caps_no_burn_rate_read() -> None:
    enforcer, reader = counting_setup({"scope": "team:eng", "max_budget": 10})  # a lifetime cap
    reader.spends["team:eng"], reader.recent["team:eng"] = Decimal(5), Decimal(5)  # not blocked: could burn

    judged = enforcer.judge_scopes([ENG, *NO_BUDGET])
    assert judged.decisions == []
    assert enforcer.alerts_after(judged) == ([], [])

    assert reader.queries == [("measure_many", 1)]
