"""A `/completions` stream keeps the chunks LiteLLM's hang-up billing reads (`text_streams`)."""

from collections.abc import AsyncIterator

import litellm
from litellm.types.utils import Delta, ModelResponseStream, StreamingChoices

from spendpipe.gateway.text_streams import keep_chunks


def chunk(text: str) -> ModelResponseStream:
    return ModelResponseStream(choices=[StreamingChoices(index=0, delta=Delta(content=text))])


async def provider(texts: list[str]) -> AsyncIterator[ModelResponseStream]:
    for text in texts:
        yield chunk(text)


class Served:
    """What the router serves around a stream to carry its headers."""

    def __init__(self, inner: object) -> None:
        self.inner = inner


async def test_the_served_stream_keeps_each_chunk_read_and_the_prompt() -> None:
    stream = litellm.TextCompletionStreamWrapper(completion_stream=provider([" the", " a", " and"]), model="gpt-4o")
    served = Served(stream)
    logging = type("Logging", (), {"model_call_details": {"messages": [{"role": "user", "content": "hi"}]}})()
    keep_chunks(served, {"litellm_logging_obj": logging})

    first = await stream.__anext__()
    assert first.choices[0].text == " the"
    assert [kept.choices[0].delta.content for kept in served.chunks] == [" the"]  # type: ignore[attr-defined]
    assert [response.choices[0].text async for response in stream] == [" a", " and"]
    assert len(served.chunks) == 3  # type: ignore[attr-defined]
    assert served.messages == [{"role": "user", "content": "hi"}]  # type: ignore[attr-defined]


async def test_other_streams_are_left_alone() -> None:
    chat = Served(provider(["x"]))
    keep_chunks(chat, {})
    assert not hasattr(chat, "chunks")
    keep_chunks(None, {})
