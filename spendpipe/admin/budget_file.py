"""Budgets from a YAML file, in LiteLLM's words where they overlap.

    litellm_settings:            # the proxy's global settings: the global scope
      max_budget: 100
      budget_duration: 30d
      max_end_user_budget: 0.5   # every end customer without a budget of its own
    router_settings:             # LiteLLM's provider budgets, as in the proxy's config
      provider_budget_config:
        openai: {budget_limit: 100, time_period: 1d}   # the scope provider:openai
    budgets:                     # one entry per scope, LiteLLM's field names
      - scope: tag:product:chat-bot                    # a tag budget (LiteLLM's /tag/new)
        max_budget: 10
        budget_duration: 1d
      - scope: team:search
        max_budget: 10
        budget_duration: 24h
        max_budget_in_team: 2
      - scope: key:<sha256 of the key>
        budget_limits:
          - {budget_duration: 24h, max_budget: 10}
          - {budget_duration: 30d, max_budget: 100}

`spendpipe budgets apply --file budgets.yaml` validates every entry and publishes them all, or
none: errors name the entry and the field.
"""

from pathlib import Path
from typing import Any

import yaml

from spendpipe.contracts.budgets import Budget, BudgetRejectedError, validate_budget
from spendpipe.contracts.scopes import ScopeType, scope_name

GLOBAL_KEYS = ("max_budget", "budget_duration", "budget_limits", "soft_budget", "max_end_user_budget")


def load_budget_file(path: Path) -> list[Budget]:
    return budgets_from_document(yaml.safe_load(path.read_text(encoding="utf-8")) or {}, source=str(path))


def budgets_from_document(document: object, *, source: str = "budgets") -> list[Budget]:
    """Every budget of a parsed YAML document, or `BudgetRejectedError` naming each bad field."""
    if not isinstance(document, dict):
        raise BudgetRejectedError([f"{source}: expected a mapping with `budgets` and/or `litellm_settings`"])
    entries: list[tuple[str, dict[str, Any]]] = []
    settings = document.get("litellm_settings") or {}
    global_budget = {k: settings[k] for k in GLOBAL_KEYS if k in settings}
    if global_budget:
        entries.append(("litellm_settings", {"scope": "global", **global_budget}))
    entries += _provider_budgets(document.get("router_settings"), source)
    listed = document.get("budgets") or []
    if not isinstance(listed, list):
        raise BudgetRejectedError([f"{source}: `budgets` must be a list of budgets, one per scope"])
    problems = [f"budgets[{n}]: expected a mapping of fields" for n, e in enumerate(listed) if not isinstance(e, dict)]
    entries += [(f"budgets[{n}]", dict(e)) for n, e in enumerate(listed) if isinstance(e, dict)]
    budgets = []
    for where, entry in entries:
        try:
            budgets.append(validate_budget(entry))
        except BudgetRejectedError as error:
            problems += [f"{where}.{problem}" for problem in error.problems]
    if problems:
        raise BudgetRejectedError(problems)
    return budgets


PROVIDER_FIELDS = {"budget_limit": "max_budget", "time_period": "budget_duration"}
"""LiteLLM's `provider_budget_config` fields and the budget fields they are."""


def _provider_budgets(router_settings: object, source: str) -> list[tuple[str, dict[str, Any]]]:
    """`router_settings.provider_budget_config` (`{provider: {budget_limit, time_period}}`) as
    budgets of the scopes `provider:<provider>`; another field of an entry is refused by name."""
    if router_settings is None:
        return []
    where = "router_settings.provider_budget_config"
    config = router_settings.get("provider_budget_config") if isinstance(router_settings, dict) else None
    if config is None:
        return []
    if not isinstance(config, dict):
        raise BudgetRejectedError([f"{source}: {where} must map each provider to its budget_limit and time_period"])
    wrong = [f"{source}: {where}.{p}: expected budget_limit and time_period" for p, f in config.items()
             if not isinstance(f, dict)]  # fmt: skip
    if wrong:
        raise BudgetRejectedError(wrong)
    entries: list[tuple[str, dict[str, Any]]] = []
    for provider, fields in config.items():
        entry = {PROVIDER_FIELDS.get(name, name): value for name, value in fields.items()}
        entries.append((f"{where}.{provider}", {"scope": scope_name(ScopeType.PROVIDER, provider), **entry}))
    return entries
