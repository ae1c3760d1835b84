"""Budgets LiteLLM users already declare on their virtual keys, teams, users, organisations and
end customers, as the proxy hands them to its hooks on the authenticated key object
(`UserAPIKeyAuth`), turned into spendpipe `Budget`s of those scopes.

A gateway publishes each to `spend.budgets.declared` (keyed by scope, signed by the gateway's
writer key under its own message type, so it can never pass as an operator's budget on
`spend.budgets`), and the enforcer applies it exactly as a `budgets set` of that scope, unless an
operator's budget for the scope exists: **the operator's explicit budget wins**, whole (the two
are not merged field by field). Deleting the operator's budget puts the declared one back in force.

What each scope reads is in `ENTITIES`. The key declares its own `max_budget` with its
`budget_duration`. The key object carries the other scopes' caps without a duration, so:

* **A cap without a reset is a lifetime cap**, LiteLLM's meaning: its reset job only zeroes the
  spend of an entity that has a `budget_reset_at`, and an entity without a `budget_duration` has
  none (nor does any entity on a proxy without LiteLLM's database, where `custom_auth` sets them).
* **A cap LiteLLM resets counts over the entity's `budget_duration`.** When the key object carries
  the entity's `budget_reset_at` (`team_budget_snapshot`, `user_budget_snapshot`: LiteLLM's own
  auth pins them from its database), LiteLLM zeroes the spend at that instant and moves it on by
  the row's `budget_duration`, which the key object does not carry: the gateway reads it from the
  team or user row (`gateway/entity_durations.py`) and passes it in (`durations`). The entity's
  `max_budget` and `soft_budget` then count over that duration, read exactly as the key's own
  (`Budget.budget_duration`: spendpipe's calendar windows). Without it (the row could not be
  read) they are left out (said in `Declaration.left_out`): spendpipe cannot know where the
  period began, and a lifetime cap would keep the entity blocked after LiteLLM let it through
  again. Its rate limits and per-model budgets apply either way.

Where the entity's snapshot carries a `max_budget`, that is the cap LiteLLM enforces (its team,
user or organisation row, read for this request) and it is read before the key view's copy.
"""

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from spendpipe.contracts.budgets import Budget, BudgetRejectedError, validate_budget
from spendpipe.contracts.money import cost_from_float
from spendpipe.contracts.scopes import ScopeType

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

_RESETTING = ("max_budget", "soft_budget")
"""The `Budget` fields that count spend since LiteLLM's last reset of the entity."""


@dataclass(frozen=True, slots=True)
class Entity:
    """How one scope's budget is named on the key object."""

    scope_type: ScopeType
    fields: Mapping[str, str]
    """The key object's field -> the `Budget` field it sets."""
    model_max_budget: str | None = None
    snapshot: str | None = None
    """LiteLLM's snapshot of the entity's row (`max_budget`, `budget_reset_at`), when it has one."""
    not_read: Mapping[str, str] = field(default_factory=dict)
    """Fields the key object carries for the scope that spendpipe does not enforce, and why."""


_NO_MEMBER_LIMITS = "spendpipe has no rate limits on a team membership"
_NO_DAILY_TOKENS = "spendpipe has no tokens-per-day limit"

ENTITIES = (
    Entity(ScopeType.KEY, KEY_FIELDS, "model_max_budget"),
    Entity(
        ScopeType.TEAM,
        {
            "team_max_budget": "max_budget",
            "team_soft_budget": "soft_budget",
            "team_rpm_limit": "rpm_limit",
            "team_tpm_limit": "tpm_limit",
        },
        "team_model_max_budget",
        "team_budget_snapshot",
        {
            "team_member_rpm_limit": _NO_MEMBER_LIMITS,
            "team_member_tpm_limit": _NO_MEMBER_LIMITS,
            "team_tpd_limit": _NO_DAILY_TOKENS,
        },
    ),
    Entity(
        ScopeType.USER,
        {"user_max_budget": "max_budget", "user_rpm_limit": "rpm_limit", "user_tpm_limit": "tpm_limit"},
        "user_model_max_budget",
        "user_budget_snapshot",
    ),
    Entity(
        ScopeType.ORG,
        {"organization_max_budget": "max_budget"},
        snapshot="org_budget_snapshot",
        not_read={
            "organization_rpm_limit": "spendpipe has no rate limits on an organisation",
            "organization_tpm_limit": "spendpipe has no rate limits on an organisation",
        },
    ),
    Entity(
        ScopeType.END_USER,
        {"end_user_max_budget": "max_budget", "end_user_rpm_limit": "rpm_limit", "end_user_tpm_limit": "tpm_limit"},
        "end_user_model_max_budget",
        not_read={"end_user_tpd_limit": _NO_DAILY_TOKENS},
    ),
)

FIELDS_READ = tuple(
    dict.fromkeys(
        name
        for entity in ENTITIES
        for name in ("budget_limits", *entity.fields, entity.model_max_budget, entity.snapshot, *entity.not_read)
        if name is not None
    )
)
"""Every field of the key object `declarations_of` reads: equal values, the same declarations."""

DECLARABLE_SCOPES = frozenset(entity.scope_type for entity in ENTITIES)
"""The scope kinds a key object can declare a budget for; the enforcer accepts no other."""


@dataclass(frozen=True, slots=True)
class Declaration:
    """What a key object declares for one scope."""

    scope: str
    budget: Budget | None
    """None: it declares no budget for the scope (or none that is valid: `problem`)."""
    problem: BudgetRejectedError | None = None
    left_out: tuple[str, ...] = ()
    """`field: why` for what the key object carries for the scope and spendpipe does not enforce."""


def declarations_of(
    key: object, scope_ids: Mapping[ScopeType, str | None], durations: Mapping[ScopeType, str] | None = None
) -> list[Declaration]:
    """What `key` declares for each scope in `scope_ids` (the request's ids, named as its spend is
    counted; an absent id declares nothing). `durations`: the `budget_duration` of the entities
    LiteLLM resets (`resetting_scopes`), as their rows hold it. Never raises on what the key holds."""
    declarations = []
    for entity in ENTITIES:
        scope_id = scope_ids.get(entity.scope_type)
        if not scope_id:
            continue
        scope = f"{entity.scope_type.value}:{scope_id}"
        try:
            declarations.append(_declaration(entity, scope, key, (durations or {}).get(entity.scope_type)))
        except Exception as error:  # a value of an odd type: said, as an invalid budget is
            declarations.append(Declaration(scope, None, BudgetRejectedError([f"budget: {error!r}"])))
    return declarations


def declared_key_budget(key_hash: str, key: object) -> Budget | None:
    """The budget a LiteLLM key declares for its own scope, or None when it declares none.
    Raises `BudgetRejectedError` (a ValueError) when what it declares is not a valid budget."""
    (declaration,) = declarations_of(key, {ScopeType.KEY: key_hash})
    if declaration.problem is not None:
        raise declaration.problem
    return declaration.budget


def resetting_scopes(key: object) -> tuple[ScopeType, ...]:
    """The scopes whose caps LiteLLM resets on a duration the key object does not carry: the
    `durations` `declarations_of` needs to enforce them."""
    return tuple(
        entity.scope_type
        for entity in ENTITIES
        if entity.snapshot and getattr(getattr(key, entity.snapshot, None), "budget_reset_at", None) is not None
    )


def _declaration(entity: Entity, scope: str, key: object, duration: str | None) -> Declaration:
    document: dict[str, Any] = {"scope": scope}
    for name, target in entity.fields.items():
        value = getattr(key, name, None)
        if value is not None and value != {}:
            document[target] = _plain(value)
    left_out = [f"{name}: {why}" for name, why in entity.not_read.items() if getattr(key, name, None) is not None]
    if entity.snapshot:
        left_out += _read_snapshot(document, getattr(key, entity.snapshot, None), duration)
    if entity.scope_type is ScopeType.KEY:
        limits = getattr(key, "budget_limits", None)
        if limits:
            document["budget_limits"] = [_window(entry) for entry in limits]
    models = getattr(key, entity.model_max_budget, None) if entity.model_max_budget else None
    if isinstance(models, Mapping) and models:
        document["model_max_budget"] = {str(model): _model_budget(entry) for model, entry in models.items()}
    if len(document) == 1:
        return Declaration(scope, None, left_out=tuple(left_out))
    try:
        return Declaration(scope, validate_budget(document), left_out=tuple(left_out))
    except BudgetRejectedError as problem:
        return Declaration(scope, None, problem, tuple(left_out))


def _read_snapshot(document: dict[str, Any], snapshot: object, duration: str | None) -> list[str]:
    """LiteLLM's snapshot of the entity's row: its `max_budget` is the cap LiteLLM enforces; with
    a `budget_reset_at` the caps that count since the last reset count over `duration`, or are
    left out without one (module docstring). Returns what was left out."""
    if snapshot is None:
        return []
    if getattr(snapshot, "max_budget", None) is not None:
        document["max_budget"] = _plain(getattr(snapshot, "max_budget", None))
    reset_at = getattr(snapshot, "budget_reset_at", None)
    if reset_at is None:
        return []
    if duration is not None:
        if any(name in document for name in _RESETTING):
            document["budget_duration"] = duration
        return []
    why = f"LiteLLM resets this spend at {reset_at} on a duration that could not be read"
    return [f"{name}: {why}" for name in _RESETTING if document.pop(name, None) is not None]


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
