"""LiteLLM's BudgetManager flow, switched to spendpipe with one import, in two "processes"
(two managers that share nothing but the pipeline); and SDK mode's explicit check, which raises
LiteLLM's BudgetExceededError once the enforcer has blocked the user."""

import asyncio
import functools
import time
from decimal import Decimal
from pathlib import Path
from typing import cast

import litellm

from spendpipe.budget_manager import BudgetManager, BudgetManagerSettings
from spendpipe.contracts.money import cost_from_float
from spendpipe.platform.clickhouse import ClickhouseSettings, ClickhouseStore
from spendpipe.platform.kafka import KafkaSettings
from spendpipe.store.sql_endpoint.client import DirectSource
from tests.conftest import aggregator_settings, enforcer_settings
from tests.support.gateway import sdk_plugin
from tests.support.pipeline import running_pipeline
from tests.support.waiting import eventually

BUDGET = 0.002  # dollars a day; a mocked gpt-4o call costs about 0.000225


async def test_budget_manager_across_processes_and_the_sdk_check(
    kafka_broker: str,
    make_topics,
    clickhouse: ClickhouseStore,
    clickhouse_settings: ClickhouseSettings,
    tmp_path: Path,
) -> None:
    topics = await make_topics(kafka_broker)
    settings = BudgetManagerSettings(
        kafka=KafkaSettings(bootstrap_servers=kafka_broker),
        topics=topics,
        clickhouse=clickhouse_settings,
        spool_dir=str(tmp_path / "spool"),
    )
    managers = [
        BudgetManager(project_name="app", settings=settings, sql=DirectSource(settings=clickhouse_settings))
        for _ in range(2)
    ]
    aggregator = aggregator_settings(kafka_broker, topics, clickhouse_settings)
    enforcer = enforcer_settings(kafka_broker, topics, clickhouse_settings)
    first, second = managers

    async with running_pipeline(aggregator, enforcer, clickhouse, time.time):
        # the BudgetManager example, as LiteLLM documents it, in the first process
        if not await asyncio.to_thread(first.is_valid_user, "alice"):
            await asyncio.to_thread(first.create_budget, total_budget=BUDGET, user="alice", duration="daily")
        # the second process sees the same budget
        assert await asyncio.to_thread(second.is_valid_user, "alice")
        assert await asyncio.to_thread(second.get_total_budget, "alice") == BUDGET
        assert await asyncio.to_thread(second.get_users) == ["alice"]

        # both record costs; both read the same exact total
        spent = Decimal(0)
        for n in range(12):
            response = await litellm.acompletion(
                model="gpt-4o", messages=[{"role": "user", "content": "hi"}], mock_response="hello " * (n + 1)
            )
            spent += cost_from_float(litellm.completion_cost(completion_response=response))
            await asyncio.to_thread(managers[n % 2].update_cost, completion_obj=response, user="alice")
        for manager in managers:
            await asyncio.to_thread(manager.save_data)
        for manager in managers:
            await eventually(
                functools.partial(asyncio.to_thread, manager.current_cost, "alice"),
                lambda cost: cost == spent,
                within=30,
                what="both processes see the exact total",
            )
        assert spent > Decimal(str(BUDGET))
        model_cost = await asyncio.to_thread(first.get_model_cost, "alice")
        assert model_cost == {"gpt-4o": float(spent)}

        # and SDK mode's explicit check refuses alice's next call, the way LiteLLM does
        with sdk_plugin(kafka_broker, topics, tmp_path / "plugin-spool") as plugin:

            def check() -> Exception | None:
                try:
                    plugin.check(model="gpt-4o", metadata={"user_api_key_user_id": "alice"})
                except litellm.BudgetExceededError as error:
                    return cast(Exception, error)
                return None

            refusal = await eventually(check, bool, within=30, what="alice refused")
            assert "user:alice" in str(refusal)
            plugin.check(model="gpt-4o", metadata={"user_api_key_user_id": "bob"})  # bob is served
    for manager in managers:
        manager.close()
