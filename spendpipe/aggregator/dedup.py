"""Event ids seen recently, to drop duplicates without asking ClickHouse for every event.

An id is remembered for at least `horizon_s` after it was counted, with its origin: the record
it was read from and a digest of what it added to the totals, packed by ClickHouse into 20
bytes (`ORIGIN_SQL`). A copy of the id at another record is a duplicate, or a conflict if its
content differs; the same record read again (a flush retried, a batch replayed before its
commit) is neither, and its event is announced again. An event whose `occurred_at` is older
than the horizon (less a clock-skew margin) may duplicate one the memory has already
forgotten, so the writer checks those few against the `events` table instead.

Ids are kept in generations, one per `horizon_s / GENERATIONS` of counting, each a plain dict
from 16-byte id to origin: looking a batch up and remembering it are set and dict operations
done in C, not a Python step per event, and forgetting drops whole generations. Memory is
bounded by the arrival rate times the horizon (about 150 bytes an id).
"""

import struct
from collections import deque
from collections.abc import Iterable, Mapping
from typing import NamedTuple

CONTENT_COLUMNS = (
    "occurred_at",
    "key_hash",
    "user_id",
    "team_id",
    "org_id",
    "end_user",
    "provider",
    "request_tags",
    "billed_model",
    "cost",
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
    "status",
    "cache_hit",
)
"""What an event adds to the totals, and where: two events with one id that differ in any of
these conflict. Named as the `events` table (and the stage) call them."""

DIGEST_SQL = f"cityHash64({', '.join(CONTENT_COLUMNS)})"
"""The content digest, computed the same way on the stage and on `events`."""

ORIGIN_SQL = (
    "toFixedString(concat(reinterpret(toUInt32(kafka_partition), 'FixedString(4)'), "
    f"reinterpret(toInt64(kafka_offset), 'FixedString(8)'), reinterpret({DIGEST_SQL}, 'FixedString(8)')), 20)"
)
"""An event's origin as 20 bytes: partition (4), offset (8), digest (8), little-endian."""

_ORIGIN = struct.Struct("<IqQ")

GENERATIONS = 8


class Origin(NamedTuple):
    """The record a counted event was read from, and a digest of its content."""

    partition: int
    offset: int
    digest: int

    @classmethod
    def unpack(cls, packed: bytes) -> "Origin":
        return cls(*_ORIGIN.unpack(packed))

    def pack(self) -> bytes:
        return _ORIGIN.pack(self.partition, self.offset, self.digest)


def same_content(a: bytes, b: bytes) -> bool:
    """Whether two packed origins carry the same content digest."""
    return a[12:] == b[12:]


class RecentEventIds:
    def __init__(self, *, horizon_s: float) -> None:
        self.horizon_s = horizon_s
        self._span_s = horizon_s / GENERATIONS
        self._generations: deque[tuple[float, dict[bytes, bytes]]] = deque()
        """(time of its first id, ids → packed origin), oldest first."""

    def __len__(self) -> int:
        return sum(len(ids) for _, ids in self._generations)

    def __contains__(self, event_id: bytes) -> bool:
        return any(event_id in ids for _, ids in self._generations)

    def known(self, event_ids: Iterable[bytes]) -> dict[bytes, bytes]:
        """The ids among `event_ids` remembered, with the origin of their first count."""
        wanted = event_ids if isinstance(event_ids, set | frozenset | Mapping) else set(event_ids)
        found: dict[bytes, bytes] = {}
        for _, ids in reversed(self._generations):  # the oldest last: its origin is the first count
            for event_id in ids.keys() & wanted:
                found[event_id] = ids[event_id]
        return found

    def remember(self, counted: Mapping[bytes, bytes], at: float) -> None:
        """Remember ids first counted at `at` (none of them remembered yet)."""
        if not counted:
            return
        if not self._generations or at - self._generations[-1][0] >= self._span_s:
            self._generations.append((at, {}))
        self._generations[-1][1].update(counted)

    def expire(self, now: float) -> None:
        """Forget generations all of whose ids were counted more than `horizon_s` ago."""
        # a generation takes ids for `_span_s` after its first, so its last is before start + span
        while self._generations and self._generations[0][0] + self._span_s < now - self.horizon_s:
            self._generations.popleft()

    def clear(self) -> None:
        self._generations.clear()
