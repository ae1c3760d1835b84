"""Event ids seen recently, to drop duplicates without asking ClickHouse for every event.

An id is remembered for `horizon_s` after it was counted. An event whose `occurred_at` is
older than the horizon (less a clock-skew margin) may duplicate one the set has already
forgotten, so the caller checks those few against the `events` table instead. Memory is
bounded by the arrival rate times the horizon.
"""

from collections import deque
from collections.abc import Iterable


class RecentEventIds:
    def __init__(self, *, horizon_s: float) -> None:
        self.horizon_s = horizon_s
        self._seen: dict[str, float] = {}
        self._order: deque[tuple[float, list[str]]] = deque()

    def __contains__(self, event_id: str) -> bool:
        return event_id in self._seen

    def __len__(self) -> int:
        return len(self._seen)

    def remember(self, event_ids: Iterable[str], at: float) -> None:
        batch = [event_id for event_id in event_ids if event_id not in self._seen]
        for event_id in batch:
            self._seen[event_id] = at
        if batch:
            self._order.append((at, batch))

    def expire(self, now: float) -> None:
        cutoff = now - self.horizon_s
        while self._order and self._order[0][0] < cutoff:
            _, batch = self._order.popleft()
            for event_id in batch:
                if self._seen.get(event_id, now) < cutoff:
                    del self._seen[event_id]

    def clear(self) -> None:
        self._seen.clear()
        self._order.clear()
