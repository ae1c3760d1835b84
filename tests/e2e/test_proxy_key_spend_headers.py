"""A successful response through a real LiteLLM proxy carries spendpipe's figure for its key in
LiteLLM's `x-litellm-key-spend` (LiteLLM without its database says 0.0 plus the call's own cost),
with a header saying what the figure is made of; the figure is exactly what the pipeline counts for
the key."""

import time
from decimal import Decimal

import httpx

from spendpipe.contracts.money import cost_from_float
from spendpipe.platform.clickhouse import ClickhouseSettings, ClickhouseStore
from tests.conftest import aggregator_settings, enforcer_settings
from tests.e2e.conftest import StartProxies
from tests.support.pipeline import running_pipeline
from tests.support.waiting import eventually

KEY = "sk-key-spend-headers-0123456789"
KEYS = {KEY: ("alice", "search")}
BODY = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hello"}]}


async def test_a_successful_response_carries_spendpipes_figure_for_its_key(
    start_proxies: StartProxies,
    kafka_broker: str,
    clickhouse: ClickhouseStore,
    clickhouse_settings: ClickhouseSettings,
) -> None:
    (proxy,) = await start_proxies(
        KEYS, models=("gpt-4o",), key_fields={KEY: {"max_budget": 100.0, "budget_duration": "24h"}}
    )
    aggregator = aggregator_settings(kafka_broker, proxy.topics, clickhouse_settings)
    enforcer = enforcer_settings(kafka_broker, proxy.topics, clickhouse_settings)
    costs: list[Decimal] = []

    async with running_pipeline(aggregator, enforcer, clickhouse, time.time), httpx.AsyncClient(timeout=30) as http:

        async def call() -> tuple[Decimal, httpx.Response]:
            """A call, and the sum of the costs of every call so far, this one included."""
            response = await http.post(
                f"{proxy.url}/chat/completions", headers={"Authorization": f"Bearer {KEY}"}, json=BODY
            )
            assert response.status_code == 200, response.text
            costs.append(cost_from_float(float(response.headers["x-litellm-response-cost"])))
            return sum(costs, Decimal(0)), response

        # the key's first call: its own cost, as LiteLLM's header counts it
        so_far, first = await call()
        assert Decimal(first.headers["x-litellm-key-spend"]) == so_far > 0
        # calls until the figure holds every call (each call's event is built just after it is answered)
        so_far, answered = await eventually(
            call,
            lambda made: Decimal(made[1].headers["x-litellm-key-spend"]) == made[0],
            within=30,
            what="the figure holding every call",
        )
        # where LiteLLM without its database says the call's own cost: 0.0 plus the response cost
        assert len(costs) >= 2
        assert Decimal(answered.headers["x-litellm-key-spend"]) > costs[-1]
        assert answered.headers["x-spendpipe-key-spend-basis"].startswith("this gateway since ")
        # and it is the pipeline's exact count of those calls
        counted = await eventually(
            lambda: Decimal(
                clickhouse.rows(
                    "SELECT sum(spend) FROM spend_totals WHERE window = 'day' AND model = '' AND scope_type = 'key'"
                )[0][0]
                or 0
            ),
            lambda total: total == so_far,
            within=30,
            what="the pipeline counting every call",
        )
        assert counted == Decimal(answered.headers["x-litellm-key-spend"])
