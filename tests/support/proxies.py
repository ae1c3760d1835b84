"""A LiteLLM proxy (`dev.litellm_proxy`) started for a test and stopped after it, with the
plugin's ops endpoint on where a test reads the gateway's /metrics."""

import asyncio
import contextlib
from collections.abc import AsyncIterator

from dev.litellm_proxy import LiteLLMProxy
from dev.local_kafka import free_port_pair


def ops_env() -> dict[str, str]:
    """Settings that turn the plugin's ops endpoint on, on a free port (`ops_url`)."""
    return {"SPENDPIPE_OPS__ENABLED": "true", "SPENDPIPE_OPS__PORT": str(free_port_pair())}


def ops_url(proxy: LiteLLMProxy) -> str:
    return f"http://127.0.0.1:{proxy.env['SPENDPIPE_OPS__PORT']}"


@contextlib.asynccontextmanager
async def started(proxy: LiteLLMProxy) -> AsyncIterator[LiteLLMProxy]:
    try:
        await asyncio.to_thread(proxy.start)
        yield proxy
    finally:
        await asyncio.to_thread(proxy.stop)
