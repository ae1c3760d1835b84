"""The enforcer's Prometheus metrics, on a registry the caller chooses."""

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.registry import Collector

TICK_STEPS = ("budget_changes", "leases", "window_resets", "reassert")
"""The tick's steps, in order (`EnforcerService._tick`): one failing does not skip the others."""


class EnforcerMetrics:
    def __init__(self, *, registry: CollectorRegistry) -> None:
        self._registry = registry
        self.decisions_published = Counter(
            "spendpipe_enforcer_decisions_published",
            "Decisions Kafka acknowledged on the decisions topic",
            ["action"],  # block | unblock
            registry=registry,
        )
        self.judge_seconds = Histogram(
            "spendpipe_enforcer_judge_seconds",
            "Judging the scopes of flush announcements or budget changes: reading their spend, deciding",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
            registry=registry,
        )
        self.publish_seconds = Histogram(
            "spendpipe_enforcer_publish_seconds",
            "Publishing the decisions of one judgement, until Kafka acknowledged the last",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
            registry=registry,
        )
        self.decision_failures = Counter(
            "spendpipe_enforcer_decision_publish_failures",
            "Decision sends Kafka did not acknowledge (kept in force, published again on the tick)",
            registry=registry,
        )
        self.alerts_published = Counter(
            "spendpipe_enforcer_alerts_published", "Soft-budget alerts published", registry=registry
        )
        self.burn_rate_alerts_published = Counter(
            "spendpipe_enforcer_burn_rate_alerts_published",
            "Burn-rate alerts published: a cap projected to be reached before its window resets",
            registry=registry,
        )
        self.records_rejected = Counter(
            "spendpipe_enforcer_records_rejected",
            "Budgets and decisions read back that were dropped: unsigned, unknown_key or bad_signature",
            ["topic", "reason"],
            registry=registry,
        )
        self.decisions_reasserted = Counter(
            "spendpipe_enforcer_decisions_reasserted",
            "Decisions published again over a record that is not them on their key (failed verification, unreadable,"
            " an older decision replayed; while running also their block signed by another key)",
            registry=registry,
        )

        self.tick_failures = Counter(
            "spendpipe_enforcer_tick_failures",
            "Tick steps that failed (retried on the next tick): budget_changes, leases, window_resets, reassert",
            ["step"],
            registry=registry,
        )
        for step in TICK_STEPS:
            self.tick_failures.labels(step)
        self.last_tick = Gauge(
            "spendpipe_enforcer_last_tick_timestamp_seconds",
            "Unix time of the enforcer's last tick whose every step succeeded; 0 before the first",
            registry=registry,
        )
        self.follow_failures = Counter(
            "spendpipe_enforcer_follow_failures",
            "Failures reading a followed topic (budgets, declared budgets, decisions), each read again after a backoff",
            ["topic"],
            registry=registry,
        )

    def watch(self, collector: Collector) -> None:
        """Export what `collector` reads whenever metrics are collected (the budget gauges)."""
        self._registry.register(collector)
