"""Where each key's decision last landed on the decisions topic, so that the running enforcer can
tell a record written after it (a replayed older decision, a forgery) from its own earlier sends
read back late.

The enforcer sends each key's decisions in version order, one at a time, each acknowledged before
the next (`EnforcerService._send`), and Kafka's acknowledgement carries the partition and offset
the record landed at. Every record of the key the enforcer wrote before its latest acknowledged
send sits at an earlier offset of the same partition (a key's records go to one partition). So a
record that is not the decision held for its key (`app._as_held` says which are not) and that
sits after the latest position known to hold that decision is the key's last record, the one
compaction keeps for readers that start later, until the decision is published again; one before
it is the key's history, which the decision already follows. A record in another partition than
that position is taken as after it: the enforcer cannot order them, and publishing its decision
again is harmless.

While a send of the key awaits its acknowledgement (in flight, or failed: it is published again on
the tick) the position is not known yet: a record read back meanwhile (which may be that very
send, read before its acknowledgement came) is judged when the acknowledgement comes.
"""

from spendpipe.contracts.positions import Position, after


class DecisionPositions:
    def __init__(self) -> None:
        self._held: dict[str, Position] = {}
        """Per key, the latest position known to hold the decision the enforcer holds: where its
        acknowledged send landed, or a record read back that is that decision."""
        self._awaiting: dict[str, Position | None] = {}
        """Keys whose last send awaits an acknowledgement, with the position of the latest record
        read back meanwhile that is not their decision (None: none was)."""

    def holds(self, key: str, position: Position) -> None:
        """A record read back at `position` is the decision held for `key`."""
        self._note(key, position)

    def sending(self, key: str) -> None:
        """A decision of `key` is being sent: until Kafka acknowledges a send of the key, where
        its decision is is not known."""
        self._awaiting.setdefault(key, None)

    def sent(self, key: str, position: Position) -> bool:
        """Kafka acknowledged the send of `key`'s decision at `position`. True when a record read
        back while it was awaited, not that decision, came after it: the decision is to be
        published again."""
        self._note(key, position)
        other = self._awaiting.pop(key, None)
        return other is not None and self._after(key, other)

    def overwritten(self, key: str, position: Position) -> bool:
        """A record read back at `position` is not the decision held for `key`. True when it came
        after that decision's latest known position: it is now the key's last record, and the
        decision is to be published again. While a send of the key awaits its acknowledgement,
        False, and the record is judged by `sent`."""
        if key in self._awaiting:
            if after(position, self._awaiting[key]):
                self._awaiting[key] = position
            return False
        return self._after(key, position)

    def _note(self, key: str, position: Position) -> None:
        if self._after(key, position):
            self._held[key] = position

    def _after(self, key: str, position: Position) -> bool:
        return after(position, self._held.get(key))
