"""Dead letters: the records of `spend.events` the aggregator cannot count, on `spend.events.dlq`.

A letter always fits the producer's request limit (1 MiB by default, as is the broker's record
limit): it carries at most the first `EXCERPT_BYTES` of the record's value and of its key, with
the reason, the source coordinates and the original value size in headers. A record just under
the broker's limit would otherwise make a letter that cannot be sent, and a flush that can
never commit.

A letter is published once per record: `PublishedLetters` remembers the records already
dead-lettered until their offsets are committed, so a flush retried after a failure does not
publish them again. Across a crash or a rebalance before the commit a letter can still repeat:
readers of the topic deduplicate by the source coordinates.

Records aiokafka cannot parse (`platform.unreadable`) reach the writer as an `UnreadableRecord`
in their place, which takes the offset of the last of them: the writer refuses it (it has no
value), and its letter gives the range and why it could not be read.
"""

from collections.abc import Iterable
from dataclasses import dataclass

from spendpipe.platform.unreadable import Unreadable

DEAD_LETTER_REASON = "spendpipe-dead-letter-reason"
SOURCE_TOPIC, SOURCE_PARTITION, SOURCE_OFFSET = (
    "spendpipe-source-topic",
    "spendpipe-source-partition",
    "spendpipe-source-offset",
)
SOURCE_VALUE_SIZE = "spendpipe-source-value-size"
TRUNCATED = "spendpipe-truncated"

EXCERPT_BYTES = 64 << 10
"""Most bytes of a record's value, and of its key, that a letter carries: two excerpts and the
headers stay far below the 1 MiB request limit, and 64 KiB shows any real event whole."""
REASON_CHARS = 1000


@dataclass(frozen=True, slots=True)
class Letter:
    key: bytes | None
    value: bytes
    headers: dict[str, str]


def letter_for(
    *, topic: str, partition: int, offset: int, key: bytes | None, value: bytes | None, reason: str
) -> Letter:
    value = value or b""
    headers = {
        DEAD_LETTER_REASON: reason[:REASON_CHARS],
        SOURCE_TOPIC: topic,
        SOURCE_PARTITION: str(partition),
        SOURCE_OFFSET: str(offset),
        SOURCE_VALUE_SIZE: str(len(value)),
        TRUNCATED: ",".join(
            name for name, part in (("key", key), ("value", value)) if part is not None and len(part) > EXCERPT_BYTES
        ),
    }
    return Letter(key=key[:EXCERPT_BYTES] if key is not None else None, value=value[:EXCERPT_BYTES], headers=headers)


@dataclass(frozen=True, slots=True)
class UnreadableRecord:
    """A `KafkaRecord` standing for records passed over as unreadable: at the offset of the last."""

    unreadable: Unreadable
    value: None = None
    key: None = None

    @property
    def partition(self) -> int:
        return self.unreadable.partition

    @property
    def offset(self) -> int:
        return self.unreadable.last

    @property
    def reason(self) -> str:
        passed_over = self.unreadable
        return f"unreadable: offsets {passed_over.first}-{passed_over.last} cannot be read ({passed_over.reason})"


class PublishedLetters:
    """(partition, offset) of the records dead-lettered since their partition's last commit."""

    def __init__(self) -> None:
        self._published: set[tuple[int, int]] = set()

    def __contains__(self, source: tuple[int, int]) -> bool:
        return source in self._published

    def add(self, source: tuple[int, int]) -> None:
        self._published.add(source)

    def committed(self, highest: dict[int, int]) -> None:
        """Offsets up to `highest[partition]` are committed: their letters cannot be asked for again."""
        self._published = {(p, o) for p, o in self._published if o > highest.get(p, -1)}

    def forget(self, partitions: Iterable[int]) -> None:
        """Partitions given up in a rebalance: whoever reads them next decides about their letters."""
        gone = set(partitions)
        self._published = {(p, o) for p, o in self._published if p not in gone}
