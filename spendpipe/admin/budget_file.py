"""Budgets from a YAML file, in LiteLLM's words where they overlap.

    litellm_settings:            # the proxy's global settings: the global scope
      max_budget: 100
      budget_duration: 30d
      max_end_user_budget: 0.5   # every end customer without a budget of its own
    budgets:                     # one entry per scope, LiteLLM's field names
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
