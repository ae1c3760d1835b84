"""The spend this process recorded and the pipeline has not confirmed yet: what makes
`get_current_cost` right at once after `update_cost` in the process that wrote it.

The rule, by event id: an entry is *included* in a totals snapshot when its position (the
partition and offset of the copy the aggregator counted) is at or below that partition's
watermark in the same snapshot (`SpendTotals.by_model` reads both in one query, and the
aggregator writes a batch's totals and watermarks in one insert). A read adds the entries the
snapshot does not include, and a fresh snapshot drops the ones it includes: each event counts
once, from the ledger before and from the totals after. An entry without a position is never
included; its position comes from Kafka's acknowledgement, or, for an event that went through
the spool, from the `events` table once the aggregator counted it.
"""

import threading
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal


@dataclass
class Pending:
    event_id: str
    user: str
    """The user's scope id."""
    model: str
    cost: Decimal
    occurred_at: int
    """Unix seconds."""
    position: tuple[int, int] | None = None
    """(partition, offset) of the counted copy; None until known."""

    def included(self, watermarks: Mapping[int, int]) -> bool:
        if self.position is None:
            return False
        partition, offset = self.position
        return offset <= watermarks.get(partition, -1)


class SpendLedger:
    """Thread-safe: `update_cost` adds from any thread, reads happen on any other."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: dict[str, Pending] = {}

    def add(self, entry: Pending) -> None:
        with self._lock:
            self._pending[entry.event_id] = entry

    def place(self, event_id: str, partition: int, offset: int) -> None:
        """The event's counted copy is at this position."""
        with self._lock:
            entry = self._pending.get(event_id)
            if entry is not None:
                entry.position = (partition, offset)

    def unplaced(self, user: str) -> list[str]:
        with self._lock:
            return [e.event_id for e in self._pending.values() if e.user == user and e.position is None]

    def not_in(self, user: str, watermarks: Mapping[int, int], start: int, end: int) -> dict[str, Decimal]:
        """The user's spend per model that a snapshot with `watermarks` does not include, of
        the events that occurred in [start, end)."""
        spend: dict[str, Decimal] = {}
        with self._lock:
            for entry in self._pending.values():
                if entry.user == user and start <= entry.occurred_at < end and not entry.included(watermarks):
                    spend[entry.model] = spend.get(entry.model, Decimal(0)) + entry.cost
        return spend

    def confirm(self, user: str, watermarks: Mapping[int, int]) -> int:
        """Drop the user's entries a snapshot includes; call only with the newest snapshot of
        that user, the one later reads use. Returns how many were dropped."""
        with self._lock:
            done = [k for k, e in self._pending.items() if e.user == user and e.included(watermarks)]
            for event_id in done:
                del self._pending[event_id]
        return len(done)

    def __len__(self) -> int:
        with self._lock:
            return len(self._pending)
