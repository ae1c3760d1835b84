"""The caps and limits LiteLLM's key object carries for the key's team and end customer
(`team_max_budget`, `end_user_rpm_limit`, set by `custom_auth` as LiteLLM's own auth sets them
from its tables) are enforced fleet-wide with no `budgets set`: once the team's spend crosses its
cap through one proxy, a second proxy refuses another key of the team it never served; once the
end customer reaches its rate limit through one key, the second proxy refuses the customer on
another key, which carries no limit of its own, while that key serves other customers. An
operator's budget for the team then wins over the cap its keys declare."""

import asyncio
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

TEAM_CAP = 0.002
END_USER_RPM = 3
FIRST, SECOND = "sk-search-first-key-0123456789", "sk-search-second-key-0123456789"
SUPPORT, SUPPORT_OTHER = "sk-support-key-0123456789", "sk-support-other-key-0123456789"
KEYS = {
    FIRST: ("alice", "search"),
    SECOND: ("bob", "search"),
    SUPPORT: ("carol", "support"),
    SUPPORT_OTHER: ("dave", "support"),
}
KEY_FIELDS: dict[str, dict[str, object]] = {
    FIRST: {"team_max_budget": TEAM_CAP},
    SECOND: {"team_max_budget": TEAM_CAP},
    SUPPORT: {"end_user_id": "customer-7", "end_user_rpm_limit": END_USER_RPM},
}


async def test_a_team_cap_and_an_end_customer_limit_on_litellms_key_object_hold_at_every_proxy(
    start_proxies: StartProxies,
    kafka_broker: str,
    clickhouse: ClickhouseStore,
    clickhouse_settings: ClickhouseSettings,
) -> None:
    first, second = await start_proxies(KEYS, count=2, models=("gpt-4o",), key_fields=KEY_FIELDS)
    topics = first.topics
    aggregator = aggregator_settings(kafka_broker, topics, clickhouse_settings)
    enforcer = enforcer_settings(kafka_broker, topics, clickhouse_settings)
    admin = BudgetAdmin(kafka=KafkaSettings(bootstrap_servers=kafka_broker), topics=topics)

    async with running_pipeline(aggregator, enforcer, clickhouse, time.time), httpx.AsyncClient(timeout=30) as http:

        async def call(proxy_url: str, key: str, user: str | None = None) -> httpx.Response:
            body = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hello"}]}
            if user is not None:
                body["user"] = user
            return await http.post(
                f"{proxy_url}/chat/completions", headers={"Authorization": f"Bearer {key}"}, json=body
            )

        # given no budget set by anyone
        assert await asyncio.to_thread(admin.current) == []

        # when the team spends through the first proxy with one of its keys, until refused
        refused = await eventually(
            lambda: call(first.url, FIRST), lambda r: r.status_code != 200, within=90, what="the team is refused"
        )
        # then the refusal is the team's cap, in LiteLLM's shape, after the team's spend reached it
        spent = clickhouse.rows(
            "SELECT sum(spend) FROM spend_totals WHERE window = 'day' AND model = '' AND scope_type = 'team'"
            " AND scope_id = 'search'"
        )[0][0]
        assert Decimal(spent) >= Decimal(str(TEAM_CAP))
        assert refused.status_code == litellm.budget_exceeded_status_code, refused.text
        error = refused.json()["error"]
        assert error["type"] == "budget_exceeded"
        assert "team:search" in error["message"]
        assert "max budget 0.002" in error["message"]
        # and the second proxy refuses the team's other key, which never made a call
        other_key = await eventually(
            lambda: call(second.url, SECOND), lambda r: r.status_code != 200, within=5, what="the second proxy refuses"
        )
        assert other_key.status_code == litellm.budget_exceeded_status_code, other_key.text
        assert "team:search" in other_key.json()["error"]["message"]
        # while another team is served
        assert (await call(second.url, SUPPORT_OTHER)).status_code == 200

        # when the end customer the support key carries calls through the first proxy, until limited
        # (there LiteLLM's own limiter also counts the key object's `end_user_rpm_limit`, per replica)
        limited = await eventually(
            lambda: call(first.url, SUPPORT, "customer-7"),
            lambda r: r.status_code != 200,
            within=60,
            what="the end customer is rate limited",
        )
        assert limited.status_code == 429, limited.text
        # then the second proxy limits the customer on another key, which carries no limit LiteLLM
        # could count: the pipeline-wide limit of the scope the first key's object declared
        elsewhere = await eventually(
            lambda: call(second.url, SUPPORT_OTHER, "customer-7"),
            lambda r: r.status_code != 200,
            within=5,
            what="the second proxy limits the customer",
        )
        assert elsewhere.status_code == 429, elsewhere.text
        message = elsewhere.json()["error"]["message"]
        assert "end_user:customer-7" in message
        assert f"rpm_limit {END_USER_RPM} per sliding minute" in message
        # and that key still serves another customer
        assert (await call(second.url, SUPPORT_OTHER, "customer-8")).status_code == 200
        # with still no budget of anyone's on the budgets topic
        assert await asyncio.to_thread(admin.current) == []

        # when an operator sets a budget of their own for the team, it wins over the declared cap
        await asyncio.to_thread(admin.set, {"scope": "team:search", "max_budget": "100"})
        served = await eventually(
            lambda: call(second.url, SECOND),
            lambda r: r.status_code == 200,
            within=30,
            what="the operator's budget wins",
        )
        assert served.json()["choices"]
