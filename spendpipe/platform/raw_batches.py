"""FastStream batch subscribers that take each record on its own.

FastStream reads a batch as one message: it decodes every header value as UTF-8, so one record
with a header that has no value (Kafka allows one) or one that is not UTF-8 fails the batch, and
with a payload type it validates the batch as one list, so one record that does not parse takes
the others with it. Either way the batch is lost (it was acknowledged before it was handled). A
subscriber whose topic anyone with write access can put records on uses
`parser=text_headers_only, decoder=undecoded, no_reply=True`, and its handler takes the
`KafkaMessage` and validates each of `records(message)` on its own. `no_reply`: FastStream
publishes a handler's answer to the topic a record's `reply_to` header names, so a writer could
make the service write to any topic it may write (an empty, unsigned record there), or hold the
subscriber for a request timeout naming one that cannot exist.
"""

import dataclasses
from collections.abc import Awaitable, Callable
from typing import Any, TypeAlias

from aiokafka import ConsumerRecord
from faststream.kafka import KafkaMessage
from faststream.message import StreamMessage

Record: TypeAlias = ConsumerRecord[bytes, bytes]


async def text_headers_only(message: Any, original_parser: Callable[[Any], Awaitable[KafkaMessage]]) -> KafkaMessage:
    """FastStream's own parsing of the record (or batch), each record with only the headers whose
    value is UTF-8 text. A header left out could not have been read by anyone here, so no
    signature check depends on it: a record without its key id or signature is unsigned."""
    if isinstance(message, tuple):
        return await original_parser(tuple(_with_text_headers(record) for record in message))
    return await original_parser(_with_text_headers(message))


def _with_text_headers(record: Record) -> Record:
    kept = [(name, value) for name, value in record.headers if isinstance(value, bytes) and _is_text(value)]
    return record if len(kept) == len(record.headers) else dataclasses.replace(record, headers=kept)


def _is_text(value: bytes) -> bool:
    try:
        value.decode()
    except UnicodeDecodeError:
        return False
    return True


async def undecoded(message: StreamMessage[Any]) -> None:
    """No payload for the batch: its handler validates each record (`records`)."""


def records(message: KafkaMessage) -> tuple[Record, ...]:
    """The records of a batch subscriber's message (or the one record of another's)."""
    raw = message.raw_message
    return raw if isinstance(raw, tuple) else (raw,)
