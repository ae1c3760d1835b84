"""Hostile attribution through a real LiteLLM proxy: whatever a client puts in the
request's `user` and metadata (far too long, a JSON object, a number, markup, control characters),
every call the proxy serves is counted against every scope it has, to the exact Decimal of the
response costs, and budgets refuse on time, a long customer's under its bounded label."""

import asyncio
import hashlib
import json
import time
from collections import defaultdict
from decimal import Decimal

import httpx
import pytest

from dev.litellm_proxy import LiteLLMProxy
from spendpipe.admin.budget_admin import BudgetAdmin
from spendpipe.aggregator.settings import AggregatorSettings
from spendpipe.contracts.money import cost_from_float
from spendpipe.enforcer.settings import EnforcerSettings
from spendpipe.gateway.labels import label_of
from spendpipe.platform.clickhouse import ClickhouseSettings, ClickhouseStore
from spendpipe.platform.kafka import KafkaSettings
from tests.conftest import aggregator_settings, enforcer_settings
from tests.e2e.conftest import StartProxies
from tests.support.pipeline import running_pipeline, totals
from tests.support.waiting import eventually

KEY = "sk-hostile-attribution-key-0123456789"
KEY_HASH = hashlib.sha256(KEY.encode()).hexdigest()
KEYS = {KEY: ("alice", "search")}
CAP = Decimal("0.0030")  # about 14 calls: more than one round of USERS
LONG = "customer-" + "x" * 600
USERS: list[object] = [
    LONG,
    LONG[:-1] + "y",  # another customer with the same 200-character prefix
    {"id": "acme", "plan": ["pro", 1]},
    12345,
    2.5,
    True,
    ["a", "b"],
    "[bold]x[/bold]",
    "[/]",
    "nul\u0000esc\u001b[31m\nnext line",
    "\u202eright-to-left " + "é" * 300,
    # (a lone surrogate the proxy refuses itself, with a 400: the unit tests cover it, as the SDK sees it)
]
METADATA = {
    "tags": [f"tag-{n}-" + "t" * 300 for n in range(40)] + [{"tag": "object"}, 7, "[bold]x[/bold]"],
    "session_id": "s" * 400,
    "agent_id": "agent-\u0000" + "a" * 400,  # an object here makes LiteLLM's own limiter fail the call
    "trace_id": "[/]" * 200,
}


async def call(http: httpx.AsyncClient, proxy: LiteLLMProxy, user: object) -> httpx.Response:
    body = {
        "model": "gpt-4o",
        "messages": [{"role": "user", "content": "hello"}],
        "user": user,
        "metadata": METADATA,
    }
    return await http.post(
        f"{proxy.url}/chat/completions",
        headers={"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"},
        content=json.dumps(body).encode(),  # escaped JSON: any str goes over the wire
    )


def cost_of(response: httpx.Response) -> Decimal:
    return cost_from_float(float(response.headers["x-litellm-response-cost"]))


def is_budget_refusal(response: httpx.Response) -> bool:
    return response.status_code != 200 and response.json()["error"]["type"] == "budget_exceeded"


async def proxy_with_budget(
    start_proxies: StartProxies, kafka_broker: str, clickhouse: ClickhouseSettings, scope: str, cap: Decimal
) -> tuple[LiteLLMProxy, AggregatorSettings, EnforcerSettings]:
    """A proxy for `KEYS` whose `scope` has a daily budget of `cap`, and its pipeline's settings."""
    (proxy,) = await start_proxies(KEYS, models=("gpt-4o",))
    admin = BudgetAdmin(kafka=KafkaSettings(bootstrap_servers=kafka_broker), topics=proxy.topics)
    await asyncio.to_thread(admin.set, {"scope": scope, "max_budget": str(cap), "budget_duration": "24h"})
    return (
        proxy,
        aggregator_settings(kafka_broker, proxy.topics, clickhouse),
        enforcer_settings(kafka_broker, proxy.topics, clickhouse),
    )


@pytest.mark.timing  # refused within 1 s of the crossing
async def test_every_served_call_is_counted_and_the_key_budget_refuses_on_time(
    start_proxies: StartProxies,
    kafka_broker: str,
    clickhouse: ClickhouseStore,
    clickhouse_settings: ClickhouseSettings,
) -> None:
    # given a key with a small budget behind a real proxy and the pipeline
    proxy, aggregator, enforcer = await proxy_with_budget(
        start_proxies, kafka_broker, clickhouse_settings, f"key:{KEY_HASH}", CAP
    )

    spent, crossed_at, refused_at = Decimal(0), None, None
    per_customer: dict[str, Decimal] = defaultdict(Decimal)
    async with running_pipeline(aggregator, enforcer, clickhouse, time.time), httpx.AsyncClient(timeout=30) as http:
        # when a client sends hostile `user` values and metadata until it is refused
        deadline, n = time.monotonic() + 90, 0
        while refused_at is None and time.monotonic() < deadline:
            user = USERS[n % len(USERS)]
            n += 1
            response = await call(http, proxy, user)
            if response.status_code == 200:
                assert crossed_at is None or time.monotonic() - crossed_at <= 1.0, "the proxy kept serving"
                spent += cost_of(response)
                customer = label_of(user)
                assert customer is not None
                per_customer[customer] += cost_of(response)
                if spent >= CAP and crossed_at is None:
                    crossed_at = time.monotonic()
            else:
                assert is_budget_refusal(response), f"{user!r} was not served: {response.text}"
                assert crossed_at is not None, f"refused before the cap was reached: {response.text}"
                refused_at = time.monotonic()

        # then the budget refused within a second of the spend crossing the cap
        assert crossed_at is not None, f"spent {spent} of {CAP} in {n} calls"
        assert refused_at is not None, f"never refused; spent {spent} of {CAP}"
        print(f"\n{n - 1} calls served, {spent} of {CAP}; refused after {(refused_at - crossed_at) * 1000:.0f} ms")
        assert refused_at - crossed_at <= 1.0
        # and every served call is in the totals of its key, user, team, membership and global
        scopes = [("key", KEY_HASH), ("user", "alice"), ("team", "search"), ("team_member", "search/alice")]
        expected = {(kind, scope_id, ""): spent for kind, scope_id in [*scopes, ("global", "")]}
        await eventually(
            lambda: {scope: totals(clickhouse).get(scope) for scope in expected},
            lambda found: found == expected,
            within=60,
            what=f"every served call counted, {spent} per scope",
        )
    # and each customer's under its label, the two long customers apart
    customers = {i: spend for (kind, i, model), spend in totals(clickhouse).items() if kind == "end_user" and not model}
    assert customers == dict(per_customer)
    assert label_of(USERS[0]) != label_of(USERS[1])
    assert all(len(customer) <= 256 for customer in customers)


async def test_a_long_customer_with_a_budget_is_refused_under_its_label(
    start_proxies: StartProxies,
    kafka_broker: str,
    clickhouse: ClickhouseStore,
    clickhouse_settings: ClickhouseSettings,
) -> None:
    # given a budget on the customer named by a 609-character `user`, set under its label
    customer = f"end_user:{label_of(LONG)}"
    proxy, aggregator, enforcer = await proxy_with_budget(
        start_proxies, kafka_broker, clickhouse_settings, customer, Decimal("0.00001")
    )

    async with running_pipeline(aggregator, enforcer, clickhouse, time.time), httpx.AsyncClient(timeout=30) as http:
        # when that customer spends past it
        first = await call(http, proxy, LONG)
        assert first.status_code == 200, first.text

        # then the proxy refuses that customer, naming its label
        refusal = await eventually(
            lambda: call(http, proxy, LONG), is_budget_refusal, within=30, what="the long customer refused"
        )
        assert customer in refusal.json()["error"]["message"]
        # and serves the other customer that shares its prefix
        other = await call(http, proxy, LONG[:-1] + "y")
        assert other.status_code == 200, other.text


async def test_a_client_cannot_name_a_provider_that_its_models_deployments_do_not_use(
    start_proxies: StartProxies,
) -> None:
    """LiteLLM merges the request over the deployment: a client naming another provider is served by
    the deployment's upstream, but the call is priced under a model with no price, so free."""
    (proxy,) = await start_proxies(KEYS, models=("gpt-4o",))

    async with httpx.AsyncClient(timeout=30) as http:

        async def naming(provider: object) -> httpx.Response:
            body = {
                "model": "gpt-4o",
                "messages": [{"role": "user", "content": "hello"}],
                "custom_llm_provider": provider,
            }
            return await http.post(
                f"{proxy.url}/chat/completions", headers={"Authorization": f"Bearer {KEY}"}, json=body
            )

        # when a client names providers that gpt-4o's deployment does not use, and then its own
        others = [
            (provider, await naming(provider)) for provider in ("custom_openai", "ollama", "deepinfra", ["openai"])
        ]
        own = await naming("openai")

    # then each of the others is refused as a bad request naming the parameter
    for provider, response in others:
        assert response.status_code == 400, f"{provider!r} was served: {response.text}"
        error = response.json()["error"]
        assert (error["type"], error["param"]) == ("invalid_request_error", "custom_llm_provider"), error
        assert "is not the provider of model 'gpt-4o' (its deployments use: openai)" in error["message"]
    # and the call naming its own provider is served and priced
    assert own.status_code == 200, own.text
    assert cost_of(own) > 0
