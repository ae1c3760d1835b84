"""The enforcer's burn-rate warnings and gauge: one alert per window per cap when the rate of the
lookback reaches the cap before the reset, none for a blocked scope, the projection on /metrics."""

from datetime import UTC, datetime
from decimal import Decimal, localcontext

from prometheus_client import CollectorRegistry

from spendpipe.contracts.scopes import Scope, ScopeType
from spendpipe.enforcer.budget_gauges import BudgetGauges
from spendpipe.enforcer.settings import BudgetMetricsSettings
from tests.unit.test_budget_gauges import samples, series
from tests.unit.test_enforcer_state import at, setup

ENG = Scope(ScopeType.TEAM, "eng")
DAILY_TEN = {"scope": "team:eng", "max_budget": 10, "budget_duration": "24h", "budget_limits": []}
MODEL_CAP = {"scope": "team:eng", "model_max_budget": {"gpt-4o": {"max_budget": "4", "budget_duration": "1d"}}}


def test_a_rate_that_reaches_the_cap_today_alerts_once_with_the_projected_time() -> None:
    enforcer, reader, clock = setup(DAILY_TEN)  # 13:00
    # $5 of $10 spent; $0.50 in the last 15 minutes: $5 more takes 2.5 hours, 15:30 < midnight
    reader.spends["team:eng"], reader.recent["team:eng"] = Decimal(5), Decimal("0.5")

    (alert,) = enforcer.burn_rate_alerts([ENG])

    assert (alert.scope, alert.model, alert.window, alert.cap, alert.spend) == (
        "team:eng",
        "",
        "24h",
        Decimal(10),
        Decimal(5),
    )
    assert alert.projected_exhaustion_at == datetime(2026, 11, 28, 15, 30, tzinfo=UTC)
    with localcontext(prec=60):
        assert alert.rate_per_second == Decimal("0.5") / 900
    assert alert.lookback_start == datetime(2026, 11, 28, 12, 45, tzinfo=UTC)
    assert alert.window_start == datetime(2026, 11, 28, tzinfo=UTC)
    assert alert.window_end == datetime(2026, 11, 29, tzinfo=UTC)
    assert alert.key == "burn_rate|team:eng||24h@2026-11-28T00:00:00+00:00"

    clock.now = at(28, 14)  # still projected inside the window, and even sooner: once per window
    reader.recent["team:eng"] = Decimal(4)
    assert enforcer.burn_rate_alerts([ENG]) == []
    clock.now = at(29, 13)  # the next day is a new window
    assert len(enforcer.burn_rate_alerts([ENG])) == 1


def test_a_rate_that_reaches_the_cap_only_after_midnight_does_not_alert() -> None:
    enforcer, reader, _ = setup(DAILY_TEN)
    # $0.05 per 15 minutes: $5 more takes 25 hours, after the reset
    reader.spends["team:eng"], reader.recent["team:eng"] = Decimal(5), Decimal("0.05")

    assert enforcer.burn_rate_alerts([ENG]) == []


def test_no_warning_for_a_scope_already_blocked() -> None:
    enforcer, reader, _ = setup(DAILY_TEN | MODEL_CAP)
    reader.spends["team:eng"], reader.recent["team:eng"] = Decimal(10), Decimal(1)
    reader.spends["team:eng|gpt-4o"], reader.recent["team:eng|gpt-4o"] = Decimal(1), Decimal(1)

    assert [d.key for d in enforcer.evaluate_scopes([ENG])] == ["team:eng"]
    # the model's cap would be reached soon, but the scope is blocked on every model already
    assert enforcer.burn_rate_alerts([ENG]) == []


def test_the_projection_is_a_gauge_beside_the_budget_gauges() -> None:
    enforcer, reader, clock = setup(DAILY_TEN, {"scope": "user:alice", "max_budget": "2"})
    reader.spends["team:eng"], reader.recent["team:eng"] = Decimal(5), Decimal("0.05")
    reader.spends["user:alice"], reader.recent["user:alice"] = Decimal(1), Decimal(1)
    gauges = BudgetGauges(enforcer=enforcer, settings=BudgetMetricsSettings(), clock=clock)
    registry = CollectorRegistry()
    registry.register(gauges)

    gauges.refresh()
    found = samples(registry)

    name = "spendpipe_budget_projected_exhaustion_timestamp_seconds"
    # after the reset, still exported: dashboards compare it with the window's end
    assert found[series(name, "team:eng", "", "24h")] == at(29, 14)
    assert series(name, "user:alice", "", "lifetime") not in found  # a lifetime cap has no window to run out
