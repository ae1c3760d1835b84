"""`SpendEvent`: one LLM request as it passed a gateway, the message on `spend.events`.

The message type name is versioned (`spendpipe.spend_event.v1`) and carried in every
payload as `schema_version`; how it is serialised (JSON, below) is separate from what
it means. A consumer that meets a version it does not know dead-letters the message
instead of guessing.
"""

from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Literal

import orjson
from pydantic import (
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    ValidationError,
    WithJsonSchema,
    field_validator,
)

from spendpipe.contracts.money import COST_FORM, COST_PRECISION, COST_SCALE

MESSAGE_TYPE = "spendpipe.spend_event.v1"
SCHEMA_VERSION = 1

EARLIEST, LATEST = datetime(2000, 1, 1, tzinfo=UTC), datetime(2100, 1, 1, tzinfo=UTC)
"""occurred_at must fall in here: ClickHouse's DateTime windows end in 2106."""
MAX_EVENT_COST = Decimal(1_000_000)
"""No single request costs a million dollars; the bound keeps a flush's sums inside Decimal(38, 24)
(window totals are Decimal(76, 24))."""

Cost = Annotated[
    Decimal,
    Field(ge=0, max_digits=COST_PRECISION, decimal_places=COST_SCALE),
    PlainSerializer(lambda d: format(d, "f"), return_type=str, when_used="json"),
]
"""A non-negative exact amount in US dollars; a string on the wire so no JSON reader sees a float."""

MAX_TOKENS = 10**9
"""Most tokens of one kind a single request can report. The largest context windows are about
10^7 tokens, so this leaves a hundredfold margin, while every per-event count fits the `events`
table's UInt64 columns and no window's sum in `spend_totals` (UInt128) can overflow."""

TokenCount = Annotated[int, Field(strict=True, ge=0, le=MAX_TOKENS)]
"""A JSON integer: no float, string or boolean is read as a count."""

EventCost = Annotated[
    Cost,
    BeforeValidator(lambda value, info: _exact_cost(value, json=info.mode == "json")),
    WithJsonSchema({"type": "string", "pattern": COST_FORM.pattern}),
]
"""An event's cost: on the wire only a string of the form `COST_FORM` ("0.000225"), never a JSON
number (a float would already have lost digits) and never what `Decimal()` also reads ("0_5",
"1e-4", " 1"). In Python a `Decimal` or an int. A negative zero is kept as 0, so it is written
as "0"."""

Label = Annotated[str | None, Field(max_length=256)]

KeyHash = Annotated[str | None, Field(pattern=r"^[0-9a-f]{64}$")]
"""SHA-256 hex of the API key, the same hash LiteLLM's proxy stores as the key's token."""


class SpendEvent(BaseModel):
    """What one request cost, and who it is attributed to."""

    model_config = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)

    schema_version: Literal[1] = 1
    event_id: str = Field(min_length=1, max_length=128)
    occurred_at: AwareDatetime
    key_hash: KeyHash = None
    key_alias: Label = None
    user_id: Label = None
    team_id: Label = None
    org_id: Label = None
    end_user: Label = None
    model: str = Field(min_length=1, max_length=256)
    model_group: Label = None
    provider: Label = None
    call_type: Label = None
    prompt_tokens: TokenCount = 0
    completion_tokens: TokenCount = 0
    total_tokens: TokenCount = 0
    cost: EventCost = Field(le=MAX_EVENT_COST)
    cache_hit: bool = Field(default=False, strict=True)
    status: Literal["success", "failure"] = "success"
    error_class: Label = None
    latency_ms: float = Field(default=0.0, ge=0, allow_inf_nan=False)
    request_tags: tuple[str, ...] = ()
    gateway_id: str = Field(min_length=1, max_length=256)
    agent_id: Label = None
    """The agent that made the call (LiteLLM's `agent_id`), for agent sessions."""
    session_id: Label = None
    """The agent session (LiteLLM's `session_id` / `litellm_session_id`) the call belongs to."""

    @field_validator("schema_version", mode="before")
    @classmethod
    def _an_integer(cls, value: object) -> object:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError("must be a JSON integer")
        return value

    @field_validator("occurred_at")
    @classmethod
    def _to_utc(cls, value: datetime) -> datetime:
        value = value.astimezone(UTC)
        if not EARLIEST <= value < LATEST:
            raise ValueError(f"must be between {EARLIEST:%Y-%m-%d} and {LATEST:%Y-%m-%d}")
        return value

    @property
    def billed_model(self) -> str:
        """The model name budgets and per-model totals use: the model group clients asked
        the proxy for, or the model itself in SDK mode."""
        return self.model_group or self.model

    def to_json(self) -> bytes:
        return self.model_dump_json(exclude_none=True).encode()


def _exact_cost(value: object, *, json: bool) -> object:
    if isinstance(value, str):
        # a minus sign is let through to the amount checks, which say "greater than or equal to 0";
        # "-0.0" (what an older gateway writes for a float -0.0) is read as 0
        if not COST_FORM.fullmatch(value.removeprefix("-")):
            raise ValueError('must be a plain decimal string such as "0.000225"')
        value = Decimal(value)
    elif json or isinstance(value, bool) or not isinstance(value, Decimal | int):
        raise ValueError('must be a decimal string such as "0.000225", not a JSON number')
    return abs(value) if value == 0 else value


class InvalidEventError(ValueError):
    """A payload that is not a valid `SpendEvent` this code understands; `reason` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def decode_event(payload: bytes) -> SpendEvent:
    """Parse one wire payload. Raises `InvalidEventError` with a readable reason."""
    try:
        return SpendEvent.model_validate_json(payload)
    except ValidationError as error:
        raise InvalidEventError(_explain(payload, error)) from error


def _explain(payload: bytes, error: ValidationError) -> str:
    issues = error.errors(include_url=False, include_input=False)
    for issue in issues:
        if issue["loc"] == ("schema_version",):
            found = _schema_version_of(payload)
            return f"unsupported schema_version {found!r}: this consumer reads {SCHEMA_VERSION}"
    parts = [f"{'.'.join(str(p) for p in issue['loc']) or 'payload'}: {issue['msg']}" for issue in issues]
    return "invalid spend event: " + "; ".join(parts[:5])


def _schema_version_of(payload: bytes) -> object:
    try:
        document = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return None
    return document.get("schema_version") if isinstance(document, dict) else None
