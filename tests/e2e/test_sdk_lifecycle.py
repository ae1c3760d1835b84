"""SDK mode at the two ends of a process, with the real LiteLLM SDK and the real pipeline:
`close()` right after the last call loses nothing (LiteLLM logs a call after `completion()`
returns), and a fresh process's first `check()` refuses a scope the enforcer has blocked."""

import asyncio
import subprocess
import sys
import threading
import time
from decimal import Decimal
from pathlib import Path
from typing import Any, cast

import litellm
from litellm.integrations.custom_logger import CustomLogger

from dev.litellm_proxy import plugin_env
from spendpipe.admin.budget_admin import BudgetAdmin
from spendpipe.contracts.money import cost_from_float
from spendpipe.gateway.plugin import SpendpipeLogger
from spendpipe.platform.clickhouse import ClickhouseSettings, ClickhouseStore
from spendpipe.platform.kafka import KafkaSettings
from tests.conftest import aggregator_settings, enforcer_settings
from tests.support.gateway import sdk_plugin
from tests.support.pipeline import counted_events, events_counted, running_aggregator, running_pipeline
from tests.support.waiting import eventually

CALLS = 20
NEIGHBOUR_S = 0.5

FRESH_PROCESS = """
import litellm
from spendpipe.gateway.plugin import SpendpipeLogger
from spendpipe.gateway.settings import GatewaySettings
from spendpipe.platform.settings import load_settings

spend = SpendpipeLogger.from_settings(load_settings(GatewaySettings))
spend.start()
for team in ("eng", "sales"):
    try:
        spend.check(model="gpt-4o", metadata={"user_api_key_team_id": team})
    except litellm.BudgetExceededError:
        print(team, "refused")
    else:
        print(team, "served")
spend.close()
"""


class SlowNeighbour(CustomLogger):  # type: ignore[misc]  # litellm is not type-checked here
    """Another logger in the same process that takes its time (one that sends each call over the
    network): LiteLLM runs a call's loggers one after another on its logging thread, so spendpipe
    sees each call later still after `completion()` returned."""

    def log_success_event(self, kwargs: Any, response_obj: Any, start_time: Any, end_time: Any) -> None:
        threading.Event().wait(NEIGHBOUR_S)  # the neighbour's own work, not synchronisation


def calls_then_close(spend: SpendpipeLogger) -> list[Decimal]:
    """The README's use: start, call, close right after the last call (off the event loop, as a
    script runs it)."""
    spend.start()
    costs = []
    for n in range(CALLS):
        response = litellm.completion(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": f"question {n}"}],
            user="customer-42",
            metadata={"user_api_key_user_id": "alice", "user_api_key_team_id": "search"},
            mock_response="answer " * (n + 1),
        )
        costs.append(cost_from_float(response._hidden_params["response_cost"]))
    spend.close()
    return costs


async def test_close_right_after_the_last_call_counts_every_call(
    kafka_broker: str,
    make_topics,
    clickhouse: ClickhouseStore,
    clickhouse_settings: ClickhouseSettings,
    tmp_path: Path,
) -> None:
    # given the pipeline and the plugin registered in the LiteLLM SDK after a slow logger
    topics = await make_topics(kafka_broker)
    neighbour = SlowNeighbour()
    async with running_aggregator(aggregator_settings(kafka_broker, topics, clickhouse_settings), clickhouse):
        with sdk_plugin(kafka_broker, topics, tmp_path / "spool") as spend:
            litellm.callbacks = [neighbour, spend]
            try:
                # when 20 calls run and the plugin is closed right after the last one
                costs = await asyncio.to_thread(calls_then_close, spend)
            finally:
                litellm.logging_callback_manager.remove_callback_from_all_lists(neighbour)

        # then every call is counted, to the last digit of LiteLLM's response_cost
        await events_counted(clickhouse, CALLS, within=60)
    assert counted_events(clickhouse) == CALLS
    ((total, requests),) = clickhouse.rows(
        "SELECT sum(spend), sum(requests) FROM spend_totals "
        "WHERE window = 'day' AND scope_type = 'global' AND model = ''"
    )
    assert (Decimal(total), requests) == (sum(costs), CALLS)
    assert sum(costs) > 0
    assert spend.metrics.lost.labels(reason="closed")._value.get() == 0


async def test_a_fresh_process_refuses_a_blocked_scope_on_its_first_check(
    kafka_broker: str,
    make_topics,
    clickhouse: ClickhouseStore,
    clickhouse_settings: ClickhouseSettings,
    tmp_path: Path,
) -> None:
    # given team eng over its budget, blocked by the enforcer through the real pipeline
    topics = await make_topics(kafka_broker)
    admin = BudgetAdmin(kafka=KafkaSettings(bootstrap_servers=kafka_broker), topics=topics)
    await asyncio.to_thread(admin.set, {"scope": "team:eng", "max_budget": "0.0001"})
    aggregator = aggregator_settings(kafka_broker, topics, clickhouse_settings)
    enforcer = enforcer_settings(kafka_broker, topics, clickhouse_settings)
    async with running_pipeline(aggregator, enforcer, clickhouse, time.time):
        with sdk_plugin(kafka_broker, topics, tmp_path / "spool") as spend:
            await litellm.acompletion(  # about 0.000225: over the cap
                model="gpt-4o",
                messages=[{"role": "user", "content": "hi"}],
                metadata={"user_api_key_team_id": "eng"},
                mock_response="hello " * 20,
            )

            def refused() -> Exception | None:
                try:
                    spend.check(model="gpt-4o", metadata={"user_api_key_team_id": "eng"})
                except litellm.BudgetExceededError as error:
                    return cast(Exception, error)
                return None

            await eventually(refused, bool, within=60, what="team eng blocked")

        # when a new process builds the plugin, starts it and checks at once (default settings)
        fresh = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-c", FRESH_PROCESS],
            env=plugin_env(kafka_broker, topics, tmp_path / "fresh-spool"),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    # then its very first check refuses eng, and another team is served
    assert fresh.returncode == 0, fresh.stderr
    assert fresh.stdout.splitlines() == ["eng refused", "sales served"], fresh.stderr
