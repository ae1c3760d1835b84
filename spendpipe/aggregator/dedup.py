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
from datetime import UTC
from typing import Any, NamedTuple

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


class Origin(NamedTuple):
    """The record a counted event was read from, and a digest of its content."""

    partition: int
    offset: int
    digest: int


def content_digest(row: Sequence[Any]) -> int:
    """The digest of an event as `events` stores it: `CONTENT_COLUMNS`' values, naive UTC times,
    '' for none. Equal to `event_digest` of the event it was stored from; only compared within
    one process (`hash`)."""
    occurred_at, *rest = row
    return hash((occurred_at if occurred_at.tzinfo else occurred_at.replace(tzinfo=UTC), *rest))


def event_digest(e: SpendEvent) -> int:
    """The same digest from the event (written out field by field: it runs once per event)."""
    return hash(
        (
            e.occurred_at,
            e.key_hash or "",
            e.user_id or "",
            e.team_id or "",
            e.org_id or "",
            e.end_user or "",
            e.model_group or e.model,
            e.cost,
            e.prompt_tokens,
            e.completion_tokens,
            e.total_tokens,
            e.status,
            e.cache_hit,
        )
    )


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
