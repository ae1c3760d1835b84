"""What to check: every (scope, model) a budget caps, with the caps that apply to it.

Direct targets come from a scope's own budget (`max_budget`, `budget_limits`,
`model_max_budget`). Two kinds are derived for scopes that have no budget of their own:
each member of a team whose budget sets `max_budget_in_team`, and each end customer when the
global budget sets `max_end_user_budget`; both reset with the budget that sets them. A budget's
reset marker (`spend_reset`) applies to its own caps, per-model and soft ones included, not to
the caps it derives for other scopes.
"""

from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal

from spendpipe.contracts.budgets import Budget, Cap
from spendpipe.contracts.durations import Duration, parse_duration
from spendpipe.contracts.scopes import TEAM_MEMBER_SEPARATOR, Scope, ScopeType

GLOBAL = str(Scope(ScopeType.GLOBAL, ""))
_DERIVABLE = {ScopeType.TEAM_MEMBER.value, ScopeType.END_USER.value}
"""Scope types a budget of another scope can derive caps for (`BudgetBook._deriving`)."""


@dataclass(frozen=True)
class Target:
    scope: Scope
    model: str
    """'' for the scope's spend over all models."""
    caps: tuple[Cap, ...]
    source: str
    """The budget field the caps come from, for the decision's reason."""


class BudgetBook:
    """The budgets in force by scope: an operator's (the budgets topic), else the one LiteLLM's key
    objects declare for the scope (the declared budgets topic, `contracts/declared_budgets.py`).
    The operator's explicit budget wins whole; deleting it puts the declared one back in force."""

    def __init__(self) -> None:
        self._budgets: dict[str, Budget] = {}
        self._set: dict[str, Budget] = {}
        self._declared: dict[str, Budget] = {}
        self._refs: set[tuple[str, str]] = set()
        """(type, id) of each scope in `_budgets`, as announcements name them."""

    def put(self, budget: Budget) -> None:
        self._set[budget.scope] = budget
        self._settle(budget.scope)

    def delete(self, scope: str) -> Budget | None:
        deleted = self._set.pop(scope, None)
        self._settle(scope)
        return deleted

    def declare(self, budget: Budget) -> None:
        self._declared[budget.scope] = budget
        self._settle(budget.scope)

    def undeclare(self, scope: str) -> None:
        self._declared.pop(scope, None)
        self._settle(scope)

    def _settle(self, scope: str) -> None:
        budget = self._set.get(scope) or self._declared.get(scope)
        if budget is None:
            if self._budgets.pop(scope, None) is not None:  # a budget's scope: it parses
                self._refs.discard(_ref(scope))
        else:
            self._budgets[scope] = budget
            self._refs.add(_ref(scope))

    def get(self, scope: str) -> Budget | None:
        return self._budgets.get(scope)

    def __iter__(self) -> Iterator[Budget]:
        return iter(list(self._budgets.values()))

    def may_apply(self, scope_type: str, scope_id: str) -> bool:
        """Whether a budget may apply to the scope (`ScopeRef` fields, unparsed): its own, or, for
        a team member or an end customer, one that derives caps for it. False means judging the
        scope finds nothing to decide: no target, no soft budget, no rate limit."""
        if (scope_type, scope_id) in self._refs:
            return True
        return scope_type in _DERIVABLE and self._deriving(Scope(ScopeType(scope_type), scope_id)) is not None

    def limited_agents(self) -> list[Scope]:
        """The agents with a rate limit: judged after every flush (flushes do not name agents)."""
        agents = [Scope.parse(scope) for scope, budget in self._budgets.items() if budget.rate_limits()]
        return [scope for scope in agents if scope.type is ScopeType.AGENT]

    def targets_for(self, scope: Scope) -> list[Target]:
        """Every target of one scope: its own budget's, else the derived ones."""
        own = self._budgets.get(str(scope))
        if own is not None:
            return direct_targets(own)
        return self._derived(scope)

    def leased_targets(self, scope: Scope) -> list[Target]:
        """The targets of `scope` held by headroom leases: those of the budget they come from
        (its own, or the team's or global budget that derives them), when that budget leases."""
        own = self._budgets.get(str(scope))
        if own is not None:
            return direct_targets(own) if own.headroom_leases else []
        derived = self._deriving(scope)
        if derived is None or not derived[0].headroom_leases:
            return []
        return self._derived(scope)

    def _deriving(self, scope: Scope) -> tuple[Budget, Decimal, str] | None:
        """For a scope without a budget of its own: the budget that derives a cap for it, the
        cap, and the field it comes from."""
        if scope.type is ScopeType.TEAM_MEMBER:
            team = scope.id.split(TEAM_MEMBER_SEPARATOR, 1)[0]
            budget = self._budgets.get(str(Scope(ScopeType.TEAM, team)))
            if budget is not None and budget.max_budget_in_team is not None:
                return budget, budget.max_budget_in_team, f"max_budget_in_team of team:{team}"
        if scope.type is ScopeType.END_USER:
            budget = self._budgets.get(GLOBAL)
            if budget is not None and budget.max_end_user_budget is not None:
                return budget, budget.max_end_user_budget, "max_end_user_budget"
        return None

    def _derived(self, scope: Scope) -> list[Target]:
        derived = self._deriving(scope)
        if derived is None:
            return []
        budget, limit, source = derived
        return [Target(scope, "", (Cap(_duration(budget), limit),), source)]


def _ref(scope: str) -> tuple[str, str]:
    parsed = Scope.parse(scope)
    return parsed.type.value, parsed.id


def direct_targets(budget: Budget) -> list[Target]:
    scope = Scope.parse(budget.scope)
    targets = []
    caps = budget.hard_caps()
    if caps:
        targets.append(Target(scope, "", caps, f"budget of {budget.scope}"))
    for model, model_budget in sorted(budget.model_max_budget.items()):
        duration = parse_duration(model_budget.budget_duration) if model_budget.budget_duration else None
        cap = Cap(duration, model_budget.max_budget, budget.spend_reset)
        targets.append(Target(scope, model, (cap,), f"model_max_budget[{model}] of {budget.scope}"))
    return targets


def soft_target(budget: Budget) -> Target | None:
    """The soft budget as a target to measure: an alert threshold over the budget's duration."""
    if budget.soft_budget is None:
        return None
    cap = Cap(_duration(budget), budget.soft_budget, budget.spend_reset)
    return Target(Scope.parse(budget.scope), "", (cap,), f"soft_budget of {budget.scope}")


def _duration(budget: Budget) -> Duration | None:
    return parse_duration(budget.budget_duration) if budget.budget_duration else None
