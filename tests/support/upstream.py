"""An OpenAI-compatible provider on loopback, for what `mock_response` cannot show: a stream long
and slow enough that a client can hang up in the middle of it, which LiteLLM logs as a provider's
stream (its mock streams otherwise). Every answer is `tokens` chunks of a word each (fewer if the
request's `max_tokens` says so), then the usage."""

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from aiohttp import web

from dev.local_kafka import free_port_pair

WORDS = (" the", " a", " and", " of", " to", " in", " is")
"""One token each, one after another: LiteLLM fails a stream that repeats a chunk 100 times."""


@dataclass
class Upstream:
    url: str
    """The `api_base` a deployment names."""
    written: list[int] = field(default_factory=list)
    """Per answer, the content chunks it wrote before it ended or its reader went away."""


@asynccontextmanager
async def streaming_upstream(
    tokens: int = 5_000, delay_s: float = 0.002, *, repeating: bool = False
) -> AsyncIterator[Upstream]:
    """Started on a free loopback port for the block, stopped after it. `repeating`: every chunk
    is the same word, a model caught in a loop, whose stream LiteLLM fails at the 100th."""
    port = free_port_pair()
    upstream = Upstream(url=f"http://127.0.0.1:{port}/v1")

    async def answer(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        length = min(tokens, body.get("max_tokens") or tokens)
        base = {"id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion.chunk", "created": int(time.time())}
        base["model"] = body.get("model")
        response = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await response.prepare(request)
        upstream.written.append(0)
        try:
            for n in range(length):
                delta = {"content": WORDS[0 if repeating else n % len(WORDS)]} | (
                    {"role": "assistant"} if n == 0 else {}
                )
                await response.write(
                    f"data: {json.dumps(base | {'choices': [{'index': 0, 'delta': delta}]})}\n\n".encode()
                )
                upstream.written[-1] = n + 1
                await asyncio.sleep(delay_s)  # a provider's pace: the answer takes seconds
            usage = {"prompt_tokens": 10, "completion_tokens": length, "total_tokens": length + 10}
            done = {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}], "usage": usage}
            await response.write(f"data: {json.dumps(base | done)}\n\ndata: [DONE]\n\n".encode())
        except (ConnectionError, asyncio.CancelledError):
            pass  # the proxy hung up
        return response

    app = web.Application()
    app.router.add_post("/v1/chat/completions", answer)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield upstream
    finally:
        await runner.cleanup()
