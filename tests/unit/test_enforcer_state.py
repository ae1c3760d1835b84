"""The enforcer's state: decisions only on change, versions that never go back, resets without traffic."""

from datetime import UTC, datetime
from decimal import Decimal
from typing import cast

from spendpipe.contracts.budgets import validate_budget
from spendpipe.contracts.decisions import Decision, decision_key
from spendpipe.contracts.scopes import Scope, ScopeType
from spendpipe.enforcer.enforcer import Enforcer
from spendpipe.enforcer.rate_reader import RateReader
from spendpipe.enforcer.targets import BudgetBook, Target
from spendpipe.store.totals import Measurement, SpendTotals

ENG = Scope(ScopeType.TEAM, "eng")


def at(day: int, hour: int = 0, minute: int = 0) -> float:
    return datetime(2026, 11, day, hour, minute, tzinfo=UTC).timestamp()


class FakeClock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class FakeReader:
    """Spend per decision key, the same in every window of its caps; records what it was asked."""

    def __init__(self) -> None:
        self.spends: dict[str, Decimal] = {}
        self.recent: dict[str, Decimal] = {}
        self.asked: list[tuple[str, int]] = []

    def measure(self, target: Target, now: int) -> list[Measurement]:
        key = decision_key(str(target.scope), target.model)
        self.asked.append((key, now))
        spend = self.spends.get(key, Decimal(0))
        return [Measurement(cap, spend, cap.duration.bounds(now)[1] if cap.duration else None) for cap in target.caps]

    def measure_many(self, targets: list[Target], now: int) -> list[list[Measurement]]:
        return [self.measure(target, now) for target in targets]

    def spent_since(self, targets: list[Target], since: int) -> list[Decimal]:
        """The burn rate's recent spend: `recent` per decision key (none unless set)."""
        return [self.recent.get(decision_key(str(t.scope), t.model), Decimal(0)) for t in targets]


def setup(*budgets: dict[str, object], now: float = at(28, 13)) -> tuple[Enforcer, FakeReader, FakeClock]:
    book = BudgetBook()
    for budget in budgets:
        book.put(validate_budget(budget))
    reader, clock = FakeReader(), FakeClock(now)
    rates = cast(RateReader, object())  # these budgets set no rate limits: never asked
    return Enforcer(book=book, reader=cast(SpendTotals, reader), rates=rates, clock=clock), reader, clock


DAILY_TEN = {"scope": "team:eng", "max_budget": 10, "budget_duration": "24h"}


def test_no_decision_for_a_target_never_blocked() -> None:
    enforcer, reader, _ = setup(DAILY_TEN)
    reader.spends["team:eng"] = Decimal("9.99")

    assert enforcer.evaluate_scopes([ENG]) == []
    assert enforcer.blocks() == []
    assert reader.asked == [("team:eng", int(at(28, 13)))]


def test_a_block_produces_one_decision() -> None:
    enforcer, reader, _ = setup(DAILY_TEN)
    reader.spends["team:eng"] = Decimal(10)

    decisions = enforcer.evaluate_scopes([ENG])

    assert len(decisions) == 1
    decision = decisions[0]
    assert decision.blocked
    assert decision.key == "team:eng"
    assert decision.window == "24h"
    assert decision.spend == Decimal(10)
    assert decision.cap == Decimal(10)
    assert decision.expires_at == datetime(2026, 11, 29, tzinfo=UTC)
    assert decision.decided_at == datetime(2026, 11, 28, 13, tzinfo=UTC)
    assert "Budget has been exceeded!" in decision.reason
    assert enforcer.blocks() == [decision]


def test_judging_again_with_unchanged_state_publishes_nothing() -> None:
    enforcer, reader, clock = setup(DAILY_TEN)
    reader.spends["team:eng"] = Decimal(10)
    enforcer.evaluate_scopes([ENG])

    # When more spend arrives in the same window, the block is the same: nothing to publish
    reader.spends["team:eng"] = Decimal(12)
    clock.now = at(28, 14)

    assert enforcer.evaluate_scopes([ENG]) == []


def test_a_changed_expiry_publishes_again() -> None:
    enforcer, reader, clock = setup(DAILY_TEN)
    reader.spends["team:eng"] = Decimal(10)
    [first] = enforcer.evaluate_scopes([ENG])

    # When the next day's window is exceeded as well
    clock.now = at(29, 9)
    decisions = enforcer.evaluate_scopes([ENG])

    assert len(decisions) == 1
    assert decisions[0].blocked
    assert decisions[0].expires_at == datetime(2026, 11, 30, tzinfo=UTC)
    assert decisions[0].version > first.version


def test_a_changed_cap_publishes_again() -> None:
    enforcer, reader, _ = setup(DAILY_TEN)
    reader.spends["team:eng"] = Decimal(10)
    enforcer.evaluate_scopes([ENG])

    enforcer.book.put(validate_budget({"scope": "team:eng", "max_budget": 8, "budget_duration": "24h"}))
    decisions = enforcer.evaluate_scopes([ENG])

    assert [(d.blocked, d.cap) for d in decisions] == [(True, Decimal(8))]


def test_spend_back_under_the_cap_unblocks() -> None:
    enforcer, reader, _ = setup(DAILY_TEN)
    reader.spends["team:eng"] = Decimal(10)
    enforcer.evaluate_scopes([ENG])

    enforcer.book.put(validate_budget({"scope": "team:eng", "max_budget": 20, "budget_duration": "24h"}))
    decisions = enforcer.evaluate_scopes([ENG])

    assert len(decisions) == 1
    assert not decisions[0].blocked
    assert decisions[0].expires_at is None
    assert enforcer.blocks() == []
    # And an unblock is not repeated
    assert enforcer.evaluate_scopes([ENG]) == []


def test_versions_strictly_increase_even_if_the_clock_goes_backwards() -> None:
    enforcer, reader, clock = setup(DAILY_TEN, now=at(28, 13))
    versions = []
    for now, spend in [(at(28, 13), 10), (at(28, 12), 0), (at(27, 23), 11), (at(20, 0), 0), (at(21, 0), 30)]:
        clock.now = now
        reader.spends["team:eng"] = Decimal(spend)
        [decision] = enforcer.evaluate_scopes([ENG])
        versions.append(decision.version)

    assert versions == sorted(versions)
    assert len(set(versions)) == len(versions)


def test_versions_continue_after_decisions_read_back() -> None:
    enforcer, reader, _ = setup(DAILY_TEN)
    # Given a block read back from the topic with a version from a clock far ahead
    ahead = Decision(
        scope="team:eng",
        version=10**18,
        blocked=True,
        reason="Budget has been exceeded!",
        window="24h",
        cap=Decimal(10),
        expires_at=datetime(2026, 11, 29, tzinfo=UTC),
        decided_at=datetime(2026, 11, 28, tzinfo=UTC),
    )
    enforcer.remember(ahead)
    reader.spends["team:eng"] = Decimal(1)

    [unblock] = enforcer.evaluate_scopes([ENG])

    assert not unblock.blocked
    assert unblock.version > ahead.version


def test_remember_keeps_the_highest_version() -> None:
    enforcer, _, _ = setup(DAILY_TEN)
    block = Decision(
        scope="team:eng",
        version=5,
        blocked=True,
        reason="over",
        decided_at=datetime(2026, 11, 28, tzinfo=UTC),
    )
    unblock = block.model_copy(update={"version": 7, "blocked": False, "reason": "under"})
    older_block = block.model_copy(update={"version": 6})

    enforcer.remember(block)
    enforcer.remember(unblock)
    enforcer.remember(older_block)

    assert enforcer.blocks() == []

    enforcer.remember(block.model_copy(update={"version": 8}))

    assert [d.version for d in enforcer.blocks()] == [8]


def test_remembered_block_unchanged_is_not_republished() -> None:
    enforcer, reader, _ = setup(DAILY_TEN)
    reader.spends["team:eng"] = Decimal(10)
    [block] = enforcer.evaluate_scopes([ENG])
    restarted, restarted_reader, _ = setup(DAILY_TEN)
    restarted_reader.spends["team:eng"] = Decimal(10)

    restarted.remember(block)

    assert restarted.evaluate_scopes([ENG]) == []


def test_evaluate_due_unblocks_when_the_window_has_reset() -> None:
    enforcer, reader, clock = setup(DAILY_TEN)
    reader.spends["team:eng"] = Decimal(10)
    [block] = enforcer.evaluate_scopes([ENG])

    # Before the reset nothing is due
    clock.now = at(28, 23, 59)
    assert enforcer.evaluate_due() == []

    # After midnight the new day's spend is under the cap: the block lifts without any traffic
    clock.now = at(29, 0, 1)
    reader.spends["team:eng"] = Decimal(0)
    decisions = enforcer.evaluate_due()

    assert len(decisions) == 1
    assert decisions[0].key == "team:eng"
    assert not decisions[0].blocked
    assert decisions[0].version > block.version
    assert enforcer.blocks() == []


def test_evaluate_due_extends_a_block_still_exceeded() -> None:
    enforcer, reader, clock = setup(DAILY_TEN)
    reader.spends["team:eng"] = Decimal(10)
    enforcer.evaluate_scopes([ENG])

    clock.now = at(29, 0, 1)
    decisions = enforcer.evaluate_due()

    assert [(d.blocked, d.expires_at) for d in decisions] == [(True, datetime(2026, 11, 30, tzinfo=UTC))]


def test_evaluate_due_leaves_lifetime_blocks_alone() -> None:
    enforcer, reader, clock = setup({"scope": "team:eng", "max_budget": 10})
    reader.spends["team:eng"] = Decimal(10)
    [block] = enforcer.evaluate_scopes([ENG])
    assert block.expires_at is None

    clock.now = at(30, 0)

    assert enforcer.evaluate_due() == []
    assert enforcer.blocks() == [block]


def test_evaluate_due_lifts_a_block_whose_budget_is_gone() -> None:
    enforcer, reader, clock = setup(DAILY_TEN)
    reader.spends["team:eng"] = Decimal(10)
    enforcer.evaluate_scopes([ENG])
    enforcer.book.delete("team:eng")

    clock.now = at(29, 0, 1)
    decisions = enforcer.evaluate_due()

    assert [(d.key, d.blocked) for d in decisions] == [("team:eng", False)]
    assert "no longer applies" in decisions[0].reason


def test_evaluate_due_rejudges_only_the_blocked_model() -> None:
    enforcer, reader, clock = setup(
        {
            "scope": "team:eng",
            "max_budget": 100,
            "model_max_budget": {"gpt-4o": {"max_budget": 1, "budget_duration": "1h"}},
        }
    )
    reader.spends["team:eng|gpt-4o"] = Decimal(1)
    [block] = enforcer.evaluate_scopes([ENG])
    assert block.key == "team:eng|gpt-4o"

    clock.now = at(28, 14, 0)
    reader.spends["team:eng|gpt-4o"] = Decimal(0)
    reader.asked.clear()
    decisions = enforcer.evaluate_due()

    assert [(d.key, d.blocked) for d in decisions] == [("team:eng|gpt-4o", False)]
    assert [key for key, _ in reader.asked] == ["team:eng|gpt-4o"]


def test_reconcile_lifts_a_deleted_budgets_blocks() -> None:
    enforcer, reader, _ = setup(
        {"scope": "team:eng", "max_budget": 10, "model_max_budget": {"gpt-4o": {"max_budget": 1}}},
        {"scope": "team:sales", "max_budget": 10},
    )
    reader.spends |= {"team:eng": Decimal(10), "team:eng|gpt-4o": Decimal(1), "team:sales": Decimal(10)}
    enforcer.evaluate_scopes([ENG, Scope(ScopeType.TEAM, "sales")])
    assert len(enforcer.blocks()) == 3

    enforcer.book.delete("team:eng")
    decisions = enforcer.reconcile()

    assert sorted((d.key, d.blocked) for d in decisions) == [("team:eng", False), ("team:eng|gpt-4o", False)]
    assert all("its budget no longer applies" in d.reason for d in decisions)
    assert [d.key for d in enforcer.blocks()] == ["team:sales"]
    # reconciling again publishes nothing
    assert enforcer.reconcile() == []


def test_reconcile_lifts_member_blocks_when_the_team_raises_its_member_cap() -> None:
    enforcer, reader, _ = setup({"scope": "team:eng", "max_budget": 100, "max_budget_in_team": 1})
    member = Scope(ScopeType.TEAM_MEMBER, "eng/alice")
    reader.spends |= {"team_member:eng/alice": Decimal(2)}
    enforcer.evaluate_scopes([member])
    assert [d.key for d in enforcer.blocks()] == ["team_member:eng/alice"]

    enforcer.book.put(validate_budget({"scope": "team:eng", "max_budget": 100, "max_budget_in_team": 5}))
    decisions = enforcer.reconcile()

    assert [(d.key, d.blocked) for d in decisions] == [("team_member:eng/alice", False)]


def test_evaluate_all_budgets_judges_every_direct_target() -> None:
    enforcer, reader, _ = setup(DAILY_TEN, {"scope": "user:bob", "max_budget": 1})
    reader.spends |= {"team:eng": Decimal(3), "user:bob": Decimal(1)}

    decisions = enforcer.evaluate_all_budgets()

    assert [(d.key, d.blocked) for d in decisions] == [("user:bob", True)]
    assert sorted(key for key, _ in reader.asked) == ["team:eng", "user:bob"]


def test_derived_team_member_cap_blocks_the_member() -> None:
    enforcer, reader, _ = setup({"scope": "team:eng", "max_budget_in_team": 2})
    reader.spends["team_member:eng/alice"] = Decimal("2.5")

    decisions = enforcer.evaluate_scopes([Scope(ScopeType.TEAM_MEMBER, "eng/alice"), ENG])

    assert [(d.key, d.blocked, d.window) for d in decisions] == [("team_member:eng/alice", True, "lifetime")]
    assert "max_budget_in_team of team:eng" in decisions[0].reason
