"""Summaries the benchmarks print: percentiles of samples, medians over repeated runs, the spread
of paired ratios and whether an effect stands out of the noise.

The bootstrap is written here rather than taken from scipy (`scipy.stats.bootstrap`): it is a
dozen lines, and scipy is no dependency of the project."""

import random
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

BOOTSTRAP_RESAMPLES = 4000


def percentile(samples: Sequence[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


@dataclass(frozen=True)
class Spread:
    """Median, quartiles and range of a few ratios (one per pair of samples)."""

    median: float
    q1: float
    q3: float
    low: float
    high: float

    @classmethod
    def of(cls, ratios: Sequence[float]) -> "Spread":
        """Quartiles by Python's default ("exclusive") method; at least two ratios."""
        q1, _, q3 = statistics.quantiles(ratios, n=4)
        return cls(statistics.median(ratios), q1, q3, min(ratios), max(ratios))

    def describe(self) -> str:
        return f"median {self.median:.3f}, IQR {self.q1:.3f} to {self.q3:.3f}, range {self.low:.3f} to {self.high:.3f}"


def median_ci(
    values: Sequence[float], *, level: float = 0.95, resamples: int = BOOTSTRAP_RESAMPLES, seed: int = 0
) -> tuple[float, float]:
    """A percentile-bootstrap confidence interval of the median of `values`: the medians of
    `resamples` resamples with replacement, cut at (1 - level) / 2 on each side. Seeded, so the
    same values give the same interval."""
    rng = random.Random(seed)
    medians = sorted(statistics.median(rng.choices(values, k=len(values))) for _ in range(resamples))
    cut = (1 - level) / 2
    return medians[int(cut * resamples)], medians[min(resamples - 1, int((1 - cut) * resamples))]


def apart(effect: tuple[float, float], noise: tuple[float, float]) -> bool:
    """Two confidence intervals that do not overlap: the effect stands out of the noise. Stricter
    than a test of the difference (two intervals may overlap a little while their difference is
    still clear), so a "yes" is not a fluke of the spread."""
    return effect[1] < noise[0] or effect[0] > noise[1]
