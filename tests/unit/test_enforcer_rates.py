"""The enforcer's rate-limit verdicts: blocked exactly while the sliding minute holds the limit,
until the instant it admits again, under keys of their own so a budget block and a rate-limit
block of one scope never lift each other."""

from datetime import UTC, datetime
from decimal import Decimal
from typing import cast

import pytest

from spendpipe.contracts.budgets import validate_budget
from spendpipe.contracts.rate_limits import RateLimit
from spendpipe.contracts.scopes import Scope, ScopeType
from spendpipe.enforcer.enforcer import Enforcer
from spendpipe.enforcer.rate_reader import RateReader, RateUsage
from spendpipe.enforcer.rate_verdict import judge_rate
from spendpipe.enforcer.targets import BudgetBook, Target
from spendpipe.store.totals import Measurement, SpendTotals

NOW = datetime(2026, 11, 28, 13, tzinfo=UTC).timestamp()
ENG = Scope(ScopeType.TEAM, "eng")
LIMIT = RateLimit("team:eng", "", 10, 1000, "total")


def test_under_every_limit_is_not_blocked() -> None:
    assert not judge_rate(LIMIT, RateUsage(9, 999, None, None)).blocked


def test_at_the_rpm_limit_blocked_until_the_window_admits_again() -> None:
    verdict = judge_rate(LIMIT, RateUsage(10, 50, NOW + 12.5, None))

    assert verdict.blocked
    assert (verdict.kind, verdict.rate_limit_type, verdict.window) == ("rate_limit", "requests", "1m")
    assert (verdict.spend, verdict.cap, verdict.expires_at) == (Decimal(10), Decimal(10), NOW + 12.5)
    assert "team:eng: 10 requests in the last 60s, rpm_limit 10 per sliding minute" in verdict.reason


def test_both_limits_exceeded_block_until_the_later_frees() -> None:
    verdict = judge_rate(LIMIT, RateUsage(12, 1500, NOW + 5, NOW + 40))

    assert (verdict.rate_limit_type, verdict.expires_at) == ("tokens", NOW + 40)
    assert "1500 total tokens in the last 60s, tpm_limit 1000" in verdict.reason


class Spends:
    def __init__(self) -> None:
        self.spend = Decimal(0)

    def measure(self, target: Target, now: int) -> list[Measurement]:
        return [
            Measurement(cap, self.spend, cap.duration.bounds(now)[1] if cap.duration else None) for cap in target.caps
        ]

    def measure_many(self, targets: list[Target], now: int) -> list[list[Measurement]]:
        return [self.measure(target, now) for target in targets]


class Rates:
    def __init__(self) -> None:
        self.usage = RateUsage(0, 0, None, None)

    def measure(self, limit: RateLimit, now: float) -> RateUsage:
        return self.usage


def test_a_rate_limit_block_and_a_budget_block_are_separate_decisions() -> None:
    book = BudgetBook()
    book.put(validate_budget({"scope": "team:eng", "max_budget": 1, "budget_duration": "24h", "rpm_limit": 10}))
    spends, rates = Spends(), Rates()
    enforcer = Enforcer(book=book, reader=cast(SpendTotals, spends), rates=cast(RateReader, rates), clock=lambda: NOW)
    spends.spend, rates.usage = Decimal(2), RateUsage(10, 0, NOW + 30, None)

    blocks = enforcer.evaluate_scopes([ENG])
    assert sorted((d.key, d.kind) for d in blocks) == [("rate_limit|team:eng", "rate_limit"), ("team:eng", "budget")]

    # the window admits again: only the rate-limit block lifts, and reconciling keeps it judged, not orphaned
    rates.usage = RateUsage(3, 0, None, None)
    lifted = enforcer.evaluate_scopes([ENG])
    assert [(d.key, d.blocked) for d in lifted] == [("rate_limit|team:eng", False)]
    assert [d.key for d in enforcer.blocks()] == ["team:eng"]
    assert enforcer.reconcile() == []


def test_a_rate_limit_block_lifts_when_its_limit_is_removed() -> None:
    book = BudgetBook()
    book.put(validate_budget({"scope": "team:eng", "rpm_limit": 10}))
    rates = Rates()
    enforcer = Enforcer(book=book, reader=cast(SpendTotals, Spends()), rates=cast(RateReader, rates), clock=lambda: NOW)
    rates.usage = RateUsage(10, 0, NOW + 30, None)
    assert [d.blocked for d in enforcer.evaluate_scopes([ENG])] == [True]

    book.put(validate_budget({"scope": "team:eng", "max_budget": 100}))

    assert [(d.key, d.blocked) for d in enforcer.reconcile()] == [("rate_limit|team:eng", False)]


class FailingRates(Rates):
    """The rate limits' query fails: ClickHouse went away after the budgets' spend was read."""

    def __init__(self) -> None:
        super().__init__()
        self.failing = True

    def measure(self, limit: RateLimit, now: float) -> RateUsage:
        if self.failing:
            raise ConnectionError("ClickHouse went away")
        return super().measure(limit, now)


def test_a_decision_made_before_its_judgement_raised_is_handed_over_once() -> None:
    book = BudgetBook()
    book.put(validate_budget({"scope": "team:eng", "max_budget": 1, "budget_duration": "24h", "rpm_limit": 10}))
    spends, rates = Spends(), FailingRates()
    enforcer = Enforcer(book=book, reader=cast(SpendTotals, spends), rates=cast(RateReader, rates), clock=lambda: NOW)
    spends.spend = Decimal(2)

    # the budget's block is decided, then the rate limit's query raises: the caller gets no decision
    with pytest.raises(ConnectionError):
        enforcer.judge_scopes([ENG])
    [block] = enforcer.blocks()
    assert block.key == "team:eng"
    # so the enforcer hands it over for publishing, once
    assert enforcer.take_unsent() == {"team:eng"}
    assert enforcer.take_unsent() == set()

    # a judgement that returns hands its decisions to its caller, not over again
    rates.failing = False
    spends.spend = Decimal(0)
    book.put(validate_budget({"scope": "team:eng", "max_budget": 5, "budget_duration": "24h", "rpm_limit": 10}))
    assert [(d.key, d.blocked) for d in enforcer.reconcile()] == [("team:eng", False)]
    assert enforcer.take_unsent() == set()
