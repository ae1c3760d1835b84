"""Proxy mode end to end: a real LiteLLM proxy with the plugin in its `callbacks`, requests with
virtual keys, the pipeline, real ClickHouse. The proxy's own key hash, user, team and the
request's `user` (end customer) reach the totals; the raw keys never leave the proxy."""

import hashlib
from collections import defaultdict
from decimal import Decimal

import httpx

from spendpipe.contracts.money import cost_from_float
from spendpipe.platform.clickhouse import ClickhouseSettings, ClickhouseStore
from tests.conftest import aggregator_settings
from tests.e2e.conftest import StartProxies
from tests.support.pipeline import counted_events, read_topic, running_aggregator
from tests.support.waiting import eventually

KEYS = {
    "sk-proxy-alpha-0123456789": ("alice", "search"),
    "sk-proxy-beta-0123456789": ("bob", "search"),
    "sk-proxy-gamma-0123456789": ("carol", "support"),
}
CUSTOMERS = ["acme", "globex"]
CALLS = 60


async def test_proxy_requests_are_counted_per_key_user_team_and_customer(
    start_proxies: StartProxies,
    kafka_broker: str,
    clickhouse: ClickhouseStore,
    clickhouse_settings: ClickhouseSettings,
) -> None:
    (proxy,) = await start_proxies(KEYS)
    # given the pipeline behind a LiteLLM proxy running the plugin
    settings = aggregator_settings(kafka_broker, proxy.topics, clickhouse_settings)
    keys = list(KEYS)
    expected: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
    async with (
        running_aggregator(settings, clickhouse),
        httpx.AsyncClient(base_url=proxy.url, timeout=30) as http,
    ):
        # when clients call it with their virtual keys
        for i in range(CALLS):
            key, customer = keys[i % 3], CUSTOMERS[i % 2]
            response = await http.post(
                "/chat/completions",
                headers={"Authorization": f"Bearer {key}"},
                json={
                    "model": ("gpt-4o-mini", "gpt-4o")[i % 2],
                    "messages": [{"role": "user", "content": "hello " * (1 + i)}],
                    "user": customer,
                },
            )
            assert response.status_code == 200, response.text
            cost = cost_from_float(float(response.headers["x-litellm-response-cost"]))
            user, team = KEYS[key]
            for scope in [
                ("key", hashlib.sha256(key.encode()).hexdigest()),
                ("user", user),
                ("team", team),
                ("team_member", f"{team}/{user}"),
                ("end_user", customer),
                ("global", ""),
                ("provider", "openai"),
                # LiteLLM tags each proxy request with its client's User-Agent (`request_tags`)
                ("tag", "User-Agent: python-httpx"),
                ("tag", f"User-Agent: python-httpx/{httpx.__version__}"),
            ]:
                expected[scope] += cost
        await eventually(lambda: counted_events(clickhouse), lambda n: n >= CALLS, within=90, what="events")

    # then the totals carry the proxy's attribution, exactly
    rows = clickhouse.rows(
        "SELECT scope_type, scope_id, sum(spend) FROM spend_totals "
        "WHERE window = 'day' AND model = '' GROUP BY scope_type, scope_id"
    )
    assert {(t, i): Decimal(s) for t, i, s in rows} == dict(expected)
    assert expected[("global", "")] > 0
    # and no raw key was published or stored
    published = await read_topic(kafka_broker, proxy.topics.events, expected=CALLS)
    kafka_bytes = b"\n".join(bytes(r.value or b"") + bytes(r.key or b"") for r in published)
    stored = repr(clickhouse.rows("SELECT * FROM events"))
    for key in KEYS:
        assert key.encode() not in kafka_bytes
        assert key not in stored
