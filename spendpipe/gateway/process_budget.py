"""`litellm.max_budget` in SDK mode: one budget for everything this process spends.

LiteLLM checks `litellm._current_cost > litellm.max_budget` before every SDK call (in the
`client` wrapper of `completion` and `acompletion`, sync and async) and raises its
`BudgetExceededError`. But LiteLLM 1.110 adds to `_current_cost` only for responses that are
plain dicts with a `content` field, which a chat completion never is, so the budget is never
reached and silently does nothing. Once spendpipe is installed, it keeps that figure instead:
the exact sum (Decimal) of the costs of the calls it records in this process, written to
`litellm._current_cost` after each one. LiteLLM's own check then refuses, with LiteLLM's own
error and its own rule (`>`: a call is refused once the spend is over the budget, not at it),
in sync code as well as async. The sum starts at what `_current_cost` held at install.

It is a process budget, as LiteLLM means it: other processes' spend is not in it. A fleet-wide
budget is a `global` scope budget (`spendpipe budgets set --scope global`).
"""

import threading
from decimal import Decimal

import litellm

from spendpipe.contracts.money import add_costs, cost_from_float


class ProcessBudget:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._spent = cost_from_float(float(litellm._current_cost or 0.0))

    @property
    def spent(self) -> Decimal:
        return self._spent

    def add(self, cost: Decimal) -> None:
        """A recorded call's cost: LiteLLM's next check sees it."""
        with self._lock:
            self._spent = add_costs(self._spent, cost)
            litellm._current_cost = float(self._spent)
