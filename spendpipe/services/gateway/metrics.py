"""The gateway plugin's counters, on a registry the caller chooses (the process default in the
proxy entry point, a private one in tests and benchmarks)."""

from prometheus_client import CollectorRegistry, Counter, Gauge


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
            "Events dropped because the queue and the spool were full",
            ["reason"],
            registry=registry,
        )
        self.build_errors = Counter(
            "spendpipe_gateway_event_build_errors", "Calls no event could be built for", registry=registry
        )
        self.spool_bytes = Gauge("spendpipe_gateway_spool_bytes", "Bytes waiting in the disk spool", registry=registry)

    @staticmethod
    def total(counter: Counter) -> float:
        """Current value of a counter, summed over its labels."""
        return sum(
            sample.value for metric in counter.collect() for sample in metric.samples if sample.name.endswith("_total")
        )
