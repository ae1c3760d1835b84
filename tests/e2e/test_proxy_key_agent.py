"""A key bound to an agent through a real LiteLLM proxy: the proxy attributes its calls to the
key's agent whatever the client names in its body's metadata, so the agent's rate limits and
session caps hold on every route, also those where the body's `metadata` is the client's own
and the proxy keeps its metadata in `litellm_metadata` (/v1/responses, /v1/messages)."""

import asyncio
import hashlib
import json

import httpx

from spendpipe.admin.budget_admin import BudgetAdmin
from spendpipe.platform.kafka import KafkaSettings
from tests.e2e.conftest import StartProxies
from tests.support.pipeline import read_topic
from tests.support.rate_traffic import HELLO
from tests.support.waiting import eventually

KEY = "sk-key-bound-to-an-agent-0123"
AGENT = "capped-agent"
MODEL = "gpt-4o"


async def test_a_key_bound_to_a_rate_limited_agent_cannot_name_another_agent(
    start_proxies: StartProxies, kafka_broker: str
) -> None:
    # given a proxy whose key belongs to an agent that may make one request a minute
    (proxy,) = await start_proxies({KEY: ("ann", None)}, models=(MODEL,), key_fields={KEY: {"agent_id": AGENT}})
    admin = BudgetAdmin(kafka=KafkaSettings(bootstrap_servers=kafka_broker), topics=proxy.topics)
    await asyncio.to_thread(admin.set, {"scope": f"agent:{AGENT}", "rpm_limit": 1})
    headers = {"Authorization": f"Bearer {KEY}"}

    async with httpx.AsyncClient(timeout=30) as http:

        async def chat() -> httpx.Response:
            body = {"model": MODEL, "messages": HELLO}
            return await http.post(f"{proxy.url}/chat/completions", headers=headers, json=body)

        async def responses(metadata: dict[str, str] | None) -> httpx.Response:
            body: dict[str, object] = {"model": MODEL, "input": "hello there", "mock_response": "hi"}
            if metadata is not None:
                body["metadata"] = metadata
            return await http.post(f"{proxy.url}/v1/responses", headers=headers, json=body)

        # once the agent's minute is used up (the limit reached the proxy, a call counted)
        await eventually(chat, lambda r: r.status_code == 429, within=30, what="the agent's rpm_limit in force")

        # then the key is refused on /v1/responses too
        plain = await responses(None)
        assert plain.status_code == 429, plain.text
        # and naming another agent in the body's metadata does not make it another agent's call
        other = await responses({"agent_id": "free-agent"})
        assert other.status_code == 429, f"a client escaped its key's agent: {other.status_code} {other.text}"
        other_chat = await http.post(
            f"{proxy.url}/chat/completions",
            headers=headers,
            json={"model": MODEL, "messages": HELLO, "metadata": {"agent_id": "free-agent"}},
        )
        assert other_chat.status_code == 429, other_chat.text


async def test_the_call_of_a_key_bound_to_an_agent_is_charged_to_that_agent(
    start_proxies: StartProxies, kafka_broker: str
) -> None:
    # given a proxy whose key belongs to an agent
    (proxy,) = await start_proxies({KEY: ("ann", None)}, models=(MODEL,), key_fields={KEY: {"agent_id": AGENT}})

    # when the client names another agent in its body's metadata, on /v1/responses and /chat/completions
    async with httpx.AsyncClient(timeout=30) as http:
        metadata = {"agent_id": "free-agent", "session_id": "s-1"}
        for path, body in [
            ("/v1/responses", {"model": MODEL, "input": "hello there", "metadata": metadata}),
            ("/chat/completions", {"model": MODEL, "messages": HELLO, "metadata": metadata}),
        ]:
            answer = await http.post(f"{proxy.url}{path}", headers={"Authorization": f"Bearer {KEY}"}, json=body)
            assert answer.status_code == 200, answer.text

    # then both calls are charged to the key's agent, in the session the client named
    events = [json.loads(record.value or b"") for record in await read_topic(kafka_broker, proxy.topics.events, 2)]
    assert [(e["call_type"], e.get("agent_id"), e.get("session_id")) for e in events] == [
        ("aresponses", AGENT, "s-1"),
        ("acompletion", AGENT, "s-1"),
    ]


async def test_a_key_without_an_agent_is_charged_to_the_agent_its_header_names(
    start_proxies: StartProxies, kafka_broker: str
) -> None:
    # given a proxy whose key belongs to no agent
    (proxy,) = await start_proxies({KEY: ("ann", None)}, models=(MODEL,))

    # when the client names an agent in the x-litellm-agent-id header and another in its body's metadata
    headers = {"Authorization": f"Bearer {KEY}", "x-litellm-agent-id": "header-agent"}
    async with httpx.AsyncClient(timeout=30) as http:
        metadata = {"agent_id": "body-agent"}
        for path, body in [
            ("/v1/responses", {"model": MODEL, "input": "hello there", "metadata": metadata}),
            ("/chat/completions", {"model": MODEL, "messages": HELLO, "metadata": metadata}),
        ]:
            answer = await http.post(f"{proxy.url}{path}", headers=headers, json=body)
            assert answer.status_code == 200, answer.text

    # then both calls are the header's agent's, as LiteLLM attributes them, on either route
    events = [json.loads(record.value or b"") for record in await read_topic(kafka_broker, proxy.topics.events, 2)]
    assert [(e["call_type"], e.get("agent_id")) for e in events] == [
        ("aresponses", "header-agent"),
        ("acompletion", "header-agent"),
    ]


async def test_key_fields_a_client_writes_in_its_metadata_do_not_change_whom_a_call_is_charged_to(
    start_proxies: StartProxies, kafka_broker: str
) -> None:
    # given a proxy whose key belongs to a user and team
    (proxy,) = await start_proxies({KEY: ("ann", "ann-team")}, models=(MODEL,))
    victim = hashlib.sha256(b"sk-victim").hexdigest()
    forged = {
        "user_api_key_hash": victim,
        "user_api_key_team_id": "victim-team",
        "user_api_key_user_id": "victim-user",
        "user_api_key_org_id": "victim-org",
        "user_api_key_end_user_id": "victim-customer",
    }

    # when the client writes another key's fields in its body's metadata, on a route where that
    # metadata is its own (LiteLLM's logging merges it with the proxy's)
    async with httpx.AsyncClient(timeout=30) as http:
        body = {"model": MODEL, "input": "hello there", "metadata": forged}
        answer = await http.post(f"{proxy.url}/v1/responses", headers={"Authorization": f"Bearer {KEY}"}, json=body)
        assert answer.status_code == 200, answer.text

    # then the call is charged to its own key, user and team, and to no customer
    (record,) = await read_topic(kafka_broker, proxy.topics.events, 1)
    event = json.loads(record.value or b"")
    key_hash = hashlib.sha256(KEY.encode()).hexdigest()
    assert (event["key_hash"], event["user_id"], event["team_id"]) == (key_hash, "ann", "ann-team")
    assert "org_id" not in event
    assert "end_user" not in event
