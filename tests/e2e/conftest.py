"""Fixtures for the end-to-end tests: real LiteLLM proxy processes running the plugin."""

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from pathlib import Path

import pytest

from dev.litellm_proxy import LiteLLMProxy
from spendpipe.contracts.topics import Topics

StartProxies = Callable[..., Awaitable[list[LiteLLMProxy]]]


@pytest.fixture
async def start_proxies(kafka_broker: str, make_topics, tmp_path: Path) -> AsyncIterator[StartProxies]:
    """`await start_proxies(keys, count=1, models=(...), model_params={...}, key_fields={...},
    router_settings={...}, on_auth="...")`:
    proxies sharing one fresh set of topics, started in parallel, stopped (SIGTERM) after the test."""
    started: list[LiteLLMProxy] = []

    async def start(
        keys: Mapping[str, tuple[str, str | None]],
        count: int = 1,
        models: tuple[str, ...] = ("gpt-4o-mini", "gpt-4o"),
        model_params: dict[str, dict[str, object]] | None = None,
        key_fields: dict[str, dict[str, object]] | None = None,
        *,
        router_settings: dict[str, object] | None = None,
        on_auth: str = "",
    ) -> list[LiteLLMProxy]:
        topics: Topics = await make_topics(kafka_broker)
        proxies = [
            LiteLLMProxy(
                tmp_path / f"proxy-{n}",
                kafka_broker,
                topics,
                keys,
                models,
                model_params or {},
                key_fields=key_fields or {},
                router_settings=router_settings or {},
                on_auth=on_auth,
            )
            for n in range(count)
        ]
        started.extend(proxies)
        await asyncio.gather(*(asyncio.to_thread(p.start) for p in proxies))
        return proxies

    yield start
    await asyncio.gather(*(asyncio.to_thread(p.stop) for p in started))
