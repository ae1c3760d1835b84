"""Burn-rate projections at a window's edges: when a cap is reached at the current spend rate,
and whether that is before the window resets. Pure: every instant is passed in."""

from datetime import UTC, datetime
from decimal import Decimal
from fractions import Fraction

from hypothesis import given
from hypothesis import strategies as st

from spendpipe.enforcer.burn_rate import lookback_start, project

DAY_START = int(datetime(2026, 11, 28, tzinfo=UTC).timestamp())
RESET = DAY_START + 86_400
NOW = DAY_START + 12 * 3600  # noon: half the day left
LOOKBACK = NOW - 15 * 60


def test_the_lookback_is_whole_minutes_before_the_minute_under_way() -> None:
    assert lookback_start(DAY_START, NOW + 42, 15) == NOW - 15 * 60
    assert lookback_start(DAY_START, NOW, 1) == NOW - 60


def test_a_window_younger_than_the_lookback_is_rated_over_its_time_so_far() -> None:
    assert lookback_start(DAY_START, DAY_START + 300, 15) == DAY_START
    assert lookback_start(DAY_START, DAY_START + 15 * 60, 15) == DAY_START
    assert lookback_start(DAY_START, DAY_START + 16 * 60 + 5, 15) == DAY_START + 60


def test_a_rate_that_reaches_the_cap_one_second_before_the_reset_warns() -> None:
    # 900 s of lookback at $0.9 is $0.001/s: $43.199 more takes 43,199 s, one short of midnight
    projection = project(
        spend=Decimal("56.801"), cap=Decimal(100), recent=Decimal("0.9"), since=LOOKBACK, now=NOW, resets_at=RESET
    )

    assert projection is not None
    assert projection.rate == Decimal("0.001")
    assert projection.exhausted_at == NOW + 43_199
    assert projection.exhausted_at < projection.resets_at
    assert projection.before_reset


def test_reaching_the_cap_at_the_reset_or_after_does_not_warn() -> None:
    remaining = Decimal("43.2")  # 43,200 s at $0.001/s: exactly at midnight, when the window resets
    at_reset = project(
        spend=100 - remaining, cap=Decimal(100), recent=Decimal("0.9"), since=LOOKBACK, now=NOW, resets_at=RESET
    )
    just_after = project(
        spend=100 - remaining - Decimal("0.000000000000000000000001"),
        cap=Decimal(100),
        recent=Decimal("0.9"),
        since=LOOKBACK,
        now=NOW,
        resets_at=RESET,
    )

    assert at_reset is not None
    assert at_reset.exhausted_at == RESET
    assert not at_reset.before_reset
    assert just_after is not None
    assert just_after.exhausted_at is not None
    assert just_after.exhausted_at > RESET
    assert not just_after.before_reset


def test_the_smallest_amount_more_tips_it_before_the_reset() -> None:
    tipped = project(
        spend=Decimal("56.800000000000000000000001"),
        cap=Decimal(100),
        recent=Decimal("0.9"),
        since=LOOKBACK,
        now=NOW,
        resets_at=RESET,
    )

    assert tipped is not None
    assert tipped.before_reset
    assert tipped.exhausted_at is not None
    assert tipped.exhausted_at < RESET


def test_a_zero_rate_never_reaches_the_cap() -> None:
    projection = project(
        spend=Decimal(99), cap=Decimal(100), recent=Decimal(0), since=LOOKBACK, now=NOW, resets_at=RESET
    )

    assert projection is not None
    assert projection.rate == 0
    assert projection.exhausted_at is None
    assert not projection.before_reset


def test_a_cap_already_reached_has_no_projection_the_block_covers_it() -> None:
    for spend in (Decimal(100), Decimal("100.01")):
        assert (
            project(spend=spend, cap=Decimal(100), recent=Decimal(1), since=LOOKBACK, now=NOW, resets_at=RESET) is None
        )


def test_a_window_that_began_this_second_has_no_time_to_rate_over() -> None:
    assert (
        project(spend=Decimal(1), cap=Decimal(100), recent=Decimal(1), since=DAY_START, now=DAY_START, resets_at=RESET)
        is None
    )


def test_a_window_just_started_is_rated_over_its_seconds_so_far() -> None:
    # ten seconds into the day, $1 spent: $0.1/s reaches $100 in 990 s more
    projection = project(
        spend=Decimal(1), cap=Decimal(100), recent=Decimal(1), since=DAY_START, now=DAY_START + 10, resets_at=RESET
    )

    assert projection is not None
    assert projection.rate == Decimal("0.1")
    assert projection.exhausted_at == DAY_START + 1000
    assert projection.before_reset


def test_exact_decimals_where_floats_would_round() -> None:
    # one third of a cent per second over 3 s: floats would make 0.01 / 3 * 3 != 0.01
    projection = project(
        spend=Decimal("0.99"), cap=Decimal(1), recent=Decimal("0.01"), since=NOW - 3, now=NOW, resets_at=NOW + 3
    )

    assert projection is not None
    assert projection.exhausted_at == NOW + 3  # exactly at the reset: not before it
    assert not projection.before_reset
    assert str(projection.rate).startswith("0.00333333333333333333333333333333")  # 60 digits, not 28


MONEY = st.decimals(min_value=0, max_value=10**6, places=6, allow_nan=False, allow_infinity=False)
SECONDS = st.integers(min_value=1, max_value=31 * 86_400)


@given(spend=MONEY, cap=MONEY, low=MONEY, more=MONEY, elapsed=SECONDS, left=SECONDS)
def test_a_faster_rate_never_projects_later(
    *, spend: Decimal, cap: Decimal, low: Decimal, more: Decimal, elapsed: int, left: int
) -> None:
    slow = project(spend=spend, cap=cap, recent=low, since=NOW - elapsed, now=NOW, resets_at=NOW + left)
    fast = project(spend=spend, cap=cap, recent=low + more, since=NOW - elapsed, now=NOW, resets_at=NOW + left)

    assert (slow is None) == (fast is None)
    if slow is not None and fast is not None:
        assert fast.rate >= slow.rate
        if slow.exhausted_at is not None:
            assert fast.exhausted_at is not None
            assert fast.exhausted_at <= slow.exhausted_at
        assert fast.before_reset or not slow.before_reset


@given(spend=MONEY, cap=MONEY, recent=MONEY, elapsed=SECONDS, left=SECONDS)
def test_never_warns_of_spend_that_cannot_reach_the_cap_before_the_reset(
    *, spend: Decimal, cap: Decimal, recent: Decimal, elapsed: int, left: int
) -> None:
    projection = project(spend=spend, cap=cap, recent=recent, since=NOW - elapsed, now=NOW, resets_at=NOW + left)

    reaches = Fraction(spend) + Fraction(recent) * left / elapsed > Fraction(cap)  # exact arithmetic
    if projection is not None and projection.before_reset:
        assert reaches
        assert projection.exhausted_at is not None
        assert projection.exhausted_at < NOW + left
    if projection is not None and reaches:
        assert projection.before_reset
