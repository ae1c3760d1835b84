"""A stream its client abandons, through a real LiteLLM proxy streaming from a provider on
loopback (`tests/support/upstream.py`: LiteLLM's `mock_response` streams otherwise): LiteLLM logs
it twice, a failure carrying the cost of what was sent and a success for the same chunks; it is
charged once."""

import hashlib
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

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
COUNTERS = ("recorded", "repeated", "published")


@pytest.fixture
async def upstream() -> AsyncIterator[Upstream]:
    async with streaming_upstream() as running:
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


async def test_a_stream_its_client_abandons_is_charged_once(proxy: LiteLLMProxy, upstream: Upstream) -> None:
    body = {"model": "gpt-4o", "stream": True, "messages": [{"role": "user", "content": "hello"}]}
    async with httpx.AsyncClient(timeout=30) as http:
        # when the client reads some of the answer and hangs up
        headers = {"Authorization": f"Bearer {KEY}"}
        async with http.stream("POST", f"{proxy.url}/chat/completions", headers=headers, json=body) as response:
            assert response.status_code == 200, await response.aread()
            read = 0
            async for line in response.aiter_lines():
                read += line.startswith("data:")
                if read >= CHUNKS_READ:
                    break

        # then LiteLLM logs the call twice (each recorded, or seen as a repeat), all recorded published
        def counters() -> dict[str, float]:
            return {name: metric(ops_url(proxy), f"spendpipe_gateway_events_{name}_total") for name in COUNTERS}

        def settled(seen: dict[str, float]) -> bool:
            return seen["recorded"] + seen["repeated"] >= 2 and seen["published"] >= seen["recorded"]

        await eventually(
            lambda: off_loop(counters), settled, within=30, what="both logs of the call, all recorded published"
        )

    # and the call is charged once, to the key, for at least what it was sent
    records = await read_topic(proxy.bootstrap, proxy.topics.events, expected=1)
    assert len(records) == 1, [orjson.loads(record.value or b"") for record in records]
    event = orjson.loads(records[0].value or b"")
    assert event["key_hash"] == hashlib.sha256(KEY.encode()).hexdigest()
    assert CHUNKS_READ - 1 <= event["completion_tokens"] <= upstream.written[0]
    assert Decimal(event["cost"]) > 0
