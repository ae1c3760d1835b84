"""Running the aggregator: settings in, dependencies built, FastStream app run until a signal.

`spendpipe run aggregator` and `spendpipe run all` both end up in `serve()`. In embedded
mode (chdb:// DSN) this process owns the store, so it also serves the loopback SQL endpoint.
"""

import logging

from faststream import FastStream
from faststream.kafka import KafkaBroker
from prometheus_client import REGISTRY, CollectorRegistry

from spendpipe.platform.clickhouse import connect_clickhouse
from spendpipe.platform.sql_endpoint import SqlEndpoint
from spendpipe.schemas.migrate import migrate
from spendpipe.services.aggregator.app import Aggregator
from spendpipe.services.aggregator.metrics import AggregatorMetrics
from spendpipe.services.aggregator.settings import AggregatorSettings

log = logging.getLogger(__name__)


def build_broker(settings: AggregatorSettings) -> KafkaBroker:
    return KafkaBroker(
        settings.kafka.servers,
        security=settings.kafka.security(),
        client_id=settings.kafka.client_id,
        enable_idempotence=True,
        log_level=logging.DEBUG,  # one line per batch is noise at INFO
    )


async def serve(settings: AggregatorSettings, *, registry: CollectorRegistry = REGISTRY) -> None:
    clickhouse = connect_clickhouse(settings.clickhouse)
    applied = migrate(clickhouse)
    if applied:
        log.info("applied ClickHouse migrations %s", applied)
    endpoint = None
    if settings.sql_endpoint.enabled:
        reader = connect_clickhouse(settings.clickhouse, read_only=True)
        endpoint = SqlEndpoint(store=reader, host=settings.sql_endpoint.host, port=settings.sql_endpoint.port)
        endpoint.start()
    broker = build_broker(settings)
    Aggregator(
        settings=settings,
        broker=broker,
        clickhouse=clickhouse,
        metrics=AggregatorMetrics(registry=registry),
    )
    try:
        await FastStream(broker).run()
    finally:
        if endpoint is not None:
            endpoint.stop()
        clickhouse.close()
