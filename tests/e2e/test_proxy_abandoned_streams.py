"""Streams through a real LiteLLM proxy from a provider on loopback (`tests/support/upstream.py`:
LiteLLM's `mock_response` streams otherwise) are charged once, for what the provider sent: read
to the end, abandoned by their client (on `/completions` LiteLLM logged nothing), or failed by
the provider as their client hangs up (LiteLLM logs a failure carrying the cost of what was sent
and a success for the same chunks)."""

import hashlib
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from dev.litellm_proxy import LiteLLMProxy
from tests.support.ops import metric, off_loop
from tests.support.pipeline import read_topic
from tests.support.proxies import ops_env, ops_url, started
from tests.support.upstream import Upstream, streaming_upstream
from tests.support.waiting import eventually

KEY = "sk-abandoned-streams-key-0123456789"
CHUNKS_READ = 50
ROUTES: dict[str, tuple[str, dict[str, object]]] = {
    "chat": ("/chat/completions", {"messages": [{"role": "user", "content": "hello"}]}),
    "text": ("/completions", {"prompt": "hello"}),
}


@pytest.fixture
async def upstream(request: pytest.FixtureRequest) -> AsyncIterator[Upstream]:
    """`repeating` when the test is marked `@pytest.mark.parametrize("upstream", [True], indirect=True)`."""
    async with streaming_upstream(repeating=getattr(request, "param", False)) as running:
        yield running


@pytest.fixture
async def proxy(kafka_broker: str, make_topics, tmp_path: Path, upstream: Upstream) -> AsyncIterator[LiteLLMProxy]:
    """gpt-4o streaming from `upstream`, the plugin's ops endpoint on (its /metrics)."""
    model: dict[str, object] = {"model": "openai/gpt-4o", "api_base": upstream.url, "mock_response": None}
    topics = await make_topics(kafka_broker)
    keys = {KEY: ("alice", "search")}
    async with started(
        LiteLLMProxy(tmp_path / "proxy", kafka_broker, topics, keys, ("gpt-4o",), {"gpt-4o": model}, env=ops_env())
    ) as proxy:
        yield proxy


async def hang_up_after(proxy: LiteLLMProxy, route: str, chunks: int) -> None:
    """A client streams gpt-4o on `route`, reads `chunks` chunks of the answer and hangs up."""
    path, prompt = ROUTES[route]
    body = {"model": "gpt-4o", "stream": True} | prompt
    headers = {"Authorization": f"Bearer {KEY}"}
    async with (
        httpx.AsyncClient(timeout=30) as http,
        http.stream("POST", f"{proxy.url}{path}", headers=headers, json=body) as response,
    ):
        assert response.status_code == 200, await response.aread()
        read = 0
        async for line in response.aiter_lines():
            read += line.startswith("data:")
            if read >= chunks:
                break


async def the_one_event(proxy: LiteLLMProxy, logs: int) -> dict[str, Any]:
    """Once LiteLLM logged the call `logs` times (each log recorded, or seen as a repeat of one)
    and all recorded are published: the one event on the topic (fails if there are more)."""

    def counters() -> dict[str, float]:
        names = ("recorded", "repeated", "published")
        return {name: metric(ops_url(proxy), f"spendpipe_gateway_events_{name}_total") for name in names}

    def settled(seen: dict[str, float]) -> bool:
        return seen["recorded"] + seen["repeated"] >= logs and seen["published"] >= seen["recorded"]

    await eventually(lambda: off_loop(counters), settled, within=30, what=f"{logs} log(s) of the call, published")
    records = await read_topic(proxy.bootstrap, proxy.topics.events, expected=1)
    assert len(records) == 1, [orjson.loads(record.value or b"") for record in records]
    event: dict[str, Any] = orjson.loads(records[0].value or b"")
    assert event["key_hash"] == hashlib.sha256(KEY.encode()).hexdigest()
    return event


@pytest.mark.parametrize("route", ROUTES)
async def test_a_stream_its_client_abandons_is_charged_once(
    proxy: LiteLLMProxy, upstream: Upstream, route: str
) -> None:
    # when a client reads some of the answer and hangs up
    await hang_up_after(proxy, route, CHUNKS_READ)

    # then LiteLLM's log of it is charged, once, to the key, for at least what was sent
    event = await the_one_event(proxy, logs=1)
    assert event["call_type"] == ("acompletion" if route == "chat" else "atext_completion")
    assert CHUNKS_READ - 1 <= event["completion_tokens"] <= upstream.written[0]
    assert event["prompt_tokens"] > 0
    assert Decimal(event["cost"]) > 0


@pytest.mark.parametrize("upstream", [True], indirect=True)
async def test_a_stream_that_fails_as_its_client_hangs_up_is_charged_once(
    proxy: LiteLLMProxy, upstream: Upstream
) -> None:
    # when the provider repeats itself (LiteLLM fails the stream at the 100th chunk) and the
    # client hangs up before it sees the failure
    await hang_up_after(proxy, "chat", CHUNKS_READ)

    # then of LiteLLM's two logs of it, the failure carrying what was sent and a success for the
    # same chunks, one is charged
    event = await the_one_event(proxy, logs=2)
    assert CHUNKS_READ - 1 <= event["completion_tokens"] <= upstream.written[0]
    assert Decimal(event["cost"]) > 0


@pytest.mark.parametrize("route", ROUTES)
async def test_a_stream_read_to_its_end_is_charged_once_for_all_of_it(
    proxy: LiteLLMProxy, upstream: Upstream, route: str
) -> None:
    path, prompt = ROUTES[route]
    body = {"model": "gpt-4o", "stream": True, "max_tokens": 200, "stream_options": {"include_usage": True}} | prompt
    async with httpx.AsyncClient(timeout=30) as http:
        # when the client reads the whole answer
        headers = {"Authorization": f"Bearer {KEY}"}
        async with http.stream("POST", f"{proxy.url}{path}", headers=headers, json=body) as response:
            assert response.status_code == 200, await response.aread()
            data = [line async for line in response.aiter_lines() if line.startswith("data:")]
        assert data[-1] == "data: [DONE]", data[-3:]

    # then it is charged once, for every token the provider sent
    event = await the_one_event(proxy, logs=1)
    assert upstream.written == [200]
    assert (event["prompt_tokens"], event["completion_tokens"]) == (10, 200)
