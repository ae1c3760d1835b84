"""A key with a budget, used through two real LiteLLM proxy processes: requests succeed until
the spend crosses the cap, then both proxies refuse within a second, with LiteLLM's
budget-exceeded error naming the budget."""

import asyncio
import hashlib
import time
from decimal import Decimal

import httpx
import litellm
import pytest

from spendpipe.admin.budget_admin import BudgetAdmin
from spendpipe.contracts.money import cost_from_float
from spendpipe.platform.clickhouse import ClickhouseSettings, ClickhouseStore
from spendpipe.platform.kafka import KafkaSettings
from tests.conftest import aggregator_settings, enforcer_settings
from tests.e2e.conftest import StartProxies
from tests.support.pipeline import running_pipeline

KEY = "sk-shared-budget-key-0123456789"
KEYS = {KEY: ("alice", "search")}
CAP = Decimal("0.0020")


@pytest.mark.timing  # both proxies refuse within 1 s of the crossing
async def test_a_key_budget_holds_across_two_proxies(
    start_proxies: StartProxies,
    kafka_broker: str,
    clickhouse: ClickhouseStore,
    clickhouse_settings: ClickhouseSettings,
) -> None:
    two_proxies = await start_proxies(KEYS, count=2, models=("gpt-4o",))
    topics = two_proxies[0].topics
    key_scope = f"key:{hashlib.sha256(KEY.encode()).hexdigest()}"
    admin = BudgetAdmin(kafka=KafkaSettings(bootstrap_servers=kafka_broker), topics=topics)
    await asyncio.to_thread(admin.set, {"scope": key_scope, "max_budget": str(CAP), "budget_duration": "24h"})
    aggregator = aggregator_settings(kafka_broker, topics, clickhouse_settings)
    enforcer = enforcer_settings(kafka_broker, topics, clickhouse_settings)

    spent, crossed_at = Decimal(0), None
    refused: dict[int, tuple[float, httpx.Response]] = {}
    async with running_pipeline(aggregator, enforcer, clickhouse, time.time), httpx.AsyncClient(timeout=30) as http:
        deadline = time.monotonic() + 90
        n = 0
        while len(refused) < 2 and time.monotonic() < deadline:
            which = n % 2
            n += 1
            response = await http.post(
                f"{two_proxies[which].url}/chat/completions",
                headers={"Authorization": f"Bearer {KEY}"},
                json={"model": "gpt-4o", "messages": [{"role": "user", "content": "hello"}]},
            )
            if response.status_code == 200:
                # requests succeed while the spend is under the cap, and for at most a second after
                assert crossed_at is None or time.monotonic() - crossed_at <= 1.0, "a proxy kept serving"
                spent += cost_from_float(float(response.headers["x-litellm-response-cost"]))
                if spent >= CAP and crossed_at is None:
                    crossed_at = time.monotonic()
            else:
                assert crossed_at is not None, f"refused before the cap was reached: {response.text}"
                refused.setdefault(which, (time.monotonic(), response))

    # then both proxies refuse, within a second of the spend crossing the cap
    assert sorted(refused) == [0, 1], f"refusals: {refused}; spent {spent} of {CAP}"
    assert crossed_at is not None
    lags = [at - crossed_at for at, _ in refused.values()]
    print(f"\nspent {spent} of {CAP}; refusal lag per proxy: {', '.join(f'{lag * 1000:.0f} ms' for lag in lags)}")
    assert max(lags) <= 1.0
    # with LiteLLM's status and error shape for an exceeded budget, naming the budget
    for _, response in refused.values():
        assert response.status_code == litellm.budget_exceeded_status_code, response.text
        error = response.json()["error"]
        assert error["type"] == "budget_exceeded"
        assert "Budget has been exceeded!" in error["message"]
        assert key_scope in error["message"]
        assert "max budget 0.002 per 24h" in error["message"]
