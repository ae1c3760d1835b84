"""The deterministic state of agent sessions, built from the records of `spend.sessions` in log
order. Every gateway applies the same records in the same order (one partition per session)
with the record timestamps Kafka stamped, so every gateway reaches the same verdicts; nothing
here reads a clock except `sweep()`, which only frees memory.

Per session: calls granted, spend settled, calls in flight (granted, not yet settled) and the
largest settled call. A reservation is judged, in order:

* `max_iterations` N: denied once N calls were granted (a call that failed still counts, as
  LiteLLM's limiter counts it at admission; a withdrawn one does not);
* `max_budget_per_session` C: denied once settled spend >= C; granted while
  settled + in_flight x largest < C (each call in flight is reckoned at the largest call the
  session settled so far); while that does not hold, or while the session's first call is still
  in flight (nothing to reckon with yet), it **waits** in the session's queue and is judged again
  when a call settles. So concurrent first calls of a new session go one at a time until a cost is
  known, and the spend can pass C by at most one call's cost plus, for each call in flight when
  the cap is crossed, what it costs above the largest call before it (0 for calls of one size).

A session that sees no record for `idle_s` starts again from nothing (its next record finds it
idle), and `sweep()` drops its state after `2 x idle_s` of wall-clock silence. A granted call
whose end no gateway reported is dropped from the calls in flight after `lease_s`.

Not thread-safe: the session log applies records from one thread.
"""

from collections import deque
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Literal

from spendpipe.contracts.sessions import SessionRecord
from spendpipe.gateway.refusals import max_iterations_exceeded, session_budget_exceeded

SessionCapKind = Literal["max_iterations", "budget"]


@dataclass(frozen=True, slots=True)
class SessionVerdict:
    call_id: str
    granted: bool
    message: str = ""
    cap_kind: SessionCapKind | None = None


@dataclass
class _Session:
    last_at: float
    granted: int = 0
    spend: Decimal = Decimal(0)
    largest: Decimal | None = None
    in_flight: dict[str, float] = field(default_factory=dict)
    """call id -> when it was granted"""
    waiting: deque[SessionRecord] = field(default_factory=deque)


class SessionLedger:
    def __init__(self, *, idle_s: float, lease_s: float) -> None:
        self._idle_s = idle_s
        self._lease_s = lease_s
        self._sessions: dict[str, _Session] = {}

    def __len__(self) -> int:
        """Sessions whose state is held."""
        return len(self._sessions)

    def clear(self) -> None:
        """Forget everything (the log is about to be read again from the beginning)."""
        self._sessions.clear()

    def state(self, key: str) -> tuple[int, Decimal, int] | None:
        """(calls granted, spend settled, calls in flight) of a live session, or None."""
        session = self._sessions.get(key)
        return None if session is None else (session.granted, session.spend, len(session.in_flight))

    def apply(self, record: SessionRecord, at: float) -> list[SessionVerdict]:
        """Apply one record stamped `at` (epoch seconds); the verdicts it settles, in order."""
        session = self._session(record, at)
        if session is None:
            return []
        session.last_at = max(session.last_at, at)
        for call_id in [c for c, granted_at in session.in_flight.items() if at - granted_at > self._lease_s]:
            del session.in_flight[call_id]
        if record.kind == "reserve":
            session.waiting.append(record)
        elif record.kind == "settle":
            if session.in_flight.pop(record.call_id, None) is not None:
                cost = record.cost or Decimal(0)
                session.spend += cost
                session.largest = cost if session.largest is None else max(session.largest, cost)
        elif record.kind == "release":
            session.in_flight.pop(record.call_id, None)
        else:
            return self._withdraw(session, record.call_id) + self._drain(session, at)
        return self._drain(session, at)

    def sweep(self, now: float) -> int:
        """Drop sessions silent for twice the idle time (wall clock, so a gateway's memory is
        freed without traffic; the idle rule in `apply` already treats them as new). Returns
        how many were dropped."""
        stale = [key for key, s in self._sessions.items() if s.last_at < now - 2 * self._idle_s and not s.waiting]
        for key in stale:
            del self._sessions[key]
        return len(stale)

    def _session(self, record: SessionRecord, at: float) -> _Session | None:
        session = self._sessions.get(record.key)
        if session is not None and at - session.last_at > self._idle_s and not session.waiting:
            session = None  # idle: the session starts again
        if session is None:
            if record.kind != "reserve":
                return None  # the end of a call of a session that expired: nothing to count
            session = self._sessions[record.key] = _Session(last_at=at)
        return session

    def _withdraw(self, session: _Session, call_id: str) -> list[SessionVerdict]:
        """The call never ran (its gateway gave up waiting, or refused it after admission)."""
        if session.in_flight.pop(call_id, None) is not None:
            session.granted -= 1
            return []
        for record in list(session.waiting):
            if record.call_id == call_id:
                session.waiting.remove(record)
                return [SessionVerdict(call_id, granted=False, message="withdrawn")]
        return []

    def _drain(self, session: _Session, at: float) -> list[SessionVerdict]:
        verdicts = []
        while session.waiting:
            verdict = self._judge(session, session.waiting[0], at)
            if verdict is None:
                break
            session.waiting.popleft()
            verdicts.append(verdict)
        return verdicts

    def _judge(self, session: _Session, record: SessionRecord, at: float) -> SessionVerdict | None:
        """Granted, denied, or None: wait for a call in flight to settle."""
        if record.max_iterations is not None and session.granted >= record.max_iterations:
            message = max_iterations_exceeded(
                record.session_id, record.agent_id, session.granted, record.max_iterations
            )
            return SessionVerdict(record.call_id, granted=False, message=message, cap_kind="max_iterations")
        cap = record.max_budget_per_session
        if cap is not None:
            if session.spend >= cap:
                message = session_budget_exceeded(record.session_id, record.agent_id, session.spend, cap)
                return SessionVerdict(record.call_id, granted=False, message=message, cap_kind="budget")
            if session.in_flight and (
                session.largest is None or session.spend + len(session.in_flight) * session.largest >= cap
            ):
                return None
        session.granted += 1
        session.in_flight[record.call_id] = at
        return SessionVerdict(record.call_id, granted=True)
