"""Event ids seen recently, to drop duplicates without asking ClickHouse for every event.

An id is remembered for `horizon_s` after it was counted, with its `Origin`: the record it was
read from and a digest of what it added to the totals. A copy of the id at another record is a
duplicate, or a conflict if its content differs; the same record read again (a flush retried, a
batch replayed before its commit) is neither, and its event is announced again. An
event whose `occurred_at` is older than the horizon (less a clock-skew margin) may duplicate one
the set has already forgotten, so the caller checks those few against the `events` table
instead. Memory is bounded by the arrival rate times the horizon.
"""

from collections import deque
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from operator import attrgetter
from typing import NamedTuple

from spendpipe.contracts.events import SpendEvent

CONTENT_COLUMNS = (
    "occurred_at",
    "key_hash",
    "user_id",
    "team_id",
    "org_id",
    "end_user",
    "billed_model",
    "cost",
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
    "status",
    "cache_hit",
)
"""What an event adds to the totals, and where: two events with one id that differ in any of
these conflict. Named as both `SpendEvent` and the `events` table call them."""
_content_of = attrgetter(*CONTENT_COLUMNS)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


class Origin(NamedTuple):
    """The record a counted event was read from, and a digest of its content."""

    partition: int
    offset: int
    digest: int


def content_digest(values: Sequence[object]) -> int:
    """A digest of `CONTENT_COLUMNS`' values, as an event has them or as `events` stores them
    (naive UTC times, '' for none): the same for both. Only compared within one process."""
    occurred_at, *rest = values
    assert isinstance(occurred_at, datetime)
    micros = (occurred_at.replace(tzinfo=occurred_at.tzinfo or UTC) - _EPOCH) // _MICROSECOND
    return hash((micros, *("" if value is None else value for value in rest)))


def event_digest(event: SpendEvent) -> int:
    return content_digest(_content_of(event))


class RecentEventIds:
    def __init__(self, *, horizon_s: float) -> None:
        self.horizon_s = horizon_s
        self._seen: dict[str, tuple[float, Origin]] = {}
        self._order: deque[tuple[float, list[str]]] = deque()

    def __contains__(self, event_id: str) -> bool:
        return event_id in self._seen

    def __len__(self) -> int:
        return len(self._seen)

    def origin(self, event_id: str) -> Origin | None:
        seen = self._seen.get(event_id)
        return None if seen is None else seen[1]

    def remember(self, counted: Iterable[tuple[str, Origin]], at: float) -> None:
        """Remember ids counted at `at`; an id already remembered keeps its first count."""
        batch = []
        for event_id, origin in counted:
            if event_id not in self._seen:
                self._seen[event_id] = (at, origin)
                batch.append(event_id)
        if batch:
            self._order.append((at, batch))

    def expire(self, now: float) -> None:
        cutoff = now - self.horizon_s
        while self._order and self._order[0][0] < cutoff:
            _, batch = self._order.popleft()
            for event_id in batch:
                seen = self._seen.get(event_id)
                if seen is not None and seen[0] < cutoff:
                    del self._seen[event_id]

    def clear(self) -> None:
        self._seen.clear()
        self._order.clear()
