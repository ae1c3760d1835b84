"""Judging a target: blocked exactly when some spend has reached its cap, never otherwise."""

from datetime import UTC, datetime
from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from spendpipe.contracts.budgets import Cap
from spendpipe.contracts.durations import parse_duration
from spendpipe.contracts.scopes import Scope, ScopeType
from spendpipe.enforcer.targets import Target
from spendpipe.enforcer.verdict import LIFETIME, judge
from spendpipe.store.totals import Measurement

TEAM = Scope(ScopeType.TEAM, "eng")
NOW = int(datetime(2026, 11, 28, 13, 45, tzinfo=UTC).timestamp())


def cap(duration: str | None, limit: str) -> Cap:
    return Cap(parse_duration(duration) if duration else None, Decimal(limit))


def measured(c: Cap, spend: str) -> Measurement:
    end = c.duration.bounds(NOW)[1] if c.duration else None
    return Measurement(c, Decimal(spend), end)


def target(*caps: Cap, model: str = "") -> Target:
    return Target(TEAM, model, caps, "budget of team:eng")


def test_under_every_cap_is_not_blocked() -> None:
    daily, monthly = cap("24h", "10"), cap("1mo", "100")

    verdict = judge(target(daily, monthly), [measured(daily, "9.99"), measured(monthly, "50")])

    assert not verdict.blocked
    assert verdict.expires_at is None
    assert verdict.window is None


def test_no_measurements_is_not_blocked() -> None:
    assert not judge(target(), []).blocked


def test_spend_equal_to_the_cap_blocks() -> None:
    daily = cap("24h", "10")

    verdict = judge(target(daily), [measured(daily, "10")])

    assert verdict.blocked
    assert verdict.window == "24h"
    assert verdict.spend == Decimal(10)
    assert verdict.cap == Decimal(10)
    assert verdict.expires_at == int(datetime(2026, 11, 29, tzinfo=UTC).timestamp())


def test_a_zero_cap_blocks_at_zero_spend() -> None:
    nothing = cap(None, "0")

    assert judge(target(nothing), [measured(nothing, "0")]).blocked


def test_block_lasts_until_the_latest_reset_among_exceeded_caps() -> None:
    hourly, daily, weekly = cap("1h", "1"), cap("24h", "5"), cap("7d", "50")

    # Given the hourly and daily caps are exceeded, the weekly one is not
    verdict = judge(
        target(hourly, daily, weekly),
        [measured(hourly, "2"), measured(daily, "5.5"), measured(weekly, "20")],
    )

    # Then the block lifts when the daily window resets, not the hourly one nor the weekly one
    assert verdict.blocked
    assert verdict.window == "24h"
    assert verdict.expires_at == int(datetime(2026, 11, 29, tzinfo=UTC).timestamp())
    assert verdict.spend == Decimal("5.5")
    assert verdict.cap == Decimal(5)


def test_a_lifetime_cap_blocks_without_expiry() -> None:
    daily, lifetime = cap("24h", "5"), cap(None, "100")

    verdict = judge(target(daily, lifetime), [measured(daily, "6"), measured(lifetime, "100")])

    assert verdict.blocked
    assert verdict.window == LIFETIME == "lifetime"
    assert verdict.expires_at is None
    assert verdict.cap == Decimal(100)
    assert "does not reset" in verdict.reason


def test_reason_names_scope_spend_and_cap() -> None:
    daily = cap("24h", "10.00")

    verdict = judge(target(daily), [measured(daily, "12.50")])

    assert "Budget has been exceeded!" in verdict.reason
    assert "team:eng" in verdict.reason
    assert "current cost 12.5" in verdict.reason
    assert "max budget 10 per 24h" in verdict.reason
    assert "budget of team:eng" in verdict.reason
    assert "resets at 2026-11-29T00:00:00Z" in verdict.reason


def test_reason_of_a_per_model_block_names_the_model() -> None:
    daily = cap("24h", "1")

    verdict = judge(target(daily, model="gpt-4o"), [measured(daily, "1")])

    assert "team:eng on model gpt-4o" in verdict.reason


# Guarantee 8 (docs/architecture.md): no false block. Amounts are exact Decimals with up to 6 decimals.
amounts = st.decimals(min_value=0, max_value=10_000, places=6, allow_nan=False, allow_infinity=False)
durations = st.sampled_from([None, "15m", "1h", "2h", "24h", "3d", "7d", "1mo"])
caps = st.builds(cap, durations, amounts.map(str))


@given(st.lists(st.tuples(caps, amounts), max_size=6))
def test_blocked_exactly_when_some_spend_reaches_its_cap(pairs: list[tuple[Cap, Decimal]]) -> None:
    measurements = [measured(c, str(spend)) for c, spend in pairs]

    verdict = judge(target(*(c for c, _ in pairs)), measurements)

    assert verdict.blocked == any(spend >= c.limit for c, spend in pairs)


@given(st.lists(st.tuples(caps, amounts), min_size=1, max_size=6))
def test_under_every_cap_never_blocks(pairs: list[tuple[Cap, Decimal]]) -> None:
    # Given every spend strictly under its cap (a cap of 0 admits nothing under it: skip those)
    under = [(c, min(spend, c.limit - Decimal("0.000001"))) for c, spend in pairs if c.limit > 0]

    verdict = judge(target(*(c for c, _ in under)), [measured(c, str(s)) for c, s in under])

    assert not verdict.blocked


@given(st.lists(st.tuples(caps, amounts), min_size=1, max_size=6), st.data())
def test_one_cap_reached_always_blocks(pairs: list[tuple[Cap, Decimal]], data: st.DataObject) -> None:
    # Given one cap, chosen at random, whose spend is at or over it
    n = data.draw(st.integers(min_value=0, max_value=len(pairs) - 1))
    reached, _ = pairs[n]
    pairs[n] = (reached, reached.limit + data.draw(amounts))

    verdict = judge(target(*(c for c, _ in pairs)), [measured(c, str(s)) for c, s in pairs])

    assert verdict.blocked
    assert verdict.spend is not None
    assert verdict.cap is not None
    assert verdict.spend >= verdict.cap


@given(st.lists(st.tuples(caps, st.lists(amounts, max_size=20)), min_size=1, max_size=5))
def test_verdict_on_event_sums_matches_the_plain_sum(caps_and_costs: list[tuple[Cap, list[Decimal]]]) -> None:
    # Given each cap's spend is the sum of a sequence of event costs
    spends = [sum(costs, Decimal(0)) for _, costs in caps_and_costs]
    measurements = [measured(c, str(s)) for (c, _), s in zip(caps_and_costs, spends, strict=True)]

    verdict = judge(target(*(c for c, _ in caps_and_costs)), measurements)

    over = [(c, s) for (c, _), s in zip(caps_and_costs, spends, strict=True) if s >= c.limit]
    assert verdict.blocked == bool(over)
    if over and all(c.duration is not None for c, _ in over):
        assert verdict.expires_at == max(c.duration.bounds(NOW)[1] for c, _ in over if c.duration)
    if any(c.duration is None for c, _ in over):
        assert verdict.expires_at is None
        assert verdict.window == LIFETIME
