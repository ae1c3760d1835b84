"""The gateway's block list: the latest decision per scope, fed by `spend.decisions`.

Readers take the highest version per key and ignore older ones, so a replayed or late message
never overrides a newer verdict. A block is honoured until its `expires_at` even if the unblock
message is late. `blocking()` is on the request path. It looks only among the kept decisions
that block (`_blocks`), and first asks, in one set operation in C, whether any of the request's
keys has one: most requests' keys have none, and for those the answer costs no lookup per key in
Python and no clock read. Which keys a request is checked against is the request's identity's
to say (`gateway/identity.py`).
"""

import math
import threading
import time
from collections.abc import Collection
from datetime import UTC, datetime

from spendpipe.contracts.decisions import Decision, LatestDecisions


class BlockList:
    def __init__(self) -> None:
        self._decisions = LatestDecisions()
        self._blocks: dict[str, Decision] = {}
        """The kept decisions that block, in force or expired, by key: the latest per key, as
        `_decisions` holds it (a key whose latest decision lifts its block is not here)."""
        self._lock = threading.Lock()
        self._blocks_until = -math.inf
        """No kept decision blocks at or after this time (epoch seconds): a bound that only grows,
        so a check at a later time needs no keys at all (`may_block`)."""
        self.in_sync = threading.Event()
        """Set once the decisions topic was read to the end it had when the gateway started."""

    def apply(self, decision: Decision) -> bool:
        """Keep `decision` if it is newer than what is known for its key. True if kept."""
        with self._lock:
            if decision.blocked:  # before it is kept: a reader never sees a block past the bound
                until = math.inf if decision.expires_at is None else decision.expires_at.timestamp()
                self._blocks_until = max(self._blocks_until, until)
            kept = self._decisions.offer(decision)
            if kept and decision.blocked:
                self._blocks[decision.key] = decision
            elif kept:
                self._blocks.pop(decision.key, None)
            return kept

    def may_block(self) -> bool:
        """False when no decision kept can be in force now: the request path then builds no keys."""
        return time.time() < self._blocks_until

    def blocking(self, keys: Collection[str], now: datetime | None = None) -> Decision | None:
        """The first decision in force among `keys`, or None."""
        blocks = self._blocks
        if blocks.keys().isdisjoint(keys):
            return None
        moment = now or datetime.now(UTC)
        for key in keys:
            decision = blocks.get(key)
            if decision is not None and decision.in_force(moment):
                return decision
        return None

    def latest(self, key: str) -> Decision | None:
        """The latest decision on `key`, in force or not."""
        return self._decisions.get(key)

    def in_force(self, now: datetime | None = None) -> list[Decision]:
        moment = now or datetime.now(UTC)
        return [d for d in self._decisions if d.in_force(moment)]
