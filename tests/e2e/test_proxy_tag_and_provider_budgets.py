"""Tag and provider budgets through a real LiteLLM proxy (mock_response models): calls carrying a
tag are refused once the tag's budget is spent, while calls without it still pass; calls to a
provider are refused once the provider's budget is spent, while calls to another provider still
pass. Refusals are LiteLLM's budget-exceeded error, naming the budget."""

import asyncio
import hashlib
import time
from decimal import Decimal
from typing import Any

import httpx
import litellm

from spendpipe.admin.budget_admin import BudgetAdmin
from spendpipe.admin.budget_file import budgets_from_document
from spendpipe.contracts.money import cost_from_float
from spendpipe.platform.clickhouse import ClickhouseSettings, ClickhouseStore
from spendpipe.platform.kafka import KafkaSettings
from tests.conftest import aggregator_settings, enforcer_settings
from tests.e2e.conftest import StartProxies
from tests.support.pipeline import running_pipeline, totals
from tests.support.waiting import eventually

KEY = "sk-tag-and-provider-key-0123456789"
KEYS = {KEY: ("alice", "search")}
OPENAI_MODEL, ANTHROPIC_MODEL = "gpt-4o", "claude-3-haiku"
MODEL_PARAMS: dict[str, dict[str, object]] = {ANTHROPIC_MODEL: {"model": "anthropic/claude-haiku-4-5"}}
TAG_CAP, OPENAI_CAP = Decimal("0.0001"), Decimal("0.0005")


async def test_tag_and_provider_budgets_through_a_real_proxy(
    start_proxies: StartProxies,
    kafka_broker: str,
    clickhouse: ClickhouseStore,
    clickhouse_settings: ClickhouseSettings,
) -> None:
    (proxy,) = await start_proxies(KEYS, models=(OPENAI_MODEL, ANTHROPIC_MODEL), model_params=MODEL_PARAMS)
    admin = BudgetAdmin(kafka=KafkaSettings(bootstrap_servers=kafka_broker), topics=proxy.topics)
    provider_config = {"openai": {"budget_limit": str(OPENAI_CAP), "time_period": "1d"}}
    await asyncio.to_thread(
        admin.set_many,
        [
            {"scope": "tag:batch", "max_budget": str(TAG_CAP), "budget_duration": "1d"},
            *budgets_from_document({"router_settings": {"provider_budget_config": provider_config}}),
        ],
    )
    aggregator = aggregator_settings(kafka_broker, proxy.topics, clickhouse_settings)
    enforcer = enforcer_settings(kafka_broker, proxy.topics, clickhouse_settings)

    async with running_pipeline(aggregator, enforcer, clickhouse, time.time), httpx.AsyncClient(timeout=30) as http:

        async def call(model: str, tags: list[str] | None = None) -> httpx.Response:
            body: dict[str, Any] = {"model": model, "messages": [{"role": "user", "content": "hello"}]}
            if tags is not None:
                body["metadata"] = {"tags": tags}
            return await http.post(
                f"{proxy.url}/chat/completions", headers={"Authorization": f"Bearer {KEY}"}, json=body
            )

        async def until_refused(model: str, cap: Decimal, tags: list[str] | None = None) -> tuple[Decimal, Any]:
            """Calls until one is refused; the spend served before it and the refusal."""
            spent, deadline = Decimal(0), time.monotonic() + 60
            while time.monotonic() < deadline:
                response = await call(model, tags)
                if response.status_code != 200:
                    assert spent >= cap, f"refused at {spent} of {cap}: {response.text}"
                    return spent, response
                spent += cost_from_float(float(response.headers["x-litellm-response-cost"]))
            raise AssertionError(f"never refused; served {spent} of {cap}")

        # a tag's budget: calls carrying the tag (among others) are refused once it is spent
        tag_spent, refused = await until_refused(ANTHROPIC_MODEL, TAG_CAP, tags=["batch", "nightly", "batch"])
        assert_budget_exceeded(refused, "tag:batch")
        assert (await call(OPENAI_MODEL, tags=["interactive", "batch"])).status_code != 200
        # the tag given as LiteLLM's header, or as the body's top-level `tags`, is the same tag
        by_header = await http.post(
            f"{proxy.url}/chat/completions",
            headers={"Authorization": f"Bearer {KEY}", "x-litellm-tags": "batch"},
            json={"model": ANTHROPIC_MODEL, "messages": [{"role": "user", "content": "hello"}]},
        )
        assert_budget_exceeded(by_header, "tag:batch")
        top_level = await http.post(
            f"{proxy.url}/chat/completions",
            headers={"Authorization": f"Bearer {KEY}"},
            json={"model": ANTHROPIC_MODEL, "messages": [{"role": "user", "content": "hello"}], "tags": ["batch"]},
        )
        assert_budget_exceeded(top_level, "tag:batch")
        # while calls without it still pass
        assert (await call(ANTHROPIC_MODEL)).status_code == 200
        assert (await call(ANTHROPIC_MODEL, tags=["nightly"])).status_code == 200

        # a provider's budget: calls to openai are refused once it is spent, to anthropic not
        openai_spent, refused = await until_refused(OPENAI_MODEL, OPENAI_CAP)
        assert_budget_exceeded(refused, "provider:openai")
        assert (await call(ANTHROPIC_MODEL)).status_code == 200

        # the served calls' costs, exactly: once per tag (a repeated tag once), the refused ones nothing
        expected = {("tag", "batch", ""): tag_spent, ("provider", "openai", ""): openai_spent}
        day = await eventually(
            lambda: totals(clickhouse),
            lambda day: {k: day.get(k) for k in expected} == expected,
            within=30,
            what=f"totals {expected}",
        )
    assert day.get(("tag", "interactive", ""), Decimal(0)) == 0  # its only call was refused: no cost
    assert day[("provider", "anthropic", "")] > 0
    assert day[("key", hashlib.sha256(KEY.encode()).hexdigest(), "")] == day[("global", "", "")]


async def test_a_keys_tag_budget_holds_whatever_tags_the_client_sends(
    start_proxies: StartProxies,
    kafka_broker: str,
    clickhouse: ClickhouseStore,
    clickhouse_settings: ClickhouseSettings,
) -> None:
    """The key carries the tag `project:alpha` (its metadata), whose budget is small. LiteLLM lists
    a request's own tags before the key's: a client naming 32 tags of its own must not push the
    key's tag out of the 32 that count, at the check or in the call's event."""
    key_fields: dict[str, dict[str, object]] = {KEY: {"metadata": {"tags": ["project:alpha"]}}}
    (proxy,) = await start_proxies(KEYS, models=(OPENAI_MODEL,), key_fields=key_fields)
    admin = BudgetAdmin(kafka=KafkaSettings(bootstrap_servers=kafka_broker), topics=proxy.topics)
    await asyncio.to_thread(
        admin.set_many, [{"scope": "tag:project:alpha", "max_budget": str(TAG_CAP), "budget_duration": "1d"}]
    )
    aggregator = aggregator_settings(kafka_broker, proxy.topics, clickhouse_settings)
    enforcer = enforcer_settings(kafka_broker, proxy.topics, clickhouse_settings)
    junk = [f"junk-{n}" for n in range(32)]
    body = {"model": OPENAI_MODEL, "messages": [{"role": "user", "content": "hi"}], "metadata": {"tags": junk}}

    async with running_pipeline(aggregator, enforcer, clickhouse, time.time), httpx.AsyncClient(timeout=30) as http:
        spent, deadline, refused = Decimal(0), time.monotonic() + 60, None
        while refused is None and time.monotonic() < deadline:
            response = await http.post(
                f"{proxy.url}/chat/completions",
                headers={"Authorization": f"Bearer {KEY}"},
                json=body,
            )
            if response.status_code == 200:
                spent += cost_from_float(float(response.headers["x-litellm-response-cost"]))
            else:
                refused = response
        assert refused is not None, f"never refused; served {spent} of {TAG_CAP}"
        assert_budget_exceeded(refused, "tag:project:alpha")
        assert spent >= TAG_CAP
        await eventually(
            lambda: totals(clickhouse).get(("tag", "project:alpha", "")),
            lambda counted: counted == spent,
            within=30,
            what=f"tag:project:alpha's total at {spent}",
        )


def assert_budget_exceeded(response: httpx.Response, scope: str) -> None:
    """LiteLLM's status and error shape for an exceeded budget, naming the budget."""
    assert response.status_code == litellm.budget_exceeded_status_code, response.text
    error = response.json()["error"]
    assert error["type"] == "budget_exceeded"
    assert "Budget has been exceeded!" in error["message"]
    assert scope in error["message"]
