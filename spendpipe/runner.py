"""Running services: settings in, dependencies built, one FastStream app run until a signal.

`spendpipe run aggregator`, `run enforcer` and `run all` end up in `serve()`. Whoever runs in
this process shares one ClickHouse store; with the embedded engine (chdb:// DSN) that is the
only process that may open it, so it also serves the loopback SQL endpoint. One ops server
(/healthz, /readyz, /metrics) covers whichever services run here; it answers from the start, and
/readyz turns 200 once every one of them is ready.
"""

import logging
from dataclasses import dataclass

from faststream import FastStream
from prometheus_client import REGISTRY, CollectorRegistry

from spendpipe.aggregator.app import Aggregator
from spendpipe.aggregator.metrics import AggregatorMetrics
from spendpipe.aggregator.settings import AggregatorSettings
from spendpipe.contracts.windows import Calendar
from spendpipe.enforcer.app import EnforcerService
from spendpipe.enforcer.metrics import EnforcerMetrics
from spendpipe.enforcer.settings import EnforcerSettings
from spendpipe.history.recorder import HistoryRecorder
from spendpipe.platform.clickhouse import ClickhouseSettings, connect_clickhouse
from spendpipe.platform.kafka import KafkaSettings, build_broker
from spendpipe.platform.ops_server import OpsServer, OpsSettings, Readiness
from spendpipe.platform.settings import PipelineSettings
from spendpipe.store.calendar import settle_calendar
from spendpipe.store.migrate import migrate
from spendpipe.store.sql_endpoint.server import SqlEndpoint
from spendpipe.store.sql_endpoint.settings import SqlEndpointSettings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Services:
    aggregator: AggregatorSettings | None = None
    enforcer: EnforcerSettings | None = None

    @property
    def kafka(self) -> KafkaSettings:
        return self._any.kafka

    @property
    def clickhouse(self) -> ClickhouseSettings:
        return self._any.clickhouse

    @property
    def ops(self) -> OpsSettings:
        return self._any.ops

    @property
    def calendar(self) -> Calendar:
        """The calendar both services window on; they must agree (one deployment, one calendar)."""
        calendars = {s.calendar for s in (self.aggregator, self.enforcer) if s is not None}
        if len(calendars) > 1:
            raise ValueError(f"the aggregator and the enforcer disagree on the calendar: {sorted(map(str, calendars))}")
        return self._any.calendar

    @property
    def _any(self) -> PipelineSettings:
        """Both services read the same connection settings; either one's will do."""
        found = self.aggregator or self.enforcer
        if found is None:
            raise ValueError("no service to run")
        return found

    @property
    def sql_endpoint(self) -> SqlEndpointSettings:
        return self.aggregator.sql_endpoint if self.aggregator else SqlEndpointSettings(enabled=False)


async def serve(services: Services, *, registry: CollectorRegistry = REGISTRY) -> None:
    readiness = Readiness()
    readiness.add("clickhouse", lambda: "connecting and applying migrations")
    for name, service in (("aggregator", services.aggregator), ("enforcer", services.enforcer)):
        if service is not None:
            readiness.add(name, lambda: "starting")  # until the service replaces it with its own check
    ops = OpsServer(settings=services.ops, registry=registry, readiness=readiness).start()
    try:
        await _serve(services, registry, readiness)
    finally:
        ops.stop()


async def _serve(services: Services, registry: CollectorRegistry, readiness: Readiness) -> None:
    clickhouse = connect_clickhouse(services.clickhouse)
    applied = migrate(clickhouse, cluster=services.clickhouse.replication)
    if applied:
        log.info("applied ClickHouse migrations %s", applied)
    settle_calendar(clickhouse, services.calendar)  # raises CalendarMismatchError naming both calendars
    readiness.add("clickhouse", lambda: None)
    stores = [clickhouse]
    endpoint = None
    if services.sql_endpoint.enabled and services.clickhouse.embedded:
        endpoint = SqlEndpoint(clickhouse=services.clickhouse, settings=services.sql_endpoint).start()
    broker = build_broker(services.kafka)
    app = FastStream(broker)
    if services.aggregator:
        metrics = AggregatorMetrics(registry=registry)
        aggregator = Aggregator(settings=services.aggregator, broker=broker, clickhouse=clickhouse, metrics=metrics)
        readiness.add("aggregator", aggregator.not_ready)
        app.after_startup(aggregator.start)
        app.on_shutdown(aggregator.stop)
    if services.enforcer:
        # its own read-only client and thread: judging budgets does not queue behind the
        # aggregator's inserts (chDB serves several connections to one engine)
        reads = connect_clickhouse(services.clickhouse, read_only=True)
        stores.append(reads)
        enforcer = EnforcerService(
            settings=services.enforcer, broker=broker, clickhouse=reads, metrics=EnforcerMetrics(registry=registry)
        )
        readiness.add("enforcer", enforcer.not_ready)
        app.after_startup(enforcer.start)
        app.on_shutdown(enforcer.stop)
        # the budgets it follows and the decisions it makes, into the store for SQL (migration 0008)
        settings = services.enforcer
        history = HistoryRecorder(
            kafka=settings.kafka, topics=settings.topics, signing=settings.signing, store=clickhouse
        )
        app.after_startup(history.start)
        app.on_shutdown(history.stop)
    try:
        await run_to_the_end(app)
    finally:
        if endpoint is not None:
            endpoint.stop()
        for store in stores:
            store.close()


async def run_to_the_end(app: FastStream) -> None:
    """`app.run()`, and its shutdown when a start hook failed: FastStream runs no on_shutdown hook
    then, so the services that had started would end with the process without stopping (the
    aggregator's consumer would not leave its group, and the next process would wait out its
    session timeout for the partitions). Every service's `stop()` is safe before its `start()`."""
    started = False

    async def every_start_done() -> None:  # the last after-startup hook: the ones before it ran
        nonlocal started
        started = True

    app.after_startup(every_start_done)
    try:
        await app.run()
    except BaseException:
        if not started:
            try:
                await app.stop()
            except Exception:  # the start's own error is the one to report
                log.exception("stopping the services after a failed start failed")
        raise
