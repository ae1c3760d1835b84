"""The summaries the benchmarks print: the spread of paired ratios, the bootstrap interval of
their median, and the proxy benchmark's verdict on whether the plugin stands out of the noise."""

import pytest

from benchmarks.proxy_ratio import TELL_FROM_PAIRS, Summary
from benchmarks.stats import Spread, apart, median_ci


def test_a_spread_holds_the_median_quartiles_and_range() -> None:
    spread = Spread.of([1.0, 0.8, 0.9, 1.1, 0.7])
    assert (spread.median, spread.low, spread.high) == (0.9, 0.7, 1.1)
    assert spread.q1 == pytest.approx(0.75)
    assert spread.q3 == pytest.approx(1.05)
    assert spread.describe() == "median 0.900, IQR 0.750 to 1.050, range 0.700 to 1.100"


def test_the_median_interval_lies_within_the_values_and_holds_their_median() -> None:
    values = [0.81, 0.84, 0.86, 0.87, 0.88, 0.9, 0.91, 0.95]
    low, high = median_ci(values)
    assert min(values) <= low <= Spread.of(values).median <= high <= max(values)
    assert median_ci(values) == (low, high), "seeded: the same values give the same interval"
    assert median_ci([0.9] * 8) == (0.9, 0.9)


def test_the_median_interval_leaves_out_the_rarest_resamples() -> None:
    """A resample of eight values whose median is the smallest or the largest value is rarer than
    one in a thousand: a 95% interval stops short of both ends."""
    values = [float(v) for v in range(1, 9)]
    low, high = median_ci(values)
    assert 1.0 < low < 4.5 < high < 8.0


def test_intervals_are_apart_only_when_they_do_not_overlap() -> None:
    assert apart((0.80, 0.88), (0.95, 1.05))
    assert apart((1.10, 1.20), (0.95, 1.05))
    assert not apart((0.80, 0.96), (0.95, 1.05))
    assert not apart((0.97, 1.00), (0.95, 1.05))


def test_a_plugin_far_below_the_noise_is_told_apart_from_it() -> None:
    without = [100.0, 98.0, 102.0, 101.0, 99.0, 100.0, 97.0, 103.0]
    again = [101.0, 99.0, 100.0, 100.0, 100.0, 98.0, 98.0, 102.0]
    with_plugin = [rate * 0.85 for rate in without]
    told = Summary.of(with_plugin, without, again)
    assert told.ratio.median == pytest.approx(0.85)
    assert told.apart is True
    assert "told apart from the noise: yes" in told.describe()


def test_a_plugin_within_the_noise_is_not_told_apart() -> None:
    without = [100.0, 90.0, 110.0, 100.0, 95.0, 105.0, 100.0, 92.0]
    again = [110.0, 85.0, 100.0, 108.0, 90.0, 100.0, 95.0, 100.0]
    with_plugin = [105.0, 88.0, 104.0, 97.0, 97.0, 98.0, 101.0, 95.0]
    told = Summary.of(with_plugin, without, again)
    assert told.apart is False
    assert "within this run's noise" in told.describe()


def test_too_few_pairs_give_no_verdict() -> None:
    pairs = TELL_FROM_PAIRS - 1
    told = Summary.of([80.0] * pairs, [100.0] * pairs, [100.0] * pairs)
    assert told.apart is None
    assert "too few pairs to tell" in told.describe()
