"""`SpendpipeLogger`: the LiteLLM `CustomLogger` that records every call as a `SpendEvent`.

SDK mode:   `litellm.callbacks = [SpendpipeLogger.from_settings(settings)]`
Proxy mode: `litellm_settings: {callbacks: spendpipe.services.gateway.proxy.handler}`

Recording never raises into LiteLLM and never waits on Kafka: a call that cannot be turned
into an event is counted in `spendpipe_gateway_event_build_errors_total` and logged.
"""

import logging
from pathlib import Path
from typing import Any

from litellm.integrations.custom_logger import CustomLogger
from prometheus_client import CollectorRegistry

from spendpipe.services.gateway.event_builder import build_spend_event
from spendpipe.services.gateway.metrics import GatewayMetrics
from spendpipe.services.gateway.publisher import EventPublisher, PublisherOptions
from spendpipe.services.gateway.settings import GatewaySettings
from spendpipe.services.gateway.spool import DiskSpool

log = logging.getLogger(__name__)


class SpendpipeLogger(CustomLogger):  # type: ignore[misc]  # litellm is not type-checked here
    def __init__(self, *, publisher: EventPublisher, metrics: GatewayMetrics, gateway_id: str) -> None:
        super().__init__()
        self.publisher = publisher
        self.metrics = metrics
        self.gateway_id = gateway_id

    @classmethod
    def from_settings(
        cls, settings: GatewaySettings, *, registry: CollectorRegistry | None = None
    ) -> "SpendpipeLogger":
        metrics = GatewayMetrics(registry=registry or CollectorRegistry())
        publisher = EventPublisher(
            kafka=settings.kafka,
            topic=settings.topics.events,
            spool=DiskSpool(directory=Path(settings.spool_dir), max_bytes=settings.spool_max_bytes),
            metrics=metrics,
            options=PublisherOptions(
                queue_size=settings.queue_size,
                delivery_timeout_s=settings.delivery_timeout_s,
                retry_backoff_s=settings.retry_backoff_s,
            ),
        )
        return cls(publisher=publisher, metrics=metrics, gateway_id=settings.gateway_id)

    def record(self, kwargs: dict[str, Any]) -> None:
        """Build the call's event and hand it to the publisher (the request path: microseconds)."""
        try:
            event = build_spend_event(kwargs, gateway_id=self.gateway_id)
        except Exception:
            self.metrics.build_errors.inc()
            log.exception("spendpipe could not build a spend event for call %s", _call_id(kwargs))
            return
        if event is None:
            self.metrics.build_errors.inc()
            log.warning("spendpipe: call %s has no standard_logging_object", _call_id(kwargs))
            return
        self.metrics.recorded.inc()
        self.publisher.publish(event)

    def close(self, timeout: float = 15.0) -> None:
        """Deliver (or spool) what is queued and stop the publisher."""
        self.publisher.close(timeout)

    def log_success_event(self, kwargs: Any, response_obj: Any, start_time: Any, end_time: Any) -> None:
        self.record(kwargs)

    def log_failure_event(self, kwargs: Any, response_obj: Any, start_time: Any, end_time: Any) -> None:
        self.record(kwargs)

    async def async_log_success_event(
        self, kwargs: Any, response_obj: Any, start_time: Any, end_time: Any
    ) -> None:
        self.record(kwargs)

    async def async_log_failure_event(
        self, kwargs: Any, response_obj: Any, start_time: Any, end_time: Any
    ) -> None:
        self.record(kwargs)


def _call_id(kwargs: dict[str, Any]) -> str:
    return str(kwargs.get("litellm_call_id", "?"))
