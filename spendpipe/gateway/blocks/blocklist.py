"""The gateway's block list: the latest decision per scope, fed by `spend.decisions`.

Readers take the highest version per key and ignore older ones, so a replayed or late message
never overrides a newer verdict. A block is honoured until its `expires_at` even if the unblock
message is late. `blocking()` is on the request path: a handful of dict lookups; which keys a
request is checked against is the request's identity's to say (`gateway/identity.py`).
"""

import threading
from collections.abc import Iterable
from datetime import UTC, datetime

from spendpipe.contracts.decisions import Decision, LatestDecisions


class BlockList:
    def __init__(self) -> None:
        self._decisions = LatestDecisions()
        self._lock = threading.Lock()
        self.in_sync = threading.Event()
        """Set once the decisions topic was read to the end it had when the gateway started."""

    def apply(self, decision: Decision) -> bool:
        """Keep `decision` if it is newer than what is known for its key. True if kept."""
        with self._lock:
            return self._decisions.offer(decision)

    def blocking(self, keys: Iterable[str], now: datetime | None = None) -> Decision | None:
        """The first decision in force among `keys`, or None."""
        decisions = self._decisions
        moment = now or datetime.now(UTC)
        for key in keys:
            decision = decisions.get(key)
            if decision is not None and decision.in_force(moment):
                return decision
        return None

    def latest(self, key: str) -> Decision | None:
        """The latest decision on `key`, in force or not."""
        return self._decisions.get(key)

    def in_force(self, now: datetime | None = None) -> list[Decision]:
        moment = now or datetime.now(UTC)
        return [d for d in self._decisions if d.in_force(moment)]
