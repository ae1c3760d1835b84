"""deploy/prometheus/alerts.yml against what a real pipeline exports: the aggregator and the
enforcer (one ops server, as `spendpipe run all` serves them) and a gateway plugin, on the real
broker and chDB, are driven through states that should and should not alert; each state's
/metrics scrape is recorded, turned into promtool input series and checked with the real
`promtool test rules`. Every metric a rule or a dashboard's Prometheus panel reads must be in
those scrapes, so renaming a metric breaks this test.

`SPENDPIPE_RECORD_ALERTS_TEST=1` also writes the generated test to
deploy/prometheus/alerts_test.yml, which the unit tier runs with promtool alone.
"""

import asyncio
import contextlib
import json
import os
import socket
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar, cast

import yaml
from prometheus_client import CollectorRegistry

from spendpipe.admin.budget_admin import BudgetAdmin
from spendpipe.aggregator.app import Aggregator
from spendpipe.aggregator.metrics import AggregatorMetrics
from spendpipe.aggregator.settings import AggregatorSettings
from spendpipe.contracts.budgets import MESSAGE_TYPE as BUDGET_TYPE
from spendpipe.contracts.budgets import Budget
from spendpipe.contracts.decisions import MESSAGE_TYPE as DECISION_TYPE
from spendpipe.contracts.decisions import Decision
from spendpipe.contracts.topics import TYPE_HEADER, Topics
from spendpipe.enforcer.app import EnforcerService
from spendpipe.enforcer.metrics import EnforcerMetrics
from spendpipe.enforcer.settings import BudgetMetricsSettings, EnforcerSettings
from spendpipe.gateway.plugin import SpendpipeLogger
from spendpipe.gateway.settings import GatewayOpsSettings, GatewaySettings
from spendpipe.platform.clickhouse import ClickhouseSettings, ClickhouseStore
from spendpipe.platform.kafka import KafkaSettings, build_broker
from spendpipe.platform.ops_server import OpsServer, OpsSettings, Readiness
from spendpipe.platform.signing import Headers
from tests.conftest import aggregator_settings, enforcer_settings
from tests.support.events import make_event
from tests.support.grafana import SPEND_DASHBOARD
from tests.support.ops import metric, off_loop
from tests.support.pipeline import produce
from tests.support.prometheus import (
    ALERTS,
    ALERTS_TEST,
    DASHBOARD,
    Recording,
    Scrape,
    firing,
    names_in_expression,
    promtool,
    rule_expressions,
    rules_test,
    scrape,
)
from tests.support.signing import write_records
from tests.support.waiting import eventually

T = TypeVar("T")
MALFORMED = b'{"event_id": "x", "cost": "not money'
PIPELINE = {"job": "spendpipe", "instance": "pipeline:9464"}
GATEWAY = {"job": "spendpipe-gateway", "instance": "gateway:9464"}
STATE_MINUTES = 15
REJECTED = "spendpipe_enforcer_records_rejected_total"
GATEWAY_REJECTED = "spendpipe_gateway_records_rejected_total"
TICK_FAILURES = "spendpipe_enforcer_tick_failures_total"
LAST_TICK = "spendpipe_enforcer_last_tick_timestamp_seconds"
LAG = "spendpipe_aggregator_consumer_lag"
LAST_FLUSH = "spendpipe_aggregator_last_flush_timestamp_seconds"


class SwitchedStore:
    """A process's ClickHouse, whose calls the test holds (`open` cleared) or makes fail: the
    aggregator's writes, the enforcer's reads."""

    def __init__(self, store: ClickhouseStore) -> None:
        self._store = store
        self.open = asyncio.Event()
        self.open.set()
        self.failing = False

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        await self.open.wait()
        if self.failing:
            raise ConnectionError("ClickHouse refused the call (held by the test)")
        return await self._store.run(fn, *args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


@contextlib.asynccontextmanager
async def serving_pipeline(
    aggregator: AggregatorSettings, enforcer: EnforcerSettings, writes: SwitchedStore, reads: SwitchedStore
) -> AsyncIterator[str]:
    """Aggregator and enforcer on one broker and one ops server, as `serve()` wires them; the
    aggregator writes through `writes`, the enforcer reads through `reads`."""
    registry = CollectorRegistry()
    broker = build_broker(aggregator.kafka)
    counting = Aggregator(
        settings=aggregator,
        broker=broker,
        clickhouse=cast(ClickhouseStore, writes),
        metrics=AggregatorMetrics(registry=registry),
    )
    judging = EnforcerService(
        settings=enforcer,
        broker=broker,
        clickhouse=cast(ClickhouseStore, reads),
        metrics=EnforcerMetrics(registry=registry),
    )
    ops = OpsServer(settings=OpsSettings(port=0), registry=registry, readiness=Readiness()).start()
    try:
        await broker.start()
        await counting.start()
        await judging.start()
        yield ops.url
    finally:
        await judging.stop()
        await counting.stop()
        await broker.stop()
        ops.stop()


@contextlib.contextmanager
def gateway(bootstrap: str, topics: Topics, spool: Path, **overrides: object) -> Any:
    settings = GatewaySettings(
        kafka=KafkaSettings(bootstrap_servers=bootstrap),
        topics=topics,
        spool_dir=spool,
        ops=GatewayOpsSettings(enabled=True, port=0),
        **overrides,  # type: ignore[arg-type]
    )
    plugin = SpendpipeLogger.from_settings(settings)
    plugin.start()
    try:
        yield plugin
    finally:
        plugin.close(30)


def eng_events(count: int) -> list[bytes]:
    return [make_event(team_id="eng", cost=Decimal("0.05")).to_json() for _ in range(count)]


def near(wanted: float) -> Callable[[float], bool]:
    return lambda found: abs(found - wanted) < 1e-9


def at_least(wanted: float) -> Callable[[float], bool]:
    return lambda found: found >= wanted


def above(before: float) -> Callable[[float], bool]:
    return lambda found: found > before


async def value(url: str, name: str, **labels: str) -> float:
    return await off_loop(lambda: metric(url, name, **labels))


async def reaches(url: str, name: str, wanted: Callable[[float], bool], what: str, **labels: str) -> None:
    await eventually(lambda: value(url, name, **labels), wanted, within=60, what=what)


async def settled(url: str, wanted: Callable[[Scrape], bool], what: str) -> Scrape:
    """The first scrape of the pipeline whose own page shows `wanted`: the page recorded for a
    state is the page checked, not one read just before it. The lag gauge is the aggregator's look
    at the broker once a second, a snapshot up to that old: a page read before the scrape may show
    a look older than an event still waiting (lag 0), and a look landing between that page and the
    scrape then shows it waiting (lag 1), or a look that read the committed offsets just before a
    commit shows lag 1 for a second after it. Held for minutes, such a scrape is a pipeline whose
    events wait with no flush for minutes: SpendpipeFlushesStale fired in healthy states so."""
    page: Scrape = await eventually(lambda: off_loop(lambda: scrape(url, **PIPELINE)), wanted, within=60, what=what)
    return page


def lag_is(wanted: float) -> Callable[[Scrape], bool]:
    """A page on which the aggregator's lag gauge has looked (it has a series) and sums to `wanted`."""
    return lambda page: page.total(LAG) == wanted


def caught_up_after(page: Scrape, clock: str) -> Callable[[Scrape], bool]:
    """A page with no lag whose `clock` gauge (a moment) is later than on `page`."""
    before = page.total(clock) or 0.0
    return lambda later: later.total(LAG) == 0 and (later.total(clock) or 0.0) > before


async def record_pipeline(
    kafka_broker: str, topics: Topics, clickhouse: ClickhouseStore, clickhouse_settings: ClickhouseSettings
) -> tuple[Recording, list[dict[str, Any]]]:
    """The aggregator and enforcer healthy, held behind a backlog, released with a dead letter
    and a budget at 95%, failing every flush, recovered; then the enforcer's tick failing, and
    ticking again. Returns the recording and what promtool must see in it."""
    admin = BudgetAdmin(kafka=KafkaSettings(bootstrap_servers=kafka_broker), topics=topics)
    await asyncio.to_thread(admin.set, {"scope": "team:eng", "max_budget": "1.00", "budget_duration": "1mo"})
    writes, reads = SwitchedStore(clickhouse), SwitchedStore(clickhouse)
    recording = Recording()
    aggregating = aggregator_settings(kafka_broker, topics, clickhouse_settings, batch_size=100, retry_backoff_s=0.1)
    enforcing = enforcer_settings(
        kafka_broker, topics, clickhouse_settings, budget_metrics=BudgetMetricsSettings(refresh_interval_s=0.1)
    )
    eng = {"scope": "team:eng", "scope_type": "team", "model": "", "window": "1mo", **PIPELINE}
    forged = {"topic": topics.budgets, "reason": "unsigned"}

    async with serving_pipeline(aggregating, enforcing, writes, reads) as url:
        # healthy: ten $0.05 events of team eng counted, half its budget spent
        await produce(kafka_broker, topics.events, eng_events(10))
        await reaches(
            url, "spendpipe_budget_spend_dollars", lambda s: abs(s - 0.5) < 1e-9, "$0.50 spent", scope="team:eng"
        )
        healthy = recording.hold(await settled(url, lag_is(0), "no lag"), STATE_MINUTES)

        # held: ClickHouse takes no write while 1500 events arrive
        writes.open.clear()
        await produce(kafka_broker, topics.events, [make_event().to_json() for _ in range(1500)])
        held = recording.hold(await settled(url, lag_is(1500), "a backlog of 1500"), STATE_MINUTES)

        # released, with a malformed record and nine more $0.05 of team eng: 95% of its budget
        writes.open.set()
        await produce(kafka_broker, topics.events, [*eng_events(9), MALFORMED])
        await write_records(kafka_broker, topics.budgets, [forged_budget()])
        await reaches(url, "spendpipe_aggregator_dead_letters_total", lambda n: n == 1, "one dead letter")
        await reaches(url, REJECTED, lambda n: n == 1, "the forged budget dropped", **forged)
        await reaches(url, "spendpipe_budget_spend_dollars", near(0.95), "$0.95 spent", scope="team:eng")
        released = recording.hold(await settled(url, lag_is(0), "no lag after the release"), STATE_MINUTES)

        # failing: every flush fails and is retried; one scrape per two failures more
        writes.failing = True
        await produce(kafka_broker, topics.events, [make_event().to_json()])
        failing = recording.minutes
        for step in range(4):
            await reaches(url, "spendpipe_aggregator_flush_failures_total", at_least(2 * (step + 1)), "more failures")
            page = await off_loop(lambda: scrape(url, **PIPELINE))
            recording.hold(page, 2)

        # recovered: the batch that failed is written (a flush after the failing pages), no lag
        writes.failing = False
        recovered = recording.hold(
            await settled(url, caught_up_after(page, LAST_FLUSH), "the failed batch written, no lag"), STATE_MINUTES
        )

        # the enforcer's tick failing: its store refuses every call; one scrape per failures more,
        # the aggregator's pages still with no lag
        reads.failing = True
        tick_failing = recording.minutes
        for _ in range(4):
            failed = await value(url, TICK_FAILURES, step="window_resets")
            await reaches(url, TICK_FAILURES, above(failed), "more tick failures", step="window_resets")
            page = await settled(url, lag_is(0), "no lag while the ticks fail")
            recording.hold(page, 2)

        # ticking again: one scrape a minute, each after a newer tick, while the failures are recent
        reads.failing = False
        ticking = recording.minutes
        for minutes in (1, 1, 1, 1, 1, 1, STATE_MINUTES):
            page = await settled(url, caught_up_after(page, LAST_TICK), "a newer tick, no lag")
            recording.hold(page, minutes)

    quiet = (
        "SpendpipeConsumerLag",
        "SpendpipeFlushesStale",
        "SpendpipeFlushFailures",
        "SpendpipeDeadLetters",
        "SpendpipeRecordsRejected",
        "SpendpipeEnforcerTickFailing",
    )
    nearly = [firing("SpendpipeBudgetNearlyExhausted", eng)]
    return recording, [
        *expect(healthy + STATE_MINUTES - 1, {name: [] for name in (*quiet, "SpendpipeBudgetNearlyExhausted")}),
        # the backlog is new: both pending, not firing yet. The last flush was at most just before
        # the backlog's scrape, so 5 minutes and the rule's 2 later the flushes are stale for sure
        *expect(held + 1, {"SpendpipeConsumerLag": [], "SpendpipeFlushesStale": []}),
        *expect(
            held + 8, {"SpendpipeConsumerLag": [], "SpendpipeFlushesStale": [firing("SpendpipeFlushesStale", PIPELINE)]}
        ),
        *expect(
            held + STATE_MINUTES - 1,
            {
                "SpendpipeConsumerLag": [firing("SpendpipeConsumerLag", PIPELINE)],
                "SpendpipeFlushesStale": [firing("SpendpipeFlushesStale", PIPELINE)],
                "SpendpipeDeadLetters": [],
            },
        ),
        *expect(
            released + 1,
            {
                "SpendpipeConsumerLag": [],
                "SpendpipeFlushesStale": [],
                "SpendpipeDeadLetters": [firing("SpendpipeDeadLetters", PIPELINE)],
                "SpendpipeRecordsRejected": [firing("SpendpipeRecordsRejected", {**forged, **PIPELINE})],
                "SpendpipeBudgetNearlyExhausted": nearly,
            },
        ),
        *expect(failing + 7, {"SpendpipeFlushFailures": [firing("SpendpipeFlushFailures", PIPELINE)]}),
        *expect(recovered + STATE_MINUTES - 1, {name: [] for name in quiet}),
        # no tick succeeded for 2 minutes, then the rule's 3: firing; once it ticks again, quiet
        *expect(tick_failing + 1, {"SpendpipeEnforcerTickFailing": []}),
        *expect(tick_failing + 7, {"SpendpipeEnforcerTickFailing": [firing("SpendpipeEnforcerTickFailing", PIPELINE)]}),
        *expect(ticking + 1, {"SpendpipeEnforcerTickFailing": []}),
        *expect(ticking + 6 + STATE_MINUTES - 1, {name: [] for name in quiet}),
    ]


async def record_gateway(kafka_broker: str, topics: Topics, tmp_path: Path) -> tuple[Recording, list[dict[str, Any]]]:
    """A gateway delivering to Kafka, then one that cannot reach it: its spool grows, then
    fills and events are lost."""
    recording = Recording()
    budget_dropped = {"topic": topics.budgets, "reason": "unsigned"}
    unblock_dropped = {"topic": topics.decisions, "reason": "unsigned"}
    with gateway(kafka_broker, topics, tmp_path / "healthy-spool") as plugin:
        url = plugin.ops.url
        await reaches(url, "spendpipe_gateway_blocklist_in_sync", lambda synced: synced == 1, "in sync")
        for _ in range(5):
            plugin.publisher.publish(make_event())
        await reaches(url, "spendpipe_gateway_events_published_total", lambda n: n == 5, "5 published")
        # the pipeline's forged budget, read back at start: counted before the first scrape, so quiet
        await reaches(url, GATEWAY_REJECTED, lambda n: n == 1, "the forged budget dropped", **budget_dropped)
        healthy = recording.hold(await off_loop(lambda: scrape(url, **GATEWAY)), STATE_MINUTES)

        # forged: an unsigned unblock on the decisions topic
        await write_records(kafka_broker, topics.decisions, [forged_unblock()])
        await reaches(url, GATEWAY_REJECTED, lambda n: n == 1, "the forged unblock dropped", **unblock_dropped)
        forged = recording.hold(await off_loop(lambda: scrape(url, **GATEWAY)), STATE_MINUTES)

    events = [make_event() for _ in range(30)]
    room = sum(len(event.to_json()) + 1 for event in events[:9])
    with socket.socket() as closed_port:
        closed_port.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused
        unreachable = f"127.0.0.1:{closed_port.getsockname()[1]}"
        with gateway(unreachable, topics, tmp_path / "spool", spool_max_bytes=room, delivery_timeout_s=1.0) as plugin:
            url = plugin.ops.url
            outage = recording.minutes
            for step in range(3):
                for event in events[3 * step : 3 * step + 3]:
                    plugin.publisher.publish(event)
                spooled = 3 * (step + 1)
                await reaches(url, "spendpipe_gateway_events_spooled_total", near(spooled), "spooled")
                recording.hold(await off_loop(lambda: scrape(url, **GATEWAY)), 4)
            for event in events[9:]:
                plugin.publisher.publish(event)
            await reaches(url, "spendpipe_gateway_events_lost_total", lambda n: n == 21, "21 lost", reason="spool_full")
            lost = recording.hold(await off_loop(lambda: scrape(url, **GATEWAY)), STATE_MINUTES)

    names = (
        "SpendpipeGatewaySpoolGrowing",
        "SpendpipeEventsLost",
        "SpendpipeGatewayBlockListNotInSync",
        "SpendpipeRecordsRejected",
    )
    return recording, [
        *expect(healthy + STATE_MINUTES - 1, {name: [] for name in names}),
        *expect(
            forged + 1,
            {"SpendpipeRecordsRejected": [firing("SpendpipeRecordsRejected", {**unblock_dropped, **GATEWAY})]},
        ),
        *expect(
            outage + 11,
            {
                "SpendpipeGatewaySpoolGrowing": [firing("SpendpipeGatewaySpoolGrowing", GATEWAY)],
                "SpendpipeGatewayBlockListNotInSync": [firing("SpendpipeGatewayBlockListNotInSync", GATEWAY)],
                "SpendpipeEventsLost": [],
            },
        ),
        *expect(
            lost + 1,
            {"SpendpipeEventsLost": [firing("SpendpipeEventsLost", {"reason": "spool_full", **GATEWAY})]},
        ),
    ]


def unsigned(message_type: str) -> Headers:
    """What a writer without a key can put on a record: the type, no signature."""
    return [(TYPE_HEADER, message_type.encode())]


def forged_budget() -> tuple[bytes, bytes, Headers]:
    """A budget of $1,000 for team eng that no accepted key signed."""
    value = Budget(scope="team:eng", max_budget=Decimal("1000"), budget_duration="1mo").model_dump_json().encode()
    return b"team:eng", value, unsigned(BUDGET_TYPE)


def forged_unblock() -> tuple[bytes, bytes, Headers]:
    """An unblock of team eng at a high version that no accepted key signed."""
    decision = Decision(scope="team:eng", version=2**62, blocked=False, reason="forged", decided_at=datetime.now(UTC))
    key, value = decision.key.encode(), decision.model_dump_json().encode()
    return key, value, unsigned(DECISION_TYPE)


def expect(minute: int, alerts: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    return [{"eval_time": f"{minute}m", "alertname": name, "exp_alerts": firing} for name, firing in alerts.items()]


def referenced_names() -> dict[str, set[str]]:
    """{where: metric names it reads}: each alert rule and each dashboard panel."""
    found = {f"alert {name}": names_in_expression(expr) for name, expr in rule_expressions().items()}
    for panel in panels():
        found[f"panel {panel['title']}"] = {n for t in panel.get("targets", []) for n in names_in_expression(t["expr"])}
    return found


def panels() -> list[dict[str, Any]]:
    """The Prometheus panels of the pipeline dashboard and of the spend dashboard (budget used)."""
    found = []
    for path in (DASHBOARD, SPEND_DASHBOARD):
        dashboard = json.loads(path.read_text())
        found += [p for p in dashboard["panels"] if p.get("datasource", {}).get("type") == "prometheus"]
    return found


async def test_alert_rules_fire_exactly_in_the_states_recorded_from_a_real_pipeline(
    kafka_broker: str, make_topics, clickhouse: ClickhouseStore, clickhouse_settings: ClickhouseSettings, tmp_path: Path
) -> None:
    # given the pipeline's and a gateway's /metrics recorded through healthy and broken states
    topics = await make_topics(kafka_broker, 2)
    pipeline, pipeline_expected = await record_pipeline(kafka_broker, topics, clickhouse, clickhouse_settings)
    gateway_recording, gateway_expected = await record_gateway(kafka_broker, topics, tmp_path)
    scrapes: list[Scrape] = [s for r in (pipeline, gateway_recording) for s, _ in r.scrapes]
    exported = set().union(*(s.names for s in scrapes))

    # then every metric an alert or a dashboard panel reads is exported
    missing = {where: names - exported for where, names in referenced_names().items() if names - exported}
    assert missing == {}

    # and promtool, fed those scrapes, fires each alert in the states it should and no other
    read_by_rules = set().union(*(names_in_expression(e) for e in rule_expressions().values()))
    recordings = [pipeline, gateway_recording]
    document = rules_test(ALERTS, recordings, pipeline_expected + gateway_expected, read_by_rules)
    generated = tmp_path / "alerts_test.yml"
    generated.write_text(yaml.safe_dump(document, sort_keys=False, width=200))
    result = await asyncio.to_thread(promtool, "test", "rules", str(generated))
    assert result.returncode == 0, result.stdout + result.stderr

    # and the committed test reads only series (name and label names) a real scrape has
    if os.environ.get("SPENDPIPE_RECORD_ALERTS_TEST") == "1":
        write_committed(document)
    recorded = {(name, tuple(k for k, _ in labels)) for s in scrapes for name, labels in s.samples}
    committed = yaml.safe_load(ALERTS_TEST.read_text())
    assert {series_shape(s["series"]) for t in committed["tests"] for s in t["input_series"]} <= recorded


def series_shape(text: str) -> tuple[str, tuple[str, ...]]:
    name, _, labels = text.partition("{")
    return name, tuple(sorted(part.split("=", 1)[0] for part in labels.rstrip("}").split('",') if part))


def write_committed(document: dict[str, Any]) -> None:
    document = {**document, "rule_files": ["alerts.yml"]}
    header = (
        "# Recorded by tests/integration/test_alert_rules.py (SPENDPIPE_RECORD_ALERTS_TEST=1) from the /metrics\n"
        "# of a real pipeline and gateway; run with: promtool test rules deploy/prometheus/alerts_test.yml\n"
    )
    ALERTS_TEST.write_text(header + yaml.safe_dump(document, sort_keys=False, width=200))
