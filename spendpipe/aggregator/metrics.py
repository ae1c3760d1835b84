"""The aggregator's Prometheus metrics, on a registry the caller chooses."""

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class AggregatorMetrics:
    def __init__(self, *, registry: CollectorRegistry) -> None:
        self.consumed = Counter(
            "spendpipe_aggregator_messages_consumed",
            "Distinct messages read from the events topic by this process (a message read again counts in rereads)",
            registry=registry,
        )
        self.rereads = Counter(
            "spendpipe_aggregator_messages_reread",
            "Messages read again: the batch of a failed flush, or partitions given back and taken again",
            registry=registry,
        )
        self.counted = Counter("spendpipe_aggregator_events_counted", "Events added to the totals", registry=registry)
        self.duplicates = Counter(
            "spendpipe_aggregator_duplicates_dropped", "Events dropped as already counted", registry=registry
        )
        self.replayed = Counter(
            "spendpipe_aggregator_events_replayed",
            "Events read again after a failed flush or a restart before the commit, already in the totals",
            registry=registry,
        )
        self.dead_letters = Counter(
            "spendpipe_aggregator_dead_letters", "Messages sent to the dead-letter topic", registry=registry
        )
        self.flush_failures = Counter(
            "spendpipe_aggregator_flush_failures",
            "Flushes that failed and will be retried",
            registry=registry,
        )
        self.ownership_lost = Counter(
            "spendpipe_aggregator_ownership_lost",
            "Flushes not written because another aggregator had claimed one of their partitions",
            registry=registry,
        )
        self.flush_seconds = Histogram(
            "spendpipe_aggregator_flush_seconds",
            "Time from batch received to offsets committed",
            registry=registry,
        )
        self.flush_step_seconds = Histogram(
            "spendpipe_aggregator_flush_step_seconds",
            "Each flush's steps: wait (how long a written batch's records had waited when the flush that"
            " wrote it started, their mean age from their Kafka timestamps; once per batch, the time a"
            " retry waited to read further included), stage (parse, check, dedup), rollup (the totals insert),"
            " events (the copy into events, then what to announce and the ownership check)",
            ["step"],
            registry=registry,
        )
        self.last_flush = Gauge(
            "spendpipe_aggregator_last_flush_timestamp_seconds",
            "Unix time of this process's last flush whose offsets were committed; 0 before the first",
            registry=registry,
        )
        self.partitions_awaited = Gauge(
            "spendpipe_aggregator_partitions_awaited",
            "Partitions that a retry sent back to read further (its totals hold records it does not) waits"
            " to read through the offset it needs; nothing is written meanwhile. 0 when no retry waits",
            registry=registry,
        )
        self.consumer_lag = Gauge(
            "spendpipe_aggregator_consumer_lag",
            "Records of the events topic not yet committed, per partition assigned to this aggregator",
            ["partition"],
            registry=registry,
        )
