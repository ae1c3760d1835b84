"""Record batches no client of ours would write, as a raw Kafka client can send them (the broker
takes each): a record whose header name is not UTF-8; whose attributes byte has its high bit set
(Kafka ignores the byte, aiokafka's parser reads it as a varint and misreads the record); whose
offset delta puts it past the end of its batch.

aiokafka's producer builds the batch (a header name to replace is a placeholder of the same
length), its bytes are changed in place, and the batch's CRC is computed again (over everything
after the CRC field, Kafka's record batch format v2).
"""

import struct
from collections.abc import Sequence
from typing import Literal

from aiokafka import AIOKafkaProducer
from aiokafka.producer.message_accumulator import BatchBuilder
from aiokafka.record.util import calc_crc32c

PLACEHOLDER = "spendpipe-test-placeholder-name"
NOT_UTF8 = b"\xff" * len(PLACEHOLDER)
CRC_AT, CRC_OF = 17, 21
"""Where a v2 batch keeps its CRC, and where what it covers starts."""
RECORDS_AT = 61
"""Where a v2 batch's first record starts."""
Crafted = Literal["header", "attributes", "offset"]
"""How an unreadable record is made: see the module docstring."""


def _varint(built: bytearray, at: int) -> tuple[int, int]:
    """The zigzag varint at `at`, and where it ends."""
    value, shift = 0, 0
    while True:
        byte = built[at]
        value, at, shift = value | (byte & 0x7F) << shift, at + 1, shift + 7
        if not byte & 0x80:
            return (value >> 1) ^ -(value & 1), at


def _craft(built: bytearray, index: int, how: Crafted) -> None:
    """Record `index` of the batch `built`, made unreadable `how` (a header: by the placeholder)."""
    at = RECORDS_AT
    for _ in range(index):  # each record: its length as a varint, then that many bytes
        length, body = _varint(built, at)
        at = body + length
    _, attributes = _varint(built, at)
    if how == "attributes":
        built[attributes] = 0x80
    elif how == "offset":
        _, delta = _varint(built, attributes + 1)  # after the attributes and the timestamp delta
        assert _varint(built, delta) == (index, delta + 1), "an offset delta of one byte: the record's index"
        built[delta] = 126  # 63 as a zigzag varint, one byte too: past any batch of up to 63 records


class _PatchedBatch(BatchBuilder):  # type: ignore[misc]
    _buffer: bytearray | None
    crafted: dict[int, Crafted]

    def _build(self) -> bytearray:
        if self._buffer is None:
            built = bytearray(super()._build())
            built[:] = built.replace(PLACEHOLDER.encode(), NOT_UTF8)
            for index, how in self.crafted.items():
                _craft(built, index, how)
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
    crafted: Crafted = "header",
) -> int:
    """`values` as one batch on `partition`, the records at indexes `unreadable` made unreadable
    as `crafted` says; returns the batch's first offset."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        batch = producer.create_batch()
        batch.__class__ = _PatchedBatch
        batch.crafted = {} if crafted == "header" else dict.fromkeys(unreadable, crafted)
        for n, value in enumerate(values):
            headers = [(PLACEHOLDER, b"x")] if n in unreadable and crafted == "header" else [("ok", b"x")]
            batch.append(timestamp=None, key=key, value=value, headers=headers)
        sent = await (await producer.send_batch(batch, topic, partition=partition))
        return int(sent.offset)
    finally:
        await producer.stop()
