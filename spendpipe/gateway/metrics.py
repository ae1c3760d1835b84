"""The gateway plugin's counters, on a registry the caller chooses (the process default in the
proxy entry point, a private one in tests and benchmarks)."""

from prometheus_client import CollectorRegistry, Counter, Gauge

from spendpipe.gateway.blocks.blocklist import BlockList

LOSS_REASONS = (
    "queue_full",
    "closed",
    "spool_full",
    "spool_error",
    "spool_torn_line",
    "unbuildable",
    "uncharged",
    "publisher_failed",
)
"""Every `reason` of `spendpipe_gateway_events_lost_total` (docs/operations.md lists what each means)."""


class GatewayMetrics:
    def __init__(self, *, registry: CollectorRegistry) -> None:
        self.recorded = Counter(
            "spendpipe_gateway_events_recorded", "Events built from LiteLLM calls", registry=registry
        )
        self.published = Counter(
            "spendpipe_gateway_events_published", "Events acknowledged by Kafka", registry=registry
        )
        self.spooled = Counter(
            "spendpipe_gateway_events_spooled", "Events written to the disk spool", registry=registry
        )
        self.lost = Counter(
            "spendpipe_gateway_events_lost",
            "Events lost: queue or spool full or failing, after close (the cost is not counted), or unbuildable "
            "(a fallback event charges the cost to key, user, team and org) or uncharged (not even that)",
            ["reason"],
            registry=registry,
        )
        for reason in LOSS_REASONS:  # a series that appears at 5 has no increase to alert on: start each at 0
            self.lost.labels(reason=reason)
        self.repeated = Counter(
            "spendpipe_gateway_events_repeated",
            "Hang-up successes not published: LiteLLM logs a stream that fails as its client hangs up "
            "as a failure and as a success, for the same chunks",
            registry=registry,
        )
        self.unpriced = Counter(
            "spendpipe_gateway_unpriced_calls",
            "Successful calls with tokens that LiteLLM could not price (no price for the model it priced them "
            "under): recorded at cost 0, as LiteLLM records them",
            registry=registry,
        )
        self.build_errors = Counter(
            "spendpipe_gateway_event_build_errors", "Calls whose full event could not be built", registry=registry
        )
        self.spool_bytes = Gauge("spendpipe_gateway_spool_bytes", "Bytes waiting in the disk spool", registry=registry)
        self.blocklist_in_sync = Gauge(
            "spendpipe_gateway_blocklist_in_sync",
            "1 once the block list has read the decisions topic to the end it had at start",
            registry=registry,
        )
        self.blocks_in_force = Gauge(
            "spendpipe_gateway_blocks_in_force",
            "Decisions in the block list that refuse requests now",
            registry=registry,
        )
        self.records_rejected = Counter(
            "spendpipe_gateway_records_rejected",
            "Decisions and budgets dropped: unsigned, unknown_key or bad_signature",
            ["topic", "reason"],
            registry=registry,
        )
        self.sessions_live = Gauge(
            "spendpipe_gateway_sessions_live",
            "Capped agent sessions whose state this gateway holds",
            registry=registry,
        )

    def watch(self, blocklist: BlockList) -> None:
        """Read the block list's state whenever metrics are collected."""
        self.blocklist_in_sync.set_function(lambda: float(blocklist.in_sync.is_set()))
        self.blocks_in_force.set_function(lambda: len(blocklist.in_force()))

    @staticmethod
    def total(counter: Counter) -> float:
        """Current value of a counter, summed over its labels."""
        return sum(
            sample.value for metric in counter.collect() for sample in metric.samples if sample.name.endswith("_total")
        )
