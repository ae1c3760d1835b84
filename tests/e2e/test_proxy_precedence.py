"""Which budget refuses a request, through a real LiteLLM proxy: the team's budget governs a
team key (not the user's personal one), a member cap refuses only that member, and end-customer
budgets apply by the request's `user` field, with `max_end_user_budget` as the default. The
plugin publishes from a child process of the proxy's."""

import asyncio
import time

import httpx
import litellm

from dev.litellm_proxy import LiteLLMProxy
from spendpipe.admin.budget_admin import BudgetAdmin
from spendpipe.gateway.recording import publisher_child
from spendpipe.platform.clickhouse import ClickhouseSettings, ClickhouseStore
from spendpipe.platform.kafka import KafkaSettings
from tests.conftest import aggregator_settings, enforcer_settings
from tests.e2e.conftest import StartProxies
from tests.support.pipeline import running_pipeline
from tests.support.waiting import eventually

KEYS = {
    "sk-alice-in-eng-0123456789": ("alice", "eng"),
    "sk-bob-in-eng-0123456789": ("bob", "eng"),
    "sk-dave-in-ops-0123456789": ("dave", "ops"),
}
ALICE, BOB, DAVE = KEYS


async def test_team_member_and_end_customer_budgets_at_the_proxy(
    start_proxies: StartProxies, kafka_broker: str, clickhouse: ClickhouseStore, clickhouse_settings: ClickhouseSettings
) -> None:
    (proxy,) = await start_proxies(KEYS, models=("gpt-4o",))
    topics = proxy.topics
    admin = BudgetAdmin(kafka=KafkaSettings(bootstrap_servers=kafka_broker), topics=topics)
    await asyncio.to_thread(
        admin.set_many,
        [
            {"scope": "team:eng", "max_budget": "100", "max_budget_in_team": "0.0008"},
            {"scope": "user:bob", "max_budget": "0.0001"},  # bob's personal budget, not his team key's
            {"scope": "global", "max_budget": "1000", "max_end_user_budget": "0.0008"},
            {"scope": "end_user:vip", "max_budget": "1"},
        ],
    )
    aggregator = aggregator_settings(kafka_broker, topics, clickhouse_settings)
    enforcer = enforcer_settings(kafka_broker, topics, clickhouse_settings)

    async with (
        running_pipeline(aggregator, enforcer, clickhouse, time.time) as service,
        httpx.AsyncClient(timeout=30) as http,
    ):

        async def ask(key: str, customer: str | None = None) -> httpx.Response:
            body: dict[str, object] = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}
            if customer:
                body["user"] = customer
            return await http.post(
                f"{proxy.url}/chat/completions", headers={"Authorization": f"Bearer {key}"}, json=body
            )

        # given (a mocked gpt-4o call costs $0.000225): alice spends $0.001125 in team eng, over
        # its member cap; bob $0.00045 for customer acme, over his personal budget but under the
        # member cap; dave (team ops) $0.0009 for acme, so acme is at $0.00135, over the default
        # end-customer cap, and $0.00045 for customer vip, under vip's own budget
        for _ in range(5):
            assert (await ask(ALICE)).status_code == 200
        for _ in range(2):
            assert (await ask(BOB, "acme")).status_code == 200
            assert (await ask(DAVE, "vip")).status_code == 200
        for _ in range(4):
            assert (await ask(DAVE, "acme")).status_code == 200

        # then alice reached her cap within the team: refused
        refused = await eventually(lambda: ask(ALICE), lambda r: r.status_code != 200, within=30, what="alice refused")
        # and requests for customer acme reached the end-customer default: refused
        customer = await eventually(
            lambda: ask(DAVE, "acme"), lambda r: r.status_code != 200, within=30, what="acme refused"
        )
        # and bob's personal budget is exceeded too: the enforcer blocks user:bob
        await eventually(
            lambda: {d.scope for d in service.enforcer.blocks()},
            lambda scopes: "user:bob" in scopes,
            within=30,
            what="user:bob blocked",
        )

    for response, scope in ((refused, "team_member:eng/alice"), (customer, "end_user:acme")):
        assert response.status_code == litellm.budget_exceeded_status_code
        assert response.json()["error"]["type"] == "budget_exceeded"
        assert scope in response.json()["error"]["message"]
    # bob's team key is governed by the team budget, not his exceeded personal one, and customer
    # vip is served under its own, larger budget
    assert (await ask_after(proxy, BOB)).status_code == 200
    assert (await ask_after(proxy, DAVE, "vip")).status_code == 200
    # and the plugin built and sent those calls' events in a child process of the proxy's
    # (`SPENDPIPE_PUBLISHER=auto`), not on a thread of the proxy's own
    assert any(publisher_child.__name__ in line for line in proxy.descendants()), proxy.descendants()


async def ask_after(proxy: LiteLLMProxy, key: str, customer: str | None = None) -> httpx.Response:
    body: dict[str, object] = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}
    if customer:
        body["user"] = customer
    async with httpx.AsyncClient(timeout=30) as http:
        return await http.post(f"{proxy.url}/chat/completions", headers={"Authorization": f"Bearer {key}"}, json=body)
