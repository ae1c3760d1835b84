"""The spend and budget gauges on the /metrics of `spendpipe run all` (real broker, embedded
chDB), fed real events: one series set per budgeted cap with the exact spend, none for a scope
that only sends traffic, the series cap and its omitted count, blocks in force by kind, and
the last committed flush."""

import asyncio
import time
from decimal import Decimal
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from dev.local_kafka import free_port_pair
from spendpipe.admin.budget_admin import BudgetAdmin
from spendpipe.platform.kafka import KafkaSettings
from tests.support.events import make_event
from tests.support.ops import get, metric, off_loop
from tests.support.pipeline import produce
from tests.support.processes import run_all
from tests.support.waiting import eventually


def budget_series(url: str) -> set[tuple[str, str, str]]:
    """(scope, model, window) of every spendpipe_budget_spend_dollars series."""
    _, text = get(f"{url}/metrics")
    return {
        (sample.labels["scope"], sample.labels["model"], sample.labels["window"])
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "spendpipe_budget_spend_dollars"
    }


async def test_run_all_exports_each_budgets_spend_and_nothing_for_unbudgeted_traffic(
    kafka_broker: str, make_topics, tmp_path: Path
) -> None:
    # given `spendpipe run all` with two budgets and room for three budget readings on /metrics
    topics = await make_topics(kafka_broker)
    ops_port = free_port_pair()
    service = run_all(kafka_broker, topics, tmp_path, sql_port=free_port_pair(), ops_port=ops_port)
    service.env |= {
        "SPENDPIPE_BUDGET_METRICS__REFRESH_INTERVAL_S": "0.2",
        "SPENDPIPE_BUDGET_METRICS__MAX_SERIES": "3",
    }
    admin = BudgetAdmin(kafka=KafkaSettings(bootstrap_servers=kafka_broker), topics=topics)
    eng = {
        "scope": "team:eng",
        "max_budget": "1.00",
        "budget_duration": "1mo",
        "budget_limits": [{"budget_duration": "1d", "max_budget": "0.50"}],
        "model_max_budget": {"gpt-4o": {"max_budget": "0.20"}},
    }
    await asyncio.to_thread(admin.set, eng)
    await asyncio.to_thread(admin.set, {"scope": "user:alice", "max_budget": "10"})
    url = f"http://127.0.0.1:{ops_port}"

    service.start()
    try:
        await off_loop(lambda: service.wait_http_ok(f"{url}/readyz", timeout=90))
        started = time.time()

        # when team eng spends $0.30 on gpt-4o and a team without a budget spends too
        events = [make_event(team_id="eng", model="gpt-4o", cost=Decimal("0.10")) for _ in range(3)]
        events += [make_event(team_id=f"stranger-{n}", user_id="bob", cost=Decimal("5")) for n in range(5)]
        await produce(kafka_broker, topics.events, [event.to_json() for event in events])

        # then the gpt-4o cap is over and blocks; the readings closest to their caps are exported
        await eventually(
            lambda: off_loop(lambda: metric(url, "spendpipe_blocks_in_force", kind="budget")),
            lambda blocks: blocks == 1,
            within=60,
            what="the gpt-4o block in force",
        )
        await eventually(
            lambda: off_loop(lambda: metric(url, "spendpipe_budget_spend_dollars", scope="team:eng", window="1mo")),
            lambda spend: abs(spend - 0.3) < 1e-9,
            within=30,
            what="$0.30 spent by team eng this month",
        )

        def reading(name: str, model: str, window: str) -> float:
            return metric(url, name, scope="team:eng", model=model, window=window)

        assert await off_loop(lambda: budget_series(url)) == {
            ("team:eng", "gpt-4o", "lifetime"),  # 150% used
            ("team:eng", "", "1d"),  # 60%
            ("team:eng", "", "1mo"),  # 30%
        }  # user:alice's lifetime (0%) is the fourth: omitted
        assert await off_loop(lambda: metric(url, "spendpipe_budget_series_omitted")) == 1
        assert abs(await off_loop(lambda: reading("spendpipe_budget_spend_dollars", "gpt-4o", "lifetime")) - 0.3) < 1e-9
        assert abs(await off_loop(lambda: reading("spendpipe_budget_remaining_dollars", "", "1d")) - 0.2) < 1e-9
        assert await off_loop(lambda: reading("spendpipe_budget_cap_dollars", "", "1mo")) == 1.0
        assert await off_loop(lambda: metric(url, "spendpipe_blocks_in_force", kind="rate_limit")) == 0
        # the block goes out once the totals are in, before the flush ends (its copy into
        # `events`): the gauge is set when the flush ends
        flushed = await eventually(
            lambda: off_loop(lambda: metric(url, "spendpipe_aggregator_last_flush_timestamp_seconds")),
            lambda at: at > 0,
            within=30,
            what="the end of a flush",
        )
        assert started <= flushed <= time.time()
    finally:
        await asyncio.to_thread(service.stop)

    assert service.process is not None
    assert service.process.returncode == 0, service.log_tail()
