"""`Budget`: the caps and rate limits a scope has, with LiteLLM's field names, the message on
`spend.budgets`.

The topic is compacted and keyed by the scope (`team:eng`, `key:<hash>`, `global`...). Invalid
input is refused by validation with the field and the reason, before anything is published.

**Versions.** Every record a writer publishes carries a `version` (microseconds of the writer's
clock, above any it wrote before), a deletion too: `BudgetDeletion`, a record of its own rather
than a tombstone, because a tombstone has no value to carry a version in. Every reader applies
records through `LatestBudgets`, which keeps, per scope, the version read last and refuses an
older one written after it. So a genuine, signed, older record written again by whoever can
write the topic (a replay) changes nothing for a reader that has read the newer one, in
whichever partition it is written and in whichever order the reader meets the partitions.
Records from before versions (no `version`, null tombstones) are taken in offset order as they
always were, until the scope's first versioned record; after it, an unversioned record is stale.
"""

import time
from dataclasses import dataclass
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, RootModel, ValidationError, model_validator

from spendpipe.contracts.durations import Duration, parse_duration
from spendpipe.contracts.events import Cost
from spendpipe.contracts.positions import Position, after
from spendpipe.contracts.rate_limits import LIMIT_FIELDS, LIMITED_SCOPES, LimitCount, ModelName, RateLimit, TokenType
from spendpipe.contracts.scopes import Scope, ScopeType

MESSAGE_TYPE = "spendpipe.budget.v1"

SESSION_FIELDS = ("max_budget_per_session", "max_iterations")

Version = Annotated[int, Field(ge=1, lt=2**63)]


def _duration(text: str) -> str:
    return parse_duration(text).text


def _scope(text: str) -> str:
    return str(Scope.parse(text))


DurationText = Annotated[str, AfterValidator(_duration)]
ScopeText = Annotated[str, AfterValidator(_scope)]


class BudgetWindow(BaseModel):
    """One cap over one duration (an entry of LiteLLM's `budget_limits`)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    budget_duration: DurationText
    max_budget: Cost


class ModelBudget(BaseModel):
    """A per-model cap (an entry of LiteLLM's `model_max_budget`)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_budget: Cost
    budget_duration: DurationText | None = None


class SpendReset(BaseModel):
    """Where a scope's spend starts afresh (`BudgetManager.reset_cost`, `create_budget` over an
    existing user): every cap of the budget counts the spend from the minute `at` on, less
    `spent_before`, what that minute already held at the reset. The history stays; only the
    reads start later. Minutes are the finest rows of `spend_totals`, hence the offset."""

    model_config = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)

    at: int = Field(ge=0, multiple_of=60)
    """Unix seconds of the minute the spend counts from."""
    spent_before: Cost = Decimal(0)
    """The minute's spend (all models) counted before the reset, left out of every read."""
    model_spent_before: dict[str, Cost] = Field(default_factory=dict)
    """The same, per model."""


class Budget(BaseModel):
    """The spend caps and rate limits of one scope, with LiteLLM's field names; `BudgetDeletion`
    deletes them."""

    model_config = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)

    schema_version: Literal[1] = 1
    scope: ScopeText
    version: Version | None = None
    """Set by the writer as it publishes (module docstring); None before versions existed, and on
    budgets declared on LiteLLM keys."""
    max_budget: Cost | None = None
    budget_duration: DurationText | None = None
    """Resets `max_budget`; without it `max_budget` is a lifetime cap."""
    budget_limits: tuple[BudgetWindow, ...] = ()
    soft_budget: Cost | None = None
    """Crossing it raises an alert, not a block."""
    max_budget_in_team: Cost | None = None
    """On a team: the cap of each member's spend within the team."""
    max_end_user_budget: Cost | None = None
    """On the global scope: the default cap of every end customer without a budget of its own."""
    model_max_budget: dict[str, ModelBudget] = Field(default_factory=dict)
    rpm_limit: LimitCount | None = None
    """Requests per sliding minute (`rate_limits.py`)."""
    tpm_limit: LimitCount | None = None
    """Tokens per sliding minute, of the kind `token_rate_limit_type` names."""
    max_parallel_requests: LimitCount | None = None
    """Requests in flight at once, per gateway replica."""
    model_rpm_limit: dict[ModelName, LimitCount] = Field(default_factory=dict)
    model_tpm_limit: dict[ModelName, LimitCount] = Field(default_factory=dict)
    token_rate_limit_type: TokenType = "total"  # noqa: S105 - a token kind, not a secret
    max_budget_per_session: Cost | None = None
    """On an agent: the spend cap of each of its sessions (LiteLLM's agent `litellm_params`)."""
    max_iterations: LimitCount | None = None
    """On an agent: how many LLM calls each of its sessions may make."""
    spend_reset: SpendReset | None = None
    """Where `max_budget` and `budget_limits` start counting afresh; None: no reset."""
    headroom_leases: bool = False
    """Hold this budget's caps by headroom leases (docs/leases.md): gateways reserve each call's
    estimate from a slice the enforcer lends them. The caps it derives (`max_budget_in_team`,
    `max_end_user_budget`) are leased too, for every scope without a budget of its own. False:
    enforced by block decisions alone."""

    @model_validator(mode="after")
    def _consistent(self) -> "Budget":
        problems = []
        if self.budget_duration is not None and self.max_budget is None:
            problems.append("budget_duration: needs max_budget, the cap that resets")
        durations = [window.budget_duration for window in self.budget_limits]
        if self.budget_duration is not None:
            durations.append(self.budget_duration)
        meanings = [parse_duration(d).window_key for d in durations]
        repeated = sorted({d for d, m in zip(durations, meanings, strict=True) if meanings.count(m) > 1})
        if len(repeated) == 1:
            problems.append(f"budget_limits: {repeated[0]} appears more than once")
        elif repeated:
            problems.append(f"budget_limits: {' and '.join(repeated)} are the same window")
        scope_type = Scope.parse(self.scope).type
        if self.max_budget_in_team is not None and scope_type is not ScopeType.TEAM:
            problems.append("max_budget_in_team: only a team budget can cap its members")
        if self.max_end_user_budget is not None and scope_type is not ScopeType.GLOBAL:
            problems.append("max_end_user_budget: only the global budget sets the end-customer default")
        problems += self._agent_problems(scope_type)
        derived = self.max_budget_in_team is not None or self.max_end_user_budget is not None
        if self.headroom_leases and not (self.hard_caps() or self.model_max_budget or derived):
            problems.append(
                "headroom_leases: needs a cap to lease (max_budget, budget_limits, model_max_budget,"
                " max_budget_in_team or max_end_user_budget)"
            )
        limits = [name for name in LIMIT_FIELDS if getattr(self, name)]
        if limits and scope_type not in LIMITED_SCOPES:
            kinds = ", ".join(sorted(t.value for t in LIMITED_SCOPES))
            problems += [f"{name}: rate limits apply to {kinds} scopes, not {scope_type.value}" for name in limits]
        if not self.sets_anything:
            problems.append("budget: sets no cap or limit (max_budget, budget_limits, rpm_limit, ...)")
        if problems:
            raise ValueError("\n".join(problems))  # validate_budget reports one line each
        return self

    def _agent_problems(self, scope_type: ScopeType) -> list[str]:
        """Session caps belong to agents; an agent's spend has no rollup, so it takes no spend cap."""
        if scope_type is not ScopeType.AGENT:
            return [
                f"{name}: only an agent's budget caps its sessions" for name in SESSION_FIELDS if getattr(self, name)
            ]
        allowed = {"schema_version", "scope", "version", "token_rate_limit_type", "rpm_limit", "tpm_limit"}
        allowed |= set(SESSION_FIELDS)
        return [
            f"{name}: an agent takes max_budget_per_session, max_iterations, rpm_limit and tpm_limit only"
            for name in sorted(self.model_fields_set - allowed)
            if getattr(self, name)
        ]

    @property
    def session_caps(self) -> bool:
        return self.max_budget_per_session is not None or self.max_iterations is not None

    @property
    def sets_anything(self) -> bool:
        optional = (self.max_budget, self.soft_budget, self.max_budget_in_team, self.max_end_user_budget)
        if self.session_caps:
            return True
        caps = any(v is not None for v in optional) or bool(self.budget_limits or self.model_max_budget)
        return caps or any(getattr(self, name) for name in LIMIT_FIELDS)

    def rate_limits(self) -> tuple[RateLimit, ...]:
        """The sliding-minute limits: the scope's own (over all models), then one per model."""
        limits = []
        if self.rpm_limit or self.tpm_limit:
            limits.append(RateLimit(self.scope, "", self.rpm_limit, self.tpm_limit, self.token_rate_limit_type))
        for model in sorted(self.model_rpm_limit.keys() | self.model_tpm_limit.keys()):
            rpm, tpm = self.model_rpm_limit.get(model), self.model_tpm_limit.get(model)
            limits.append(RateLimit(self.scope, model, rpm, tpm, self.token_rate_limit_type))
        return tuple(limits)

    def hard_caps(self) -> tuple["Cap", ...]:
        """The caps on the scope's own spend: `max_budget` (over its duration, or for the
        scope's lifetime without one) and every `budget_limits` entry."""
        reset = self.spend_reset
        caps = [Cap(parse_duration(w.budget_duration), w.max_budget, reset) for w in self.budget_limits]
        if self.max_budget is not None:
            duration = parse_duration(self.budget_duration) if self.budget_duration else None
            caps.append(Cap(duration, self.max_budget, reset))
        return tuple(caps)


@dataclass(frozen=True)
class Cap:
    duration: Duration | None
    """None: the scope's whole lifetime."""
    limit: Decimal
    reset: SpendReset | None = None
    """Spend before it is not counted (`SpendReset`)."""


class BudgetRejectedError(ValueError):
    """A budget that was refused; `problems` are `field: reason` lines."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("budget refused:\n  " + "\n  ".join(problems))
        self.problems = problems


def validate_budget(document: dict[str, object]) -> Budget:
    try:
        return Budget.model_validate(document)
    except ValidationError as error:
        problems = []
        for issue in error.errors(include_url=False):
            field = ".".join(str(part) for part in issue["loc"]) or "budget"
            message = str(issue["msg"]).removeprefix("Value error, ")
            if issue["loc"]:
                problems.append(f"{field}: {message}")
            else:  # the whole-budget checks: each line already starts with its field
                problems.extend(message.splitlines())
        raise BudgetRejectedError(problems) from None


class BudgetDeletion(BaseModel):
    """The record that deletes a scope's budget: versioned like a budget, so an older budget
    written again after it is stale."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: Literal[1] = 1
    scope: ScopeText
    version: Version
    deleted: Literal[True]


class BudgetRecord(RootModel[Budget | BudgetDeletion]):
    """The value of a `spend.budgets` record: a budget, or the deletion of one."""

    model_config = ConfigDict(frozen=True)


class VersionClock:
    """A writer's versions: microseconds of its clock, each above the one before."""

    def __init__(self) -> None:
        self._last = 0

    def next(self) -> int:
        self._last = max(self._last + 1, time.time_ns() // 1000)
        return self._last


@dataclass(frozen=True)
class BudgetChange:
    scope: str
    budget: Budget | None
    """None: the scope has no budget any more."""
    version: int = 0
    """The record's version (0: a record from before versions): what makes it the latest."""


class LatestBudgets:
    """Per scope, the version and position of the newest budget record read (module docstring).
    Positions tell a replay from a reader reading the topic again: a record at or before the
    position already applied for its scope, in its partition, was read before (the reader started
    over) and is passed over quietly; one written after it (or in another partition: a replay
    written there, `positions.after`) with an older version is a replay, `stale`. Not locked: one
    reader thread offers."""

    def __init__(self) -> None:
        self._newest: dict[str, tuple[int, Position]] = {}
        """scope -> (version, 0 for none; position) of the record in force."""

    def offer(self, key: bytes | None, value: bytes | None, position: Position) -> BudgetChange | str | None:
        """The change the verified record at `position` (partition, offset) makes; None when it
        makes none (read before, or the record in force written again); or why it is refused:
        `stale` (an older version written after a newer one), `unreadable` (not a budget record,
        or one of another scope than its key)."""
        scope = (key or b"").decode(errors="replace")
        known_version, known_position = self._newest.get(scope, (0, None))
        if not after(position, known_position):
            return None
        record = None if value is None else _record_of(scope, value)  # None: a tombstone
        if value is not None and record is None:
            return "unreadable"
        version = 0 if record is None else record.version or 0
        if version < known_version:  # a tombstone too: it deletes only on a topic from before versions
            return "stale"
        if version == known_version != 0:
            return None
        self._newest[scope] = (version, position)
        return BudgetChange(scope, record if isinstance(record, Budget) else None, version)


def _record_of(scope: str, value: bytes) -> Budget | BudgetDeletion | None:
    """The budget record `value` holds for `scope`; None when it holds none (or another scope's)."""
    try:
        record = BudgetRecord.model_validate_json(value).root
    except ValidationError:
        return None
    return record if record.scope == scope else None
