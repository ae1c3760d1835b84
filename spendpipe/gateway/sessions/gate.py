"""Admitting the calls of capped agent sessions (proxy mode): a call of a session whose agent has
`max_iterations` or `max_budget_per_session` reserves its place on `spend.sessions` and is
served only if the session ledger every gateway replays grants it (`ledger.py`).

A call without a session, or of an agent without session caps, costs one dict lookup. A capped
call costs one Kafka round trip (the reservation written, then read back), and a call that waits
behind a session's first call waits for that call to end. A refused call is answered as
LiteLLM's own session limiters answer (`refusals.py`).

A granted call is marked, for the hook that sees it end, where the proxy keeps its own metadata
of a request (`rate_limits.leases.mark`), as a string: on /v1/responses and /v1/messages the
body's `metadata` is the client's and goes on to the provider, which may refuse a value that is
not a string. A client can write the same field in its own metadata; the pre-call hook clears it
first (`unmark`), so only a call this gate granted ends a session call.
"""

import json
import logging
import uuid
from decimal import Decimal
from typing import Any

from spendpipe.contracts.sessions import SessionRecord
from spendpipe.gateway.rate_limits.leases import mark, marked
from spendpipe.gateway.refusals import session_not_admitted
from spendpipe.gateway.sessions.caps import SessionCaps
from spendpipe.gateway.sessions.ledger import SessionVerdict
from spendpipe.gateway.sessions.session_log import SessionLog

log = logging.getLogger(__name__)

SESSION_FIELD = "spendpipe_session"
"""Marked when a session call is granted: [agent, session, call id] as JSON, for the hook that
sees the call end; "" for none."""


class SessionGate:
    def __init__(self, *, caps: SessionCaps, sessions: SessionLog | None, gateway_id: str, wait_s: float) -> None:
        self.caps = caps
        self._sessions = sessions
        self._gateway_id = gateway_id
        self._wait_s = wait_s

    def without_log(self) -> "SessionGate":
        """The same caps with no session log: caps no session (SDK mode), reads and writes nothing."""
        return SessionGate(caps=self.caps, sessions=None, gateway_id=self._gateway_id, wait_s=self._wait_s)

    def start(self) -> None:
        if self._sessions is not None:
            self._sessions.start()

    def stop(self) -> None:
        if self._sessions is not None:
            self._sessions.stop()

    def live_sessions(self) -> int:
        return self._sessions.live_sessions() if self._sessions is not None else 0

    async def admit(self, agent_id: str | None, session_id: str | None, data: dict[str, Any]) -> SessionVerdict | None:
        """None: not a capped session call, serve it. Else the verdict; granted ones are marked in
        the request `data` (module docstring) so their end is reported."""
        caps = self.caps.of(agent_id)
        if caps is None or session_id is None or agent_id is None or self._sessions is None:
            return None
        record = SessionRecord(
            kind="reserve",
            agent_id=agent_id,
            session_id=session_id,
            call_id=uuid.uuid4().hex,
            max_iterations=caps.max_iterations,
            max_budget_per_session=caps.max_budget_per_session,
            gateway_id=self._gateway_id,
        )
        verdict = await self._sessions.reserve(record, wait_s=self._wait_s)
        if verdict is None:
            self._end([agent_id, session_id, record.call_id], "withdraw", None)
            message = session_not_admitted(session_id, agent_id, self._wait_s)
            return SessionVerdict(record.call_id, granted=False, message=message, cap_kind="budget")
        if verdict.granted:
            mark(data, SESSION_FIELD, json.dumps([agent_id, session_id, record.call_id]))
        return verdict

    @staticmethod
    def unmark(data: dict[str, Any]) -> None:
        """Clear a mark the request came with (a client's): only `admit` marks a call."""
        mark(data, SESSION_FIELD, "")

    def settle(self, data: dict[str, Any] | None, cost: Decimal) -> None:
        self._end(_marker(data), "settle", cost)

    def marked(self, data: dict[str, Any] | None) -> bool:
        """The call was granted as a session's (`admit` marked it): its end is to be reported."""
        return self._sessions is not None and _marker(data) is not None

    def release(self, data: dict[str, Any] | None) -> None:
        self._end(_marker(data), "release", None)

    def withdraw(self, data: dict[str, Any] | None) -> None:
        self._end(_marker(data), "withdraw", None)

    def _end(self, marker: list[str] | None, kind: str, cost: Decimal | None) -> None:
        if marker is None or self._sessions is None:
            return
        agent_id, session_id, call_id = marker
        try:
            record = SessionRecord.model_validate(
                {"kind": kind, "agent_id": agent_id, "session_id": session_id, "call_id": call_id, "cost": cost}
            )
            self._sessions.write(record)
        except Exception:
            log.exception("spendpipe could not report the end of session call %s", call_id)


def _marker(data: dict[str, Any] | None) -> list[str] | None:
    """[agent, session, call id] as `admit` marked them, or None."""
    text = marked(data or {}, SESSION_FIELD)
    try:
        marker = json.loads(text) if text else None
    except (ValueError, RecursionError):  # a client's metadata may hold anything
        return None
    if isinstance(marker, list) and len(marker) == 3 and all(isinstance(part, str) for part in marker):
        return marker
    return None
