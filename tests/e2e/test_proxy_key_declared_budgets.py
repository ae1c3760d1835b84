"""A budget LiteLLM users already set on a virtual key (`max_budget`, `budget_duration` on the
key's `UserAPIKeyAuth`, through `custom_auth`) is enforced fleet-wide with no `budgets set`: the
proxy that sees the key publishes its budget, the enforcer applies it, and once the key's spend
crosses it a second proxy, which never served the key, refuses it too, and the refusal's spend
headers carry spendpipe's figures. An operator's budget for the same key then wins over the key's
own."""

import asyncio
import hashlib
import time
from decimal import Decimal

import httpx
import litellm

from spendpipe.admin.budget_admin import BudgetAdmin
from spendpipe.platform.clickhouse import ClickhouseSettings, ClickhouseStore
from spendpipe.platform.kafka import KafkaSettings
from tests.conftest import aggregator_settings, enforcer_settings
from tests.e2e.conftest import StartProxies
from tests.support.pipeline import running_pipeline
from tests.support.waiting import eventually

KEY = "sk-key-with-its-own-budget-0123456789"
KEYS = {KEY: ("alice", "search")}
CAP = 0.002
KEY_SCOPE = f"key:{hashlib.sha256(KEY.encode()).hexdigest()}"
BODY = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hello"}]}


async def test_a_budget_declared_on_a_litellm_key_is_refused_at_every_proxy(
    start_proxies: StartProxies,
    kafka_broker: str,
    clickhouse: ClickhouseStore,
    clickhouse_settings: ClickhouseSettings,
) -> None:
    first, second = await start_proxies(
        KEYS, count=2, models=("gpt-4o",), key_fields={KEY: {"max_budget": CAP, "budget_duration": "24h"}}
    )
    topics = first.topics
    aggregator = aggregator_settings(kafka_broker, topics, clickhouse_settings)
    enforcer = enforcer_settings(kafka_broker, topics, clickhouse_settings)

    async with running_pipeline(aggregator, enforcer, clickhouse, time.time), httpx.AsyncClient(timeout=30) as http:

        async def call(proxy_url: str) -> httpx.Response:
            return await http.post(
                f"{proxy_url}/chat/completions", headers={"Authorization": f"Bearer {KEY}"}, json=BODY
            )

        # when the key spends through the first proxy only, until that proxy refuses it
        refused = await eventually(
            lambda: call(first.url), lambda r: r.status_code != 200, within=90, what="the first proxy refuses"
        )
        spent = clickhouse.rows(
            "SELECT sum(spend) FROM spend_totals WHERE window = 'day' AND model = '' AND scope_type = 'key'"
        )[0][0]
        # then the refusal is the key's own budget, in LiteLLM's shape, after the spend reached it
        assert Decimal(spent) >= Decimal(str(CAP))
        assert refused.status_code == litellm.budget_exceeded_status_code, refused.text
        error = refused.json()["error"]
        assert error["type"] == "budget_exceeded"
        assert KEY_SCOPE in error["message"]
        assert "max budget 0.002 per 24h" in error["message"]
        # with LiteLLM's spend headers saying spendpipe's exact figures, not the proxy's own 0.0
        assert Decimal(refused.headers["x-litellm-key-spend"]) >= Decimal(str(CAP))
        assert Decimal(refused.headers["x-litellm-key-max-budget"]) == Decimal(str(CAP))
        # and the second proxy, which never served the key, refuses it too
        second_refusal = await call(second.url)
        assert second_refusal.status_code == litellm.budget_exceeded_status_code, second_refusal.text

        # when an operator sets a budget of their own for the key, it wins over the key's
        admin = BudgetAdmin(kafka=KafkaSettings(bootstrap_servers=kafka_broker), topics=topics)
        await asyncio.to_thread(admin.set, {"scope": KEY_SCOPE, "max_budget": "100", "budget_duration": "24h"})
        served = await eventually(
            lambda: call(second.url), lambda r: r.status_code == 200, within=30, what="the operator's budget wins"
        )
        assert served.json()["choices"]
