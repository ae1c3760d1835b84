"""A real LiteLLM proxy running the plugin keeps refusing a key the enforcer blocked after
forged records land on the real topics: an unblock at version 2^62 and a raised cap,
each unsigned, signed by a key nobody accepts, and badly signed under the enforcer's key id, and
an unsigned tombstone of the budget. The proxy counts each on its /metrics and keeps refusing
with LiteLLM's budget error; `spendpipe blocks list` still shows the block."""

import asyncio
import hashlib
import time
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import httpx
import litellm
import pytest

from dev.litellm_proxy import LiteLLMProxy
from spendpipe.admin.budget_admin import BudgetAdmin
from spendpipe.contracts.budgets import Budget
from spendpipe.platform.clickhouse import ClickhouseSettings, ClickhouseStore
from spendpipe.platform.kafka import KafkaSettings
from tests.conftest import aggregator_settings, enforcer_settings
from tests.support.ops import metric, off_loop
from tests.support.pipeline import running_pipeline
from tests.support.processes import run_cli
from tests.support.proxies import ops_env, ops_url, started
from tests.support.signing import FORGED_AS, WriterKey, write_forgeries
from tests.support.waiting import eventually

KEY = "sk-forged-decisions-key-0123456789"
SCOPE = f"key:{hashlib.sha256(KEY.encode()).hexdigest()}"
REJECTED = "spendpipe_gateway_records_rejected_total"


async def ask(http: httpx.AsyncClient, proxy: LiteLLMProxy) -> httpx.Response:
    return await http.post(
        f"{proxy.url}/chat/completions",
        headers={"Authorization": f"Bearer {KEY}"},
        json={"model": "gpt-4o", "messages": [{"role": "user", "content": "hello"}]},
    )


@pytest.fixture
async def proxy(kafka_broker: str, make_topics, tmp_path: Path) -> AsyncIterator[LiteLLMProxy]:
    """A proxy with the plugin's ops endpoint on (its /metrics), on fresh topics; stopped after."""
    topics = await make_topics(kafka_broker)
    async with started(
        LiteLLMProxy(tmp_path / "proxy", kafka_broker, topics, {KEY: ("alice", "search")}, ("gpt-4o",), env=ops_env())
    ) as proxy:
        yield proxy


async def test_a_proxy_keeps_refusing_after_forged_decisions_and_budgets(
    proxy: LiteLLMProxy,
    kafka_broker: str,
    clickhouse: ClickhouseStore,
    clickhouse_settings: ClickhouseSettings,
    signing_keys: WriterKey,
) -> None:
    topics = proxy.topics
    ops = ops_url(proxy)
    admin = BudgetAdmin(kafka=KafkaSettings(bootstrap_servers=kafka_broker), topics=topics)
    await asyncio.to_thread(admin.set, {"scope": SCOPE, "max_budget": "0.0020", "budget_duration": "24h"})
    aggregator = aggregator_settings(kafka_broker, topics, clickhouse_settings)
    enforcer = enforcer_settings(kafka_broker, topics, clickhouse_settings)
    async with running_pipeline(aggregator, enforcer, clickhouse, time.time), httpx.AsyncClient(timeout=30) as http:
        # given a key the proxy refuses: its budget is spent
        refused = await eventually(
            lambda: ask(http, proxy), lambda r: r.status_code != 200, within=90, what="the key refused"
        )
        assert refused.status_code == litellm.budget_exceeded_status_code, refused.text

        # when forged decisions and budgets are written on the real topics
        await write_forgeries(kafka_broker, topics, Budget(scope=SCOPE, max_budget=Decimal(1000)), genuine=signing_keys)

        # then the proxy drops and counts every one of them
        forged = float(len(FORGED_AS))  # each kind of forgery once; on budgets an unsigned tombstone too
        for topic, expected in ((topics.decisions, forged), (topics.budgets, forged + 1)):
            await eventually(
                lambda topic=topic: off_loop(lambda: metric(ops, REJECTED, topic=topic)),  # type: ignore[misc]
                lambda n, expected=expected: n == expected,  # type: ignore[misc]
                within=15,
                what=f"{expected} records dropped on {topic}",
            )
        assert await off_loop(lambda: metric(ops, REJECTED, topic=topics.decisions, reason="bad_signature")) == 1
        # and keeps refusing the key, with LiteLLM's budget error
        still = await ask(http, proxy)
        assert still.status_code == litellm.budget_exceeded_status_code, still.text
        assert still.json()["error"]["type"] == "budget_exceeded"
        # and operators still see the block
        env = {"SPENDPIPE_KAFKA__BOOTSTRAP_SERVERS": kafka_broker, "SPENDPIPE_TOPICS__DECISIONS": topics.decisions}
        listed = await asyncio.to_thread(run_cli, env, "blocks", "list")
        assert listed.returncode == 0, listed.stderr
        assert SCOPE[:30] in listed.stdout
