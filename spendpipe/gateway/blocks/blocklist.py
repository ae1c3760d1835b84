"""The gateway's block list: the latest decision per scope, fed by `spend.decisions`.

Readers take the highest version per key and ignore older ones, so a replayed or late message
never overrides a newer verdict. A block is honoured until its `expires_at` even if the unblock
message is late. `blocking()` is on the request path: a handful of dict lookups.

Which scopes apply to a request (DESIGN.md, "Which budget applies"): global, the key, the
team, the team membership, the organisation and the end customer; the user's personal budget
only when the request is not made for a team. Each scope also per model. Rate limits (LiteLLM's
`rpm_limit`...) apply to the key, the user, the team, the end customer and the agent, each on
its own.
"""

import threading
from collections.abc import Iterable
from datetime import UTC, datetime

from spendpipe.contracts.decisions import RATE_LIMIT_PREFIX, Decision, decision_key
from spendpipe.contracts.scopes import team_member_id


class BlockList:
    def __init__(self) -> None:
        self._decisions: dict[str, Decision] = {}
        self._lock = threading.Lock()
        self.in_sync = threading.Event()
        """Set once the decisions topic was read to the end it had when the gateway started."""

    def apply(self, decision: Decision) -> bool:
        """Keep `decision` if it is newer than what is known for its key. True if kept."""
        with self._lock:
            known = self._decisions.get(decision.key)
            if known is not None and known.version >= decision.version:
                return False
            self._decisions[decision.key] = decision
            return True

    def blocking(self, keys: Iterable[str], now: datetime | None = None) -> Decision | None:
        """The first decision in force among `keys`, or None."""
        decisions = self._decisions
        moment = now or datetime.now(UTC)
        for key in keys:
            decision = decisions.get(key)
            if decision is not None and decision.in_force(moment):
                return decision
        return None

    def in_force(self, now: datetime | None = None) -> list[Decision]:
        moment = now or datetime.now(UTC)
        return [d for d in list(self._decisions.values()) if d.in_force(moment)]


def request_keys(
    *,
    key_hash: str | None,
    user_id: str | None,
    team_id: str | None,
    org_id: str | None,
    end_user: str | None,
    model: str | None,
) -> list[str]:
    """The decision keys that can refuse a request with these attributes (built as plain strings:
    this runs on every request)."""
    names = ["global"]
    if key_hash:
        names.append(f"key:{key_hash}")
    if team_id:
        names.append(f"team:{team_id}")
        if user_id:
            names.append(f"team_member:{team_member_id(team_id, user_id)}")
    elif user_id:  # the user's personal budget only for requests not made for a team
        names.append(f"user:{user_id}")
    if org_id:
        names.append(f"org:{org_id}")
    if end_user:
        names.append(f"end_user:{end_user}")
    if model:
        names += [decision_key(name, model) for name in names]
    return names


def limited_scopes(
    *,
    key_hash: str | None,
    user_id: str | None,
    team_id: str | None,
    end_user: str | None,
    agent_id: str | None = None,
) -> list[str]:
    """The scopes whose rate limits apply to a request: each that it has."""
    names = [f"agent:{agent_id}"] if agent_id else []
    if key_hash:
        names.append(f"key:{key_hash}")
    if user_id:
        names.append(f"user:{user_id}")
    if team_id:
        names.append(f"team:{team_id}")
    if end_user:
        names.append(f"end_user:{end_user}")
    return names


def rate_limit_keys(scopes: list[str], model: str | None) -> list[str]:
    """The decision keys of the enforcer's rate-limit blocks that can refuse a request."""
    names = [RATE_LIMIT_PREFIX + scope for scope in scopes]
    if model:
        names += [f"{name}|{model}" for name in names]
    return names
