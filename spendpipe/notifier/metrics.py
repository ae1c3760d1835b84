"""The notifier's metrics. A webhook is labelled by its name, never its URL (a credential)."""

from prometheus_client import CollectorRegistry, Counter, Gauge


class NotifierMetrics:
    def __init__(self, *, registry: CollectorRegistry) -> None:
        self.delivered = Counter(
            "spendpipe_notifier_delivered",
            "Notifications a webhook accepted (2xx)",
            ["webhook", "kind"],
            registry=registry,
        )
        self.failures = Counter(
            "spendpipe_notifier_delivery_failures",
            "Delivery attempts that failed (refused, timed out, or not 2xx); each is retried",
            ["webhook"],
            registry=registry,
        )
        self.skipped = Counter(
            "spendpipe_notifier_records_skipped",
            "Records not notified on purpose: tombstone, invalid, unknown_type (an alert type not notified)",
            ["topic", "reason"],
            registry=registry,
        )
        self.rejected = Counter(
            "spendpipe_records_rejected",
            "Records dropped because their signature did not verify",
            ["topic", "reason"],
            registry=registry,
        )
        self.stuck = Gauge(
            "spendpipe_notifier_stuck",
            "1 while a notification has failed alarm_after_attempts times in a row (still retried)",
            registry=registry,
        )
