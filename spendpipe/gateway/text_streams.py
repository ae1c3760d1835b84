"""Charging a text completion stream its client hangs up on.

When a client hangs up on a stream, LiteLLM's proxy charges what was streamed: it builds a
response from the chunks its stream wrapper read and the prompt (`chunks` and `messages` on the
stream it serves) and logs it as a success. The stream `/completions` serves
(`litellm.TextCompletionStreamWrapper`, which the router may wrap once more to carry headers,
under `inner`) reads the provider's chat chunks through an async generator and keeps none, so a
hang-up there logged nothing at all: a client could read all of an answer but its end and never
be charged.

`keep_chunks` gives the stream served what the proxy looks for: the chat chunks read so far, as
they are read, and the prompt as LiteLLM logged it. Nothing else changes: a stream that ends is
logged by LiteLLM as before, once (the proxy bills a hang-up only when no success was logged).
"""

from collections.abc import AsyncIterator, Mapping
from typing import Any

import litellm


def keep_chunks(served: object, request: Mapping[str, Any]) -> None:
    """On a `/completions` stream about to be served for `request` (the proxy's request data),
    keep the chunks it reads (see above)."""
    stream = getattr(served, "inner", served)
    if not isinstance(stream, litellm.TextCompletionStreamWrapper) or hasattr(served, "chunks"):
        return
    read: list[object] = []
    details = getattr(request.get("litellm_logging_obj"), "model_call_details", None)
    # what LiteLLM's hang-up billing reads
    served.messages = details.get("messages") if isinstance(details, dict) else None  # type: ignore[attr-defined]
    served.chunks = read  # type: ignore[attr-defined]
    stream.completion_stream = _kept(stream.completion_stream, read)


async def _kept(stream: AsyncIterator[object], read: list[object]) -> AsyncIterator[object]:
    async for chunk in stream:
        read.append(chunk)
        yield chunk
