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
* **A cap LiteLLM resets counts over the entity's `budget_duration`**, which the gateway reads
  from the entity's row (`gateway/entity_durations.py`) and passes in (`durations`): the rows
  `rows_to_read` names. A team or user is read when the key object carries its `budget_reset_at`
  (`team_budget_snapshot`, `user_budget_snapshot`: LiteLLM's own auth pins them from its
  database). An organisation or end customer has its budget on a LiteLLM budget row
  (`litellm_budget_table`) whose reset the key object does not carry at all, so it is read
  whenever the key object carries a cap for it: a row with a `budget_duration` is one LiteLLM
  resets; no row (a proxy without LiteLLM's database) or one without a duration leaves the
  lifetime cap. The entity's `max_budget` and `soft_budget` then count over that duration, read
  exactly as the key's own (`Budget.budget_duration`: spendpipe's calendar windows). When the row
  holds no duration (a team or user LiteLLM resets) or one spendpipe does not take (`30s`, `2mo`),
  they are left out (said in `Declaration.left_out`): spendpipe cannot know where the period began,
  and a lifetime cap would keep the entity blocked after LiteLLM let it through again; so is a
  `soft_budget` without a `max_budget`, whose window is the max_budget's. Its rate limits and
  per-model budgets apply either way.
* **A row not read yet declares nothing** (a `None` duration: the row could not be read, and no
  earlier read gave its duration): no declaration at all for that scope, not even its rate limits.
  A declaration without the caps would withdraw them: the newest declaration of a scope wins,
  fleet-wide, so one gateway starting cold against a slow database would lift a cap every other
  gateway enforces.

Where the entity's snapshot carries a `max_budget`, that is the cap LiteLLM enforces (its team,
user or organisation row, read for this request) and it is read before the key view's copy.
"""

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from spendpipe.contracts.budgets import Budget, BudgetRejectedError, validate_budget
from spendpipe.contracts.durations import parse_duration
from spendpipe.contracts.money import cost_from_float
from spendpipe.contracts.scopes import ScopeType, scope_name

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
    row_id: str | None
    """The key object's field holding LiteLLM's id of the entity's row (None: the key itself)."""
    fields: Mapping[str, str]
    """The key object's field -> the `Budget` field it sets."""
    model_max_budget: str | None = None
    snapshot: str | None = None
    """LiteLLM's snapshot of the entity's row (`max_budget`, `budget_reset_at`), when it has one."""
    not_read: Mapping[str, str] = field(default_factory=dict)
    """Fields the key object carries for the scope that spendpipe does not enforce, and why."""
    budget_row: bool = False
    """Its budget is a LiteLLM budget row (`litellm_budget_table`) whose reset time the key object
    does not carry: its duration is read whenever the key object carries a cap for it."""


_NO_MEMBER_LIMITS = "spendpipe has no rate limits on a team membership"
_NO_DAILY_TOKENS = "spendpipe has no tokens-per-day limit"

ENTITIES = (
    Entity(ScopeType.KEY, None, KEY_FIELDS, "model_max_budget"),
    Entity(
        ScopeType.TEAM,
        "team_id",
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
        "user_id",
        {"user_max_budget": "max_budget", "user_rpm_limit": "rpm_limit", "user_tpm_limit": "tpm_limit"},
        "user_model_max_budget",
        "user_budget_snapshot",
    ),
    Entity(
        ScopeType.ORG,
        "org_id",
        {"organization_max_budget": "max_budget"},
        snapshot="org_budget_snapshot",
        budget_row=True,
        not_read={
            "organization_rpm_limit": "spendpipe has no rate limits on an organisation",
            "organization_tpm_limit": "spendpipe has no rate limits on an organisation",
        },
    ),
    Entity(
        ScopeType.END_USER,
        "end_user_id",
        {"end_user_max_budget": "max_budget", "end_user_rpm_limit": "rpm_limit", "end_user_tpm_limit": "tpm_limit"},
        "end_user_model_max_budget",
        not_read={"end_user_tpd_limit": _NO_DAILY_TOKENS},
        budget_row=True,
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
    key: object, scope_ids: Mapping[ScopeType, str | None], durations: Mapping[ScopeType, str | None] | None = None
) -> list[Declaration]:
    """What `key` declares for each scope in `scope_ids` (the request's ids, named as its spend is
    counted; an absent id declares nothing). `durations`: the `budget_duration` of the rows
    `rows_to_read` names, as the rows hold it (None: the row was never read, and the scope is
    left without a declaration; a scope absent: no row, or none with a duration). Never raises on
    what the key holds."""
    durations = durations or {}
    declarations = []
    for entity in ENTITIES:
        scope_id = scope_ids.get(entity.scope_type)
        if not scope_id or (entity.scope_type in durations and durations[entity.scope_type] is None):
            continue
        scope = scope_name(entity.scope_type, scope_id)
        try:
            declarations.append(_declaration(entity, scope, key, durations))
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


def rows_to_read(key: object) -> tuple[tuple[ScopeType, str], ...]:
    """The entities whose caps LiteLLM may reset on a duration the key object does not carry, as
    (scope type, LiteLLM's id of the row): the `durations` `declarations_of` needs to enforce them
    (module docstring)."""
    rows = []
    for entity in ENTITIES:
        row_id = getattr(key, entity.row_id, None) if entity.row_id else None
        if isinstance(row_id, str) and row_id and _may_reset(entity, key):
            rows.append((entity.scope_type, row_id))
    return tuple(rows)


def _may_reset(entity: Entity, key: object) -> bool:
    snapshot = getattr(key, entity.snapshot, None) if entity.snapshot else None
    if not entity.budget_row:
        return getattr(snapshot, "budget_reset_at", None) is not None
    caps = (name for name, target in entity.fields.items() if target in _RESETTING)
    return getattr(snapshot, "max_budget", None) is not None or any(
        getattr(key, name, None) is not None for name in caps
    )


def _declaration(entity: Entity, scope: str, key: object, durations: Mapping[ScopeType, str | None]) -> Declaration:
    document: dict[str, Any] = {"scope": scope}
    for name, target in entity.fields.items():
        value = getattr(key, name, None)
        if value is not None and value != {}:
            document[target] = _plain(value)
    left_out = [f"{name}: {why}" for name, why in entity.not_read.items() if getattr(key, name, None) is not None]
    if entity.snapshot:
        _read_snapshot(document, getattr(key, entity.snapshot, None))
    if entity.row_id:
        left_out += _count_over_duration(document, entity, key, durations)
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


def _read_snapshot(document: dict[str, Any], snapshot: object) -> None:
    """LiteLLM's snapshot of the entity's row: its `max_budget` is the cap LiteLLM enforces."""
    if getattr(snapshot, "max_budget", None) is not None:
        document["max_budget"] = _plain(getattr(snapshot, "max_budget", None))


def _count_over_duration(
    document: dict[str, Any], entity: Entity, key: object, durations: Mapping[ScopeType, str | None]
) -> list[str]:
    """The caps that count since LiteLLM's last reset of the entity count over its row's duration,
    or are left out when it has none spendpipe takes (module docstring). Returns what was left out."""
    reset_at = getattr(getattr(key, entity.snapshot, None), "budget_reset_at", None) if entity.snapshot else None
    if entity.budget_row and entity.scope_type not in durations:
        return []  # no row, or no duration on it: a lifetime cap
    if not entity.budget_row and reset_at is None:
        return []
    duration = durations.get(entity.scope_type)
    if duration is None:  # a team or user LiteLLM resets, whose row holds no duration
        why = f"LiteLLM resets this spend at {reset_at} on a duration its row does not hold"
        return _leave_out(document, _RESETTING, why)
    try:
        parse_duration(duration)
    except ValueError:
        return _leave_out(
            document, _RESETTING, f"LiteLLM resets it every {duration[:32]!r}, which spendpipe does not take"
        )
    if "max_budget" in document:
        document["budget_duration"] = duration
        return []
    # a soft budget counts over its budget's max_budget window: without one it would be a lifetime one
    return _leave_out(document, ("soft_budget",), f"LiteLLM resets it every {duration}, and there is no max_budget")


def _leave_out(document: dict[str, Any], names: tuple[str, ...], why: str) -> list[str]:
    """Take `names` out of the budget document; `field: why` for each that was in it."""
    return [f"{name}: {why}" for name in names if document.pop(name, None) is not None]


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
