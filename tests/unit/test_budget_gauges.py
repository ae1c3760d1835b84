"""The spend and budget gauges: a series only per budgeted (scope, model, window), capped in
number closest-to-the-cap first, blocks in force by kind, and a scrape that reads a snapshot."""

from decimal import Decimal

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from spendpipe.contracts.scopes import Scope, ScopeType
from spendpipe.enforcer.budget_gauges import BudgetGauges
from spendpipe.enforcer.enforcer import Enforcer
from spendpipe.enforcer.metrics import EnforcerMetrics
from spendpipe.enforcer.settings import BudgetMetricsSettings
from tests.unit.test_enforcer_state import FakeClock, FakeReader, at, setup

ENG: dict[str, object] = {
    "scope": "team:eng",
    "max_budget": "10",
    "budget_duration": "1d",
    "budget_limits": [{"budget_duration": "1mo", "max_budget": "100"}],
    "model_max_budget": {"gpt-4o": {"max_budget": "4", "budget_duration": "1d"}},
}
OPS: dict[str, object] = {"scope": "team:ops", "max_budget": "10", "budget_duration": "1d"}
ALICE: dict[str, object] = {"scope": "user:alice", "max_budget": "2"}


def scrape(
    *budgets: dict[str, object], max_series: int = 500, spends: dict[str, str] | None = None
) -> tuple[dict[tuple[str, tuple[tuple[str, str], ...]], float], Enforcer, FakeReader, FakeClock, BudgetGauges]:
    enforcer, reader, clock = setup(*budgets)
    reader.spends.update({key: Decimal(value) for key, value in (spends or {}).items()})
    gauges = BudgetGauges(enforcer=enforcer, settings=BudgetMetricsSettings(max_series=max_series), clock=clock)
    registry = CollectorRegistry()
    EnforcerMetrics(registry=registry).watch(gauges)
    gauges.refresh()
    return samples(registry), enforcer, reader, clock, gauges


def samples(registry: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = generate_latest(registry).decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def series(name: str, scope: str, model: str, window: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    labels = {"scope": scope, "scope_type": scope.partition(":")[0], "model": model, "window": window}
    return name, tuple(sorted(labels.items()))


def budget_series(found: dict[tuple[str, tuple[tuple[str, str], ...]], float]) -> set[tuple[str, str, str]]:
    return {
        (labels["scope"], labels["model"], labels["window"])
        for (name, label_items) in found
        if name == "spendpipe_budget_spend_dollars"
        for labels in [dict(label_items)]
    }


def test_each_cap_of_a_budget_is_one_series_of_spend_remaining_and_cap() -> None:
    found, *_ = scrape(ENG, spends={"team:eng": "7.25", "team:eng|gpt-4o": "5"})

    assert found[series("spendpipe_budget_spend_dollars", "team:eng", "", "1d")] == 7.25
    assert found[series("spendpipe_budget_remaining_dollars", "team:eng", "", "1d")] == 2.75
    assert found[series("spendpipe_budget_cap_dollars", "team:eng", "", "1d")] == 10
    assert found[series("spendpipe_budget_remaining_dollars", "team:eng", "", "1mo")] == 92.75
    # spend past the cap shows as negative remaining
    assert found[series("spendpipe_budget_remaining_dollars", "team:eng", "gpt-4o", "1d")] == -1
    assert budget_series(found) == {("team:eng", "", "1d"), ("team:eng", "", "1mo"), ("team:eng", "gpt-4o", "1d")}
    assert found[("spendpipe_budget_series_omitted", ())] == 0


def test_only_scopes_with_a_budget_have_series_whatever_the_traffic() -> None:
    # caps every end customer, who has no budget of their own and so no series
    derived: dict[str, object] = {"scope": "global", "max_end_user_budget": "1"}
    found, enforcer, *_ = scrape(ALICE, derived, spends={"end_user:" + "x" * 500: "3", "team:unknown": "9"})

    enforcer.evaluate_scopes([Scope(ScopeType.END_USER, "someone-a-client-named"), Scope(ScopeType.TEAM, "unknown")])

    assert budget_series(found) == {("user:alice", "", "lifetime")}


def test_at_most_max_series_readings_are_exported_closest_to_the_cap_first() -> None:
    spends = {"team:ops": "9", "user:alice": "0.5", "team:eng": "1"}

    found, *_ = scrape(ENG, OPS, ALICE, max_series=2, spends=spends)

    # ops has used 90% of its day, alice 25% of her lifetime, eng at most 10%
    assert budget_series(found) == {("team:ops", "", "1d"), ("user:alice", "", "lifetime")}
    assert found[("spendpipe_budget_series_omitted", ())] == 3


def test_a_deleted_budget_leaves_the_next_refresh_and_nothing_is_read_before_the_first() -> None:
    enforcer, reader, clock = setup(ENG, OPS)
    gauges = BudgetGauges(enforcer=enforcer, settings=BudgetMetricsSettings(), clock=clock)
    registry = CollectorRegistry()
    EnforcerMetrics(registry=registry).watch(gauges)

    assert budget_series(samples(registry)) == set()
    assert reader.asked == []  # a scrape never reads the totals

    gauges.refresh()
    enforcer.book.delete("team:eng")
    assert {scope for scope, *_ in budget_series(samples(registry))} == {"team:eng", "team:ops"}
    gauges.refresh()
    assert {scope for scope, *_ in budget_series(samples(registry))} == {"team:ops"}


def test_blocks_in_force_by_kind_leave_out_blocks_whose_window_has_reset() -> None:
    found, enforcer, _, clock, gauges = scrape(OPS, ALICE, spends={"team:ops": "10", "user:alice": "2"})
    assert found[("spendpipe_blocks_in_force", (("kind", "budget"),))] == 0

    enforcer.evaluate_scopes([Scope(ScopeType.TEAM, "ops"), Scope(ScopeType.USER, "alice")])
    registry = CollectorRegistry()
    registry.register(gauges)

    assert samples(registry)[("spendpipe_blocks_in_force", (("kind", "budget"),))] == 2
    assert samples(registry)[("spendpipe_blocks_in_force", (("kind", "rate_limit"),))] == 0
    clock.now = at(29, 0, 1)  # team:ops's day is over; alice's lifetime cap holds
    assert samples(registry)[("spendpipe_blocks_in_force", (("kind", "budget"),))] == 1


def test_the_help_says_dollars_are_for_display() -> None:
    enforcer, _, clock = setup(OPS)
    registry = CollectorRegistry()
    registry.register(BudgetGauges(enforcer=enforcer, settings=BudgetMetricsSettings(), clock=clock))
    text = generate_latest(registry).decode()

    for name in ("spend", "remaining", "cap"):
        (help_line,) = [line for line in text.splitlines() if line.startswith(f"# HELP spendpipe_budget_{name}_")]
        assert "not accounting" in help_line
