"""`SpendEvent`: one LLM request as it passed a gateway, the message on `spend.events`.

The message type name is versioned (`spendpipe.spend_event.v1`) and carried in every
payload as `schema_version`; how it is serialised (JSON, below) is separate from what
it means. A consumer that meets a version it does not know dead-letters the message
instead of guessing.

The model is the published contract; the aggregator checks the same rules in ClickHouse
(`spendpipe.aggregator.parse`), and a property test holds the two to the same verdicts. So the
JSON form of each field is stated exactly, with nothing a lenient parser would also take:
a cost is a decimal string of `COST_FORM`, a count is a JSON number with no fraction, a time
is an RFC 3339 string with an offset, an event id a lowercase UUID. `problems_of` names what is
wrong with a payload as (field, `Problem`) pairs: the verdict both sides must agree on.
"""

import json
import math
import re
from datetime import UTC, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any, Literal

import orjson
from pydantic import (
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    ValidationError,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
)
from pydantic_core import PydanticCustomError

from spendpipe.contracts.money import COST_FORM, COST_PRECISION, COST_SCALE, at_cost_scale

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

TokenCount = Annotated[
    int,
    BeforeValidator(lambda value, info: _whole_number(value, json=info.mode == "json")),
    Field(strict=True, ge=0, le=MAX_TOKENS),
    WithJsonSchema({"type": "integer", "minimum": 0, "maximum": MAX_TOKENS}),
]
"""A JSON number with no fractional part (`12`, also `12.0` or `1.2e1`): no string, boolean
or fraction is read as a count."""

MAX_LATENCY_MS = 86_400_000.0
"""A day: no call waits longer, and the bound keeps the number far inside a double."""

EVENT_ID_FORM = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
"""A UUID as gateways write it (`str(uuid)`): lowercase, hyphenated. `events` stores it as a
16-byte UUID."""

TIMESTAMP_FORM = re.compile(
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]{1,6})?(?:Z|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])$"
)
"""`occurred_at` on the wire: RFC 3339 with `T`, at most microseconds, and an offset (`Z` or
`±hh:mm`): what `datetime.isoformat()` and pydantic write for an aware time."""

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


def _whole_number(value: object, *, json: bool) -> object:
    """A count on the wire: a JSON number without a fraction (a float like 12.0 is read as 12,
    as every JSON reader may). A string or boolean is refused; in Python an int is expected."""
    if isinstance(value, bool) or (json and not isinstance(value, int | float)):
        raise PydanticCustomError("int_type", "must be a JSON number with no fractional part")
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    return value


def _a_number(value: object, *, json: bool) -> object:
    if isinstance(value, bool) or (json and not isinstance(value, int | float)):
        raise PydanticCustomError("float_type", "must be a JSON number")
    return value


def _timestamp(value: object, info: ValidationInfo) -> object:
    if info.mode != "json":
        return value
    if not isinstance(value, str):
        raise PydanticCustomError("datetime_type", "must be an RFC 3339 string such as 2026-11-28T13:45:00Z")
    if not TIMESTAMP_FORM.fullmatch(value):
        raise PydanticCustomError(
            "datetime_parsing", "must be RFC 3339 with T, at most 6 fractional digits and an offset (Z or +hh:mm)"
        )
    return value


class SpendEvent(BaseModel):
    """What one request cost, and who it is attributed to."""

    model_config = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)

    schema_version: Literal[1] = 1
    event_id: str = Field(pattern=EVENT_ID_FORM.pattern)
    occurred_at: Annotated[
        AwareDatetime,
        BeforeValidator(_timestamp),
        WithJsonSchema({"type": "string", "format": "date-time", "pattern": TIMESTAMP_FORM.pattern}),
    ]
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
    latency_ms: Annotated[
        float,
        BeforeValidator(lambda value, info: _a_number(value, json=info.mode == "json")),
        Field(ge=0, le=MAX_LATENCY_MS, allow_inf_nan=False),
        WithJsonSchema({"type": "number", "minimum": 0, "maximum": MAX_LATENCY_MS}),
    ] = 0.0
    request_tags: tuple[str, ...] = ()
    gateway_id: str = Field(min_length=1, max_length=256)
    agent_id: Label = None
    """The agent that made the call (LiteLLM's `agent_id`), for agent sessions."""
    session_id: Label = None
    """The agent session (LiteLLM's `session_id` / `litellm_session_id`) the call belongs to."""

    @field_validator("schema_version", mode="before")
    @classmethod
    def _an_integer(cls, value: object, info: ValidationInfo) -> object:
        return _whole_number(value, json=info.mode == "json")

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
        value = at_cost_scale(Decimal(value))
    elif json or isinstance(value, bool) or not isinstance(value, Decimal | int):
        raise ValueError('must be a decimal string such as "0.000225", not a JSON number')
    return abs(value) if value == 0 else value


MALFORMED_REASON = "not one JSON object of UTF-8 text with each field named once and finite numbers"


class InvalidEventError(ValueError):
    """A payload that is not a valid `SpendEvent` this code understands; `reason` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def decode_event(payload: bytes) -> SpendEvent:
    """Parse one wire payload. Raises `InvalidEventError` with a readable reason."""
    if _whole_payload_problem(payload) is not None:
        raise InvalidEventError(f"invalid spend event: {MALFORMED_REASON}")
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


class Problem(StrEnum):
    """What kind of thing is wrong with a payload, as both checkers (pydantic here, SQL in the
    aggregator) name it. Within a field, a wrong JSON type and an out-of-range value are one
    kind: a reader that sees `1e23` where a string belongs cannot always tell them apart."""

    MALFORMED = "malformed"
    """Not one JSON object of UTF-8 text (also: a field named twice, a number no double holds)."""
    UNKNOWN_FIELD = "unknown_field"
    MISSING = "missing"
    INVALID = "invalid"
    UNSUPPORTED_VERSION = "unsupported_version"


Problems = frozenset[tuple[str, Problem]]
"""(field, problem) pairs; the field is '' for a problem of the whole payload."""


def problems_of(payload: bytes | None) -> Problems:
    """Everything wrong with `payload`, or nothing: the verdict the aggregator's SQL must reach."""
    whole = _whole_payload_problem(payload)
    if whole is not None:
        return frozenset({("", whole)})
    try:
        SpendEvent.model_validate_json(payload or b"")
    except ValidationError as error:
        return _classified(error)
    return frozenset()


def _whole_payload_problem(payload: bytes | None) -> Problem | None:
    """Problems of the document that pydantic's JSON reader lets through or names otherwise: a
    name given twice (it keeps the last), a number that overflows a double (it reads infinity)."""
    if not payload:
        return Problem.MALFORMED
    try:
        json.loads(payload, object_pairs_hook=_unique_names, parse_float=_finite, parse_constant=_no_constant)
    except (_MalformedError, RecursionError):  # RecursionError: nested deeper than Python's stack
        return Problem.MALFORMED
    except ValueError:  # not JSON at all (or not UTF-8): pydantic says so, and names it malformed
        return None
    return None


class _MalformedError(Exception):
    pass


def _unique_names(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    names = [name for name, _ in pairs]
    if len(set(names)) != len(names):
        raise _MalformedError
    return dict(pairs)


def _finite(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise _MalformedError
    return number


def _no_constant(text: str) -> float:
    raise _MalformedError


def _classified(error: ValidationError) -> Problems:
    found = set()
    for issue in error.errors(include_url=False, include_input=False):
        loc = issue["loc"]
        field = str(loc[0]) if loc else ""
        if field == "schema_version":
            return frozenset({("schema_version", Problem.UNSUPPORTED_VERSION)})
        if not loc or issue["type"] in ("json_invalid", "json_type", "model_type", "model_attributes_type"):
            found.add(("", Problem.MALFORMED))
        elif issue["type"] == "missing":
            found.add((field, Problem.MISSING))
        elif issue["type"] == "extra_forbidden":
            found.add((field, Problem.UNKNOWN_FIELD))
        else:
            found.add((field, Problem.INVALID))
    return frozenset(found)
