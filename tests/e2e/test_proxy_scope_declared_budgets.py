"""The caps and limits LiteLLM's key object carries for the key's team, user and end customer
(`team_max_budget`, `end_user_rpm_limit`, set by `custom_auth` as LiteLLM's own auth sets them
from its tables) are enforced fleet-wide with no `budgets set`: once the team's spend crosses its
cap through one proxy, a second proxy refuses another key of the team it never served; once the
end customer reaches its rate limit through one key, the second proxy refuses the customer on
another key, which carries no limit of its own, while that key serves other customers. An
operator's budget for the team then wins over the cap its keys declare.

A team's, user's, organisation's and end customer's cap that LiteLLM resets (a `budget_duration`
on the row, or on the organisation's or customer's budget row) hold the same way, over that
duration. The key object carries only the team's and user's `budget_reset_at`
(`team_budget_snapshot`, `user_budget_snapshot`) and only the organisation's and customer's cap;
the duration is read from the rows through LiteLLM's own lookups and the proxy's
`user_api_key_cache`. No Postgres-backed LiteLLM here: its prisma client needs query-engine
binaries that only Prisma's own download host serves. So `custom_auth` does what LiteLLM's auth
does after reading the rows from its database: caches them in the proxy's `user_api_key_cache`
(`cache_team_object`, the user row under its id, the organisation with its budget row under
`org_id:<id>:with_budget`, the end customer under `end_user_cache_key`), pins the team's and
user's snapshots on the key object (`carry_team_and_user_budget_state`) and sets the organisation's
and customer's caps from their budget rows."""

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from decimal import Decimal
from functools import partial
from typing import Any

import httpx
import litellm
import pytest

from spendpipe.admin.budget_admin import BudgetAdmin
from spendpipe.platform.clickhouse import ClickhouseSettings, ClickhouseStore
from spendpipe.platform.kafka import KafkaSettings
from tests.conftest import aggregator_settings, enforcer_settings
from tests.e2e.conftest import StartProxies
from tests.support.pipeline import running_pipeline
from tests.support.waiting import eventually

CAP = 0.002
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
    FIRST: {"team_max_budget": CAP},
    SECOND: {"team_max_budget": CAP},
    SUPPORT: {"end_user_id": "customer-7", "end_user_rpm_limit": END_USER_RPM},
}

USER_FIRST, USER_SECOND = "sk-erin-first-key-0123456789", "sk-erin-second-key-0123456789"
ORG_FIRST, ORG_SECOND = "sk-acme-first-key-0123456789", "sk-acme-second-key-0123456789"
CUSTOMER_FIRST, CUSTOMER_SECOND = "sk-for-customer-9-first-0123456789", "sk-for-customer-9-second-0123456789"
RESET_KEYS = {
    **KEYS,
    USER_FIRST: ("erin", None),
    USER_SECOND: ("erin", None),
    ORG_FIRST: ("frank", None),
    ORG_SECOND: ("grace", None),
    CUSTOMER_FIRST: ("heidi", None),
    CUSTOMER_SECOND: ("ivan", None),
}
RESET_KEY_FIELDS: dict[str, dict[str, object]] = {
    ORG_FIRST: {"org_id": "acme"},
    ORG_SECOND: {"org_id": "acme"},
    CUSTOMER_FIRST: {"end_user_id": "customer-9"},
    CUSTOMER_SECOND: {"end_user_id": "customer-9"},
}
ON_AUTH = f"""
from datetime import UTC, datetime

import litellm.proxy.proxy_server as proxy_server
from litellm.models.team import LiteLLM_TeamTableCachedObj
from litellm.constants import DEFAULT_IN_MEMORY_TTL
from litellm.proxy._types import LiteLLM_BudgetTable, LiteLLM_EndUserTable, LiteLLM_OrganizationTable
from litellm.proxy._types import LiteLLM_UserTable
from litellm.proxy.auth.auth_checks import cache_team_object, get_team_object_from_cache
from litellm.proxy.common_utils.user_api_key_cache import end_user_cache_key, get_management_object_ttl
from litellm.proxy.spend_tracking.carried_budget_state import carry_team_and_user_budget_state

RESET_AT = datetime(2099, 1, 1, tzinfo=UTC)
ROWS = {{
    "search": dict(max_budget={CAP}, budget_duration="30d", budget_reset_at=RESET_AT),
    "erin": dict(max_budget={CAP}, budget_duration="1d", budget_reset_at=RESET_AT),
}}
BUDGET_ROWS = {{"acme": "30d", "customer-9": "1d"}}


def budget_row(entity_id):
    duration = BUDGET_ROWS[entity_id]
    return LiteLLM_BudgetTable(budget_id=f"{{entity_id}}-budget", max_budget={CAP}, budget_duration=duration)


async def cached(cache, key, model_type, ttl, read):
    # the row LiteLLM's auth left in the cache, else "read from the database" and cached as it does
    row = await cache.async_get_cache(key=key, model_type=model_type)
    if row is None:
        row = read()
        await cache.async_set_cache(key=key, value=row, model_type=model_type, ttl=ttl)
    return row


async def on_auth(key):
    cache = proxy_server.user_api_key_cache
    team = user = None
    if key.team_id in ROWS:
        team = await get_team_object_from_cache(f"team_id:{{key.team_id}}", cache, None)
        if team is None:  # "read from the database", then cached as LiteLLM's auth caches it
            team = LiteLLM_TeamTableCachedObj(team_id=key.team_id, **ROWS[key.team_id])
            await cache_team_object(key.team_id, team, cache, proxy_server.proxy_logging_obj)
        key.team_max_budget = team.max_budget
    if key.team_id is None and key.user_id in ROWS:
        user = await cache.async_get_cache(key=key.user_id, model_type=LiteLLM_UserTable)
        if user is None:
            user = LiteLLM_UserTable(user_id=key.user_id, **ROWS[key.user_id])
            await cache.async_set_cache(
                key=key.user_id, value=user, model_type=LiteLLM_UserTable, ttl=get_management_object_ttl(cache)
            )
        key.user_max_budget = user.max_budget
    carry_team_and_user_budget_state(key, team, user)
    if key.org_id in BUDGET_ROWS:  # as get_org_object caches it for auth, with its budget row
        org = await cached(
            cache,
            f"org_id:{{key.org_id}}:with_budget",
            LiteLLM_OrganizationTable,
            DEFAULT_IN_MEMORY_TTL,
            lambda: LiteLLM_OrganizationTable(
                organization_id=key.org_id,
                budget_id=f"{{key.org_id}}-budget",
                created_by="admin",
                updated_by="admin",
                litellm_budget_table=budget_row(key.org_id),
            ),
        )
        key.organization_max_budget = org.litellm_budget_table.max_budget
    if key.end_user_id in BUDGET_ROWS:  # as get_end_user_object caches it
        end_user = await cached(
            cache,
            end_user_cache_key(key.end_user_id),
            LiteLLM_EndUserTable,
            get_management_object_ttl(cache),
            lambda: LiteLLM_EndUserTable(
                user_id=key.end_user_id,
                blocked=False,
                budget_id=f"{{key.end_user_id}}-budget",
                litellm_budget_table=budget_row(key.end_user_id),
            ),
        )
        key.end_user_max_budget = end_user.litellm_budget_table.max_budget
"""


@dataclass
class Fleet:
    """Two proxies sharing one running pipeline, and a client."""

    first: str
    second: str
    admin: BudgetAdmin
    http: httpx.AsyncClient
    clickhouse: ClickhouseStore

    async def call(self, proxy_url: str, key: str, user: str | None = None) -> httpx.Response:
        body = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hello"}]}
        if user is not None:
            body["user"] = user
        return await self.http.post(
            f"{proxy_url}/chat/completions", headers={"Authorization": f"Bearer {key}"}, json=body
        )

    def spent_today(self, scope_type: str, scope_id: str) -> Decimal:
        return Decimal(
            self.clickhouse.rows(
                "SELECT sum(spend) FROM spend_totals WHERE window = 'day' AND model = ''"
                f" AND scope_type = '{scope_type}' AND scope_id = '{scope_id}'"
            )[0][0]
        )


TwoProxies = Callable[..., AbstractAsyncContextManager[Fleet]]


@pytest.fixture
def two_proxies(
    start_proxies: StartProxies,
    kafka_broker: str,
    clickhouse: ClickhouseStore,
    clickhouse_settings: ClickhouseSettings,
) -> TwoProxies:
    """`async with two_proxies(keys, **start_proxies_options) as fleet`."""

    @asynccontextmanager
    async def start(keys: dict[str, tuple[str, str | None]], **proxy_options: Any) -> AsyncIterator[Fleet]:
        first, second = await start_proxies(keys, count=2, models=("gpt-4o",), **proxy_options)
        topics = first.topics
        aggregator = aggregator_settings(kafka_broker, topics, clickhouse_settings)
        enforcer = enforcer_settings(kafka_broker, topics, clickhouse_settings)
        admin = BudgetAdmin(kafka=KafkaSettings(bootstrap_servers=kafka_broker), topics=topics)
        async with (
            running_pipeline(aggregator, enforcer, clickhouse, time.time),
            httpx.AsyncClient(timeout=30) as http,
        ):
            yield Fleet(first.url, second.url, admin, http, clickhouse)

    return start


async def test_a_team_cap_and_an_end_customer_limit_on_litellms_key_object_hold_at_every_proxy(
    two_proxies: TwoProxies,
) -> None:
    async with two_proxies(KEYS, key_fields=KEY_FIELDS) as fleet:
        # given no budget set by anyone
        assert await asyncio.to_thread(fleet.admin.current) == []

        # when the team spends through the first proxy with one of its keys, until refused
        refused = await eventually(
            lambda: fleet.call(fleet.first, FIRST),
            lambda r: r.status_code != 200,
            within=90,
            what="the team is refused",
        )
        # then the refusal is the team's cap, in LiteLLM's shape, after the team's spend reached it
        assert fleet.spent_today("team", "search") >= Decimal(str(CAP))
        assert refused.status_code == litellm.budget_exceeded_status_code, refused.text
        error = refused.json()["error"]
        assert error["type"] == "budget_exceeded"
        assert "team:search" in error["message"]
        assert "max budget 0.002" in error["message"]
        # and the second proxy refuses the team's other key, which never made a call
        other_key = await eventually(
            lambda: fleet.call(fleet.second, SECOND),
            lambda r: r.status_code != 200,
            within=5,
            what="the second proxy refuses",
        )
        assert other_key.status_code == litellm.budget_exceeded_status_code, other_key.text
        assert "team:search" in other_key.json()["error"]["message"]
        # while another team is served
        assert (await fleet.call(fleet.second, SUPPORT_OTHER)).status_code == 200

        # when the end customer the support key carries calls through the first proxy, until limited
        # (there LiteLLM's own limiter also counts the key object's `end_user_rpm_limit`, per replica)
        limited = await eventually(
            lambda: fleet.call(fleet.first, SUPPORT, "customer-7"),
            lambda r: r.status_code != 200,
            within=60,
            what="the end customer is rate limited",
        )
        assert limited.status_code == 429, limited.text
        # then the second proxy limits the customer on another key, which carries no limit LiteLLM
        # could count: the pipeline-wide limit of the scope the first key's object declared
        elsewhere = await eventually(
            lambda: fleet.call(fleet.second, SUPPORT_OTHER, "customer-7"),
            lambda r: r.status_code != 200,
            within=5,
            what="the second proxy limits the customer",
        )
        assert elsewhere.status_code == 429, elsewhere.text
        message = elsewhere.json()["error"]["message"]
        assert "end_user:customer-7" in message
        assert f"rpm_limit {END_USER_RPM} per sliding minute" in message
        # and that key still serves another customer
        assert (await fleet.call(fleet.second, SUPPORT_OTHER, "customer-8")).status_code == 200
        # with still no budget of anyone's on the budgets topic
        assert await asyncio.to_thread(fleet.admin.current) == []

        # when an operator sets a budget of their own for the team, it wins over the declared cap
        await asyncio.to_thread(fleet.admin.set, {"scope": "team:search", "max_budget": "100"})
        served = await eventually(
            lambda: fleet.call(fleet.second, SECOND),
            lambda r: r.status_code == 200,
            within=30,
            what="the operator's budget wins",
        )
        assert served.json()["choices"]


async def test_caps_litellm_resets_hold_at_every_proxy_over_their_rows_duration(
    two_proxies: TwoProxies,
) -> None:
    async with two_proxies(RESET_KEYS, key_fields=RESET_KEY_FIELDS, on_auth=ON_AUTH) as fleet:
        # given no budget set by anyone, and key objects that carry no duration: the team's and
        # user's reset time only, nothing of the organisation's or end customer's budget row but its cap
        assert await asyncio.to_thread(fleet.admin.current) == []

        for scope, (scope_type, scope_id), duration, spender, other_key in (
            ("team:search", ("team", "search"), "30d", FIRST, SECOND),
            ("user:erin", ("user", "erin"), "1d", USER_FIRST, USER_SECOND),
            ("org:acme", ("org", "acme"), "30d", ORG_FIRST, ORG_SECOND),
            ("end_user:customer-9", ("end_user", "customer-9"), "1d", CUSTOMER_FIRST, CUSTOMER_SECOND),
        ):
            # when the scope spends through the first proxy, until refused
            refused = await eventually(
                partial(fleet.call, fleet.first, spender),
                lambda r: r.status_code != 200,
                within=90,
                what=f"{scope} is refused",
            )
            # then the refusal is the scope's cap over the row's duration, after its spend reached it
            assert fleet.spent_today(scope_type, scope_id) >= Decimal(str(CAP))
            assert refused.status_code == litellm.budget_exceeded_status_code, refused.text
            error = refused.json()["error"]
            assert error["type"] == "budget_exceeded"
            assert scope in error["message"]
            assert f"max budget {CAP} per {duration}" in error["message"]
            # and the second proxy refuses another key of the scope, which never made a call
            elsewhere = await eventually(
                partial(fleet.call, fleet.second, other_key),
                lambda r: r.status_code != 200,
                within=5,
                what=f"the second proxy refuses {scope}",
            )
            assert elsewhere.status_code == litellm.budget_exceeded_status_code, elsewhere.text
            assert scope in elsewhere.json()["error"]["message"]

        # while another team is served, and no budget of anyone's is on the budgets topic
        assert (await fleet.call(fleet.second, SUPPORT_OTHER)).status_code == 200
        assert await asyncio.to_thread(fleet.admin.current) == []
