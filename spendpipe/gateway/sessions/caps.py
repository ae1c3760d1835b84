"""The session caps of every agent (`max_iterations`, `max_budget_per_session`), as the gateway
read them from `spend.budgets`; `LimitFollower` keeps them current."""

import threading
from dataclasses import dataclass
from decimal import Decimal

from spendpipe.contracts.budgets import Budget
from spendpipe.contracts.scopes import Scope, ScopeType


@dataclass(frozen=True, slots=True)
class AgentCaps:
    max_iterations: int | None
    max_budget_per_session: Decimal | None


class SessionCaps:
    def __init__(self) -> None:
        self._caps: dict[str, AgentCaps] = {}
        self._lock = threading.Lock()

    def put(self, budget: Budget) -> None:
        scope = Scope.parse(budget.scope)
        if scope.type is not ScopeType.AGENT:
            return
        with self._lock:
            if budget.session_caps:
                self._caps[scope.id] = AgentCaps(budget.max_iterations, budget.max_budget_per_session)
            else:
                self._caps.pop(scope.id, None)

    def delete(self, scope: str) -> None:
        kind, _, agent_id = scope.partition(":")
        if kind == ScopeType.AGENT.value:
            with self._lock:
                self._caps.pop(agent_id, None)

    def of(self, agent_id: str | None) -> AgentCaps | None:
        """On the request path: one dict lookup."""
        return self._caps.get(agent_id) if agent_id else None
