"""Record batches no client of ours would write: records whose header name is not UTF-8, as a raw
Kafka client can send them (the broker takes any bytes there).

aiokafka's producer encodes header names as UTF-8, so the batch is built by it with a
placeholder name of the same length, the placeholder's bytes are replaced, and the batch's CRC
is computed again (over everything after the CRC field, Kafka's record batch format v2).
"""

import struct
from collections.abc import Sequence

from aiokafka import AIOKafkaProducer
from aiokafka.producer.message_accumulator import BatchBuilder
from aiokafka.record.util import calc_crc32c

PLACEHOLDER = "spendpipe-test-placeholder-name"
NOT_UTF8 = b"\xff" * len(PLACEHOLDER)
CRC_AT, CRC_OF = 17, 21
"""Where a v2 batch keeps its CRC, and where what it covers starts."""


class _PatchedBatch(BatchBuilder):  # type: ignore[misc]
    _buffer: bytearray | None

    def _build(self) -> bytearray:
        if self._buffer is None:
            built = bytearray(super()._build())
            built[:] = built.replace(PLACEHOLDER.encode(), NOT_UTF8)
            struct.pack_into(">I", built, CRC_AT, calc_crc32c(bytes(built[CRC_OF:])))
            self._buffer = built
        return self._buffer


async def produce_batch(
    bootstrap: str,
    topic: str,
    partition: int,
    values: Sequence[bytes],
    *,
    unreadable: set[int],
    key: bytes | None = None,
) -> int:
    """`values` as one batch on `partition`, the records at indexes `unreadable` with a header
    whose name is not UTF-8; returns the batch's first offset."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        batch = producer.create_batch()
        batch.__class__ = _PatchedBatch
        for n, value in enumerate(values):
            headers = [(PLACEHOLDER, b"x")] if n in unreadable else [("ok", b"x")]
            batch.append(timestamp=None, key=key, value=value, headers=headers)
        sent = await (await producer.send_batch(batch, topic, partition=partition))
        return int(sent.offset)
    finally:
        await producer.stop()
