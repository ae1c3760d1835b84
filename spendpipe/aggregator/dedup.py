"""Event ids seen recently, to drop duplicates without asking ClickHouse for every event.

An id is remembered for `horizon_s` after it was counted, with its `Origin`: the record it was
read from. A copy of the id at another record is a duplicate; the same record read again (a
flush retried, a batch replayed before its commit) is not, and its event is announced again. An
event whose `occurred_at` is older than the horizon (less a clock-skew margin) may duplicate one
the set has already forgotten, so the caller checks those few against the `events` table
instead. Memory is bounded by the arrival rate times the horizon.
"""

from collections import deque
from collections.abc import Iterable
from typing import NamedTuple


class Origin(NamedTuple):
    """The record a counted event was read from."""

    partition: int
    offset: int


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
