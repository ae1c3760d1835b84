"""Budgets LiteLLM users already declare on their virtual keys, as the proxy hands the key to its
hooks (`UserAPIKeyAuth`), turned into spendpipe `Budget`s of the key's scope.

A gateway publishes one to `spend.budgets.declared` (keyed by scope, signed by the gateway's
writer key under its own message type, so it can never pass as an operator's budget on
`spend.budgets`), and the enforcer applies it exactly as a `budgets set` of that scope, unless an
operator's budget for the scope exists: **the operator's explicit budget wins**, whole (the two
are not merged field by field). Deleting the operator's budget puts the key's own back in force.

Only the key's own fields are read: `max_budget`, `budget_duration`, `soft_budget`,
`budget_limits`, `model_max_budget`, `rpm_limit`, `tpm_limit`, `max_parallel_requests`,
`rpm_limit_per_model` and `tpm_limit_per_model`. The key object also carries its team's, user's,
organisation's and end customer's caps (`team_max_budget`, ...), but not their durations, so they
would be read as lifetime caps where LiteLLM resets them; those scopes keep taking their budgets
from `budgets set`.
"""

from collections.abc import Mapping
from typing import Any

from spendpipe.contracts.budgets import Budget, validate_budget
from spendpipe.contracts.money import cost_from_float

MESSAGE_TYPE = "spendpipe.declared_budget.v1"

KEY_FIELDS = {
    "max_budget": "max_budget",
    "budget_duration": "budget_duration",
    "soft_budget": "soft_budget",
    "rpm_limit": "rpm_limit",
    "tpm_limit": "tpm_limit",
    "max_parallel_requests": "max_parallel_requests",
    "rpm_limit_per_model": "model_rpm_limit",
    "tpm_limit_per_model": "model_tpm_limit",
}
"""The key's field in LiteLLM -> the `Budget` field it sets, for fields with the same meaning."""


def declared_key_budget(key_hash: str, key: object) -> Budget | None:
    """The budget a LiteLLM key declares, or None when it declares none. Raises
    `BudgetRejectedError` (a ValueError) when what it declares is not a valid budget."""
    document: dict[str, Any] = {"scope": f"key:{key_hash}"}
    for name, field in KEY_FIELDS.items():
        value = getattr(key, name, None)
        if value is not None and value != {}:
            document[field] = _plain(value)
    limits = getattr(key, "budget_limits", None)
    if limits:
        document["budget_limits"] = [_window(entry) for entry in limits]
    models = getattr(key, "model_max_budget", None)
    if isinstance(models, Mapping) and models:
        document["model_max_budget"] = {str(model): _model_budget(entry) for model, entry in models.items()}
    if len(document) == 1:
        return None
    return validate_budget(document)


def _plain(value: object) -> object:
    """LiteLLM's float amounts are read as every float cost is (`cost_from_float`)."""
    return cost_from_float(value) if isinstance(value, float) else value


def _window(entry: object) -> dict[str, object]:
    values = entry if isinstance(entry, Mapping) else getattr(entry, "__dict__", {})
    return {"budget_duration": values.get("budget_duration"), "max_budget": _plain(values.get("max_budget"))}


def _model_budget(entry: object) -> dict[str, object]:
    values = entry if isinstance(entry, Mapping) else {}
    budget: dict[str, object] = {"max_budget": _plain(values.get("max_budget"))}
    if values.get("budget_duration") is not None:
        budget["budget_duration"] = values.get("budget_duration")
    return budget
