"""Spend and budget gauges for Prometheus, from the enforcer's budgets and the totals it reads.

Cardinality is bounded by design: a series exists only for a (scope, model, window) that a
budget in force caps (its `max_budget`, `budget_limits` and `model_max_budget`), never for a
scope that merely sends traffic, so no client-chosen string creates a series; and at most
`max_series` readings are exported (each up to four series: spend, remaining, cap and the
projected exhaustion), the closest to their caps first
(`spendpipe_budget_series_omitted` counts the rest). Team members and end customers capped
through `max_budget_in_team` or `max_end_user_budget` have no budget of their own and are not
exported: there is no bound on how many there are (`spendpipe spend` reads them).

`refresh()` measures on the store thread (one query for every budget, every
`refresh_interval_s`); `collect()` runs on the ops server's thread when Prometheus scrapes and
only reads the last snapshot and the block list, so a scrape never waits on ClickHouse.
Dollars are exported as floats, which cannot hold every Decimal: for display and alerting, not
accounting (`spendpipe spend` prints the exact totals).
"""

import threading
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from spendpipe.contracts.decisions import DecisionKind
from spendpipe.enforcer.enforcer import Enforcer
from spendpipe.enforcer.settings import BudgetMetricsSettings
from spendpipe.enforcer.verdict import LIFETIME

BLOCK_KINDS: tuple[DecisionKind, ...] = ("budget", "rate_limit")
_LABELS = ["scope", "scope_type", "model", "window"]
_DISPLAY_ONLY = "; a float for display and alerts, not accounting"


@dataclass(frozen=True)
class BudgetReading:
    scope: str
    scope_type: str
    model: str
    """'' for the scope's spend over all models."""
    window: str
    """The cap's duration (`1d`, `1mo`) or `lifetime`."""
    spend: Decimal
    cap: Decimal
    exhausted_at: Decimal | None = None
    """When the cap is reached at the current spend rate (`enforcer/burn_rate.py`), in Unix
    seconds; None for a lifetime cap, a cap reached, or no spend over the lookback."""

    @property
    def labels(self) -> list[str]:
        return [self.scope, self.scope_type, self.model, self.window]

    @property
    def used(self) -> Decimal:
        """The share of the cap spent; a zero cap counts as spent."""
        return self.spend / self.cap if self.cap > 0 else Decimal("Infinity")


class BudgetGauges(Collector):
    """A Prometheus collector of the budgets' spend, remaining budget and cap, and the enforcer's
    blocks in force by kind. Register it once; nothing is read until `refresh()`."""

    def __init__(self, *, enforcer: Enforcer, settings: BudgetMetricsSettings, clock: Callable[[], float]) -> None:
        self._enforcer = enforcer
        self._max_series = settings.max_series
        self._clock = clock
        self._lock = threading.Lock()
        self._readings: list[BudgetReading] = []
        self._omitted = 0

    def refresh(self) -> None:
        """Read every budget's spend now (blocking: run it on the store thread)."""
        readings = [
            BudgetReading(
                scope=str(target.scope),
                scope_type=target.scope.type.value,
                model=target.model,
                window=str(measured.cap.duration) if measured.cap.duration else LIFETIME,
                spend=measured.spend,
                cap=measured.cap.limit,
                exhausted_at=projection.exhausted_at if projection else None,
            )
            for target, projected in self._enforcer.project_budgets()
            for measured, projection in projected
        ]
        readings.sort(key=lambda r: (-r.used, r.scope, r.model, r.window))
        with self._lock:
            self._readings = readings[: self._max_series]
            self._omitted = len(readings) - len(self._readings)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        with self._lock:
            readings, omitted = list(self._readings), self._omitted
        spend = GaugeMetricFamily(
            "spendpipe_budget_spend_dollars",
            "Spend of a budgeted scope in its cap's current window, in US dollars" + _DISPLAY_ONLY,
            labels=_LABELS,
        )
        remaining = GaugeMetricFamily(
            "spendpipe_budget_remaining_dollars",
            "Cap minus spend in the current window, in US dollars (negative once spend passed the cap)" + _DISPLAY_ONLY,
            labels=_LABELS,
        )
        cap = GaugeMetricFamily(
            "spendpipe_budget_cap_dollars",
            "A budget's hard cap per window, in US dollars" + _DISPLAY_ONLY,
            labels=_LABELS,
        )
        exhaustion = GaugeMetricFamily(
            "spendpipe_budget_projected_exhaustion_timestamp_seconds",
            "When the cap will be reached at the spend rate of the last minutes, in Unix seconds "
            "(after the window's end: the window resets first); absent when nothing projects",
            labels=_LABELS,
        )
        for reading in readings:
            spend.add_metric(reading.labels, float(reading.spend))
            remaining.add_metric(reading.labels, float(reading.cap - reading.spend))
            cap.add_metric(reading.labels, float(reading.cap))
            if reading.exhausted_at is not None:
                exhaustion.add_metric(reading.labels, float(reading.exhausted_at))
        yield spend
        yield remaining
        yield cap
        yield exhaustion
        yield GaugeMetricFamily(
            "spendpipe_budget_series_omitted",
            "Budget readings (scope, model, window) not exported because of SPENDPIPE_BUDGET_METRICS__MAX_SERIES",
            value=omitted,
        )
        yield self._blocks()

    def _blocks(self) -> GaugeMetricFamily:
        now = datetime.fromtimestamp(self._clock(), UTC)
        kinds = Counter(
            block.kind for block in self._enforcer.blocks() if block.expires_at is None or block.expires_at > now
        )
        blocks = GaugeMetricFamily(
            "spendpipe_blocks_in_force",
            "Blocks the enforcer holds that refuse requests now, by kind (budget or rate_limit)",
            labels=["kind"],
        )
        for kind in BLOCK_KINDS:
            blocks.add_metric([kind], kinds[kind])
        return blocks
