"""The `SpendEvent` wire format: what decodes, what is refused and why."""

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from spendpipe.contracts.events import (
    MALFORMED_REASON,
    MAX_EVENT_COST,
    MAX_TOKENS,
    InvalidEventError,
    SpendEvent,
    decode_event,
)
from spendpipe.contracts.money import cost_from_float

CALL_ID = "3f1d2c4b-5a69-4788-9a0b-1c2d3e4f5a6b"


def wire(**overrides: Any) -> bytes:
    document: dict[str, Any] = {
        "schema_version": 1,
        "event_id": CALL_ID,
        "occurred_at": "2026-11-28T13:45:00Z",
        "model": "gpt-4o-mini",
        "cost": "0.000225",
        "gateway_id": "gw-1",
    }
    document.update(overrides)
    return orjson.dumps({k: v for k, v in document.items() if v is not None})


def full_event(**overrides: Any) -> SpendEvent:
    values: dict[str, Any] = {
        "event_id": CALL_ID,
        "occurred_at": datetime(2026, 11, 28, 13, 45, 0, 123456, tzinfo=UTC),
        "key_hash": "ab" * 32,
        "key_alias": "ci-key",
        "user_id": "alice",
        "team_id": "eng",
        "org_id": "acme",
        "end_user": "customer-7",
        "model": "azure/gpt-4o-2024-08-06",
        "model_group": "gpt-4o",
        "provider": "azure",
        "call_type": "acompletion",
        "prompt_tokens": 11,
        "completion_tokens": 22,
        "total_tokens": 33,
        "cost": Decimal("0.00022500000000000002"),
        "cache_hit": False,
        "status": "failure",
        "error_class": "RateLimitError",
        "latency_ms": 812.5,
        "request_tags": ("batch", "nightly"),
        "gateway_id": "gw-1",
    }
    values.update(overrides)
    return SpendEvent(**values)


def reason_for(payload: bytes) -> str:
    with pytest.raises(InvalidEventError) as raised:
        decode_event(payload)
    return raised.value.reason


def test_minimal_payload_decodes() -> None:
    event = decode_event(wire())

    assert event.event_id == CALL_ID
    assert event.cost == Decimal("0.000225")
    assert event.status == "success"
    assert event.key_hash is None


def test_malformed_json_is_explained() -> None:
    reason = reason_for(b'{"event_id": "call-1", ')

    assert reason.startswith("invalid spend event: ")
    assert "JSON" in reason


def test_a_json_array_is_not_an_event() -> None:
    assert reason_for(b"[1, 2]").startswith("invalid spend event: ")


def test_unknown_schema_version_is_named() -> None:
    assert reason_for(wire(schema_version=2)) == "unsupported schema_version 2: this consumer reads 1"


def test_negative_cost_is_refused() -> None:
    reason = reason_for(wire(cost="-0.01"))

    assert reason.startswith("invalid spend event: cost:")
    assert "greater than or equal to 0" in reason


def test_cost_with_more_than_24_decimals_is_refused() -> None:
    reason = reason_for(wire(cost="0." + "0" * 24 + "1"))

    assert reason.startswith("invalid spend event: cost:")
    assert "24 decimal places" in reason


def test_cost_with_exactly_24_decimals_is_kept_exactly() -> None:
    text = "0.000000000000000000000001"

    assert decode_event(wire(cost=text)).cost == Decimal(text)


def test_naive_occurred_at_is_refused() -> None:
    reason = reason_for(wire(occurred_at="2026-11-28T13:45:00"))

    assert reason.startswith("invalid spend event: occurred_at:")
    assert "offset" in reason


def test_every_problem_is_listed() -> None:
    reason = reason_for(wire(cost="-1", occurred_at="2026-11-28T13:45:00", event_id=""))

    for field in ("event_id", "occurred_at", "cost"):
        assert f"{field}:" in reason


def test_unknown_fields_are_refused() -> None:
    assert "surprise" in reason_for(wire(surprise=True))


def test_key_hash_must_be_sha256_hex() -> None:
    assert reason_for(wire(key_hash="sk-raw-key")).startswith("invalid spend event: key_hash:")


def test_occurred_at_is_normalised_to_utc() -> None:
    event = decode_event(wire(occurred_at="2026-11-29T01:30:00+05:00"))

    assert event.occurred_at == datetime(2026, 11, 28, 20, 30, tzinfo=UTC)
    assert event.occurred_at.utcoffset() == timedelta(0)


def test_occurred_at_given_in_python_is_normalised_to_utc() -> None:
    local = datetime(2026, 11, 28, 8, 0, tzinfo=timezone(timedelta(hours=-5)))

    event = full_event(occurred_at=local)

    assert event.occurred_at.utcoffset() == timedelta(0)
    assert event.occurred_at.hour == 13


def test_naive_datetime_is_refused_in_python_too() -> None:
    with pytest.raises(ValidationError, match="occurred_at"):
        full_event(occurred_at=datetime(2026, 11, 28, 13, 45))


def test_round_trip_keeps_every_field() -> None:
    event = full_event()

    assert decode_event(event.to_json()) == event


def test_round_trip_of_a_minimal_event() -> None:
    event = full_event(
        key_hash=None,
        key_alias=None,
        user_id=None,
        team_id=None,
        org_id=None,
        end_user=None,
        model_group=None,
        error_class=None,
        status="success",
        request_tags=(),
    )

    assert decode_event(event.to_json()) == event


def test_cost_is_a_string_on_the_wire() -> None:
    document = orjson.loads(full_event().to_json())

    assert document["cost"] == "0.00022500000000000002"
    assert document["schema_version"] == 1


def test_cost_is_written_in_plain_notation() -> None:
    document = orjson.loads(full_event(cost=Decimal("1.35E-5")).to_json())

    assert document["cost"] == "0.0000135"


def test_absent_attributes_are_left_out_of_the_wire() -> None:
    document = orjson.loads(full_event(team_id=None, error_class=None).to_json())

    assert "team_id" not in document
    assert "error_class" not in document


def test_billed_model_prefers_the_model_group() -> None:
    assert full_event().billed_model == "gpt-4o"
    assert full_event(model_group=None).billed_model == "azure/gpt-4o-2024-08-06"


costs = st.decimals(min_value=0, max_value=10**6, places=24, allow_nan=False, allow_infinity=False)


@given(costs)
def test_any_valid_cost_survives_the_wire_exactly(cost: Decimal) -> None:
    payload = full_event(cost=cost).to_json()

    on_wire = orjson.loads(payload)["cost"]
    assert isinstance(on_wire, str)
    assert "e" not in on_wire.lower()
    assert decode_event(payload).cost == cost


@pytest.mark.parametrize(
    ("field", "value", "fragment"),
    [
        ("occurred_at", "1969-12-31T23:59:59Z", "occurred_at: Value error, must be between 2000-01-01 and 2100-01-01"),
        ("occurred_at", "2106-02-08T00:00:00Z", "occurred_at: Value error, must be between 2000-01-01 and 2100-01-01"),
        ("cost", "1000000.01", "cost: Input should be less than or equal to 1000000"),
    ],
)
def test_values_that_would_break_the_totals_are_refused(field: str, value: str, fragment: str) -> None:
    document = orjson.loads(wire()) | {field: value}

    with pytest.raises(InvalidEventError) as refused:
        decode_event(orjson.dumps(document))

    assert fragment in refused.value.reason


@pytest.mark.parametrize("field", ["prompt_tokens", "completion_tokens", "total_tokens"])
@pytest.mark.parametrize("count", [MAX_TOKENS + 1, 2**64 - 1, 2**64, 10**30, -1])
def test_token_counts_out_of_range_are_refused(field: str, count: int) -> None:
    payload = wire().replace(b'"gateway_id"', f'"{field}":{count},"gateway_id"'.encode())  # orjson stops at 64 bits

    reason = reason_for(payload)

    assert reason.startswith(f"invalid spend event: {field}: ")


def test_the_largest_token_count_is_accepted() -> None:
    assert decode_event(wire(prompt_tokens=MAX_TOKENS, total_tokens=MAX_TOKENS)).total_tokens == MAX_TOKENS


@pytest.mark.parametrize("latency", [b"Infinity", b"-Infinity", b"NaN", b"1e400"])
def test_a_number_no_double_holds_makes_the_payload_malformed(latency: bytes) -> None:
    """Not JSON (NaN, Infinity) or beyond a double (1e400): the aggregator's reader refuses the
    whole document, so the contract does too."""
    payload = wire().replace(b'"gateway_id"', b'"latency_ms":' + latency + b',"gateway_id"')

    assert reason_for(payload) == f"invalid spend event: {MALFORMED_REASON}"


@pytest.mark.parametrize("latency", [b'"1.5"', b"true", b"-1", b"86400001"])
def test_latency_must_be_a_number_within_a_day(latency: bytes) -> None:
    payload = wire().replace(b'"gateway_id"', b'"latency_ms":' + latency + b',"gateway_id"')

    assert reason_for(payload).startswith("invalid spend event: latency_ms: ")


def test_a_field_named_twice_makes_the_payload_malformed() -> None:
    payload = wire().replace(b'"gateway_id"', b'"cost":"9","gateway_id"')

    assert reason_for(payload) == f"invalid spend event: {MALFORMED_REASON}"


@pytest.mark.parametrize(
    "cost",
    [b'"0_5"', b'"1e-4"', b'"1E+2"', b'" 1"', b'"1 "', b'"+1"', b'"00.5"', b'".5"', b'"1."', b'"NaN"', b'"1\\n"'],
)
def test_cost_strings_decimal_reads_but_the_contract_does_not_are_refused(cost: bytes) -> None:
    payload = wire().replace(b'"cost":"0.000225"', b'"cost":' + cost)

    reason = reason_for(payload)

    assert reason == 'invalid spend event: cost: Value error, must be a plain decimal string such as "0.000225"'


@pytest.mark.parametrize("cost", [b"0.5", b"1", b"0", b"true", b"null", b'["0.5"]'])
def test_a_cost_that_is_not_a_string_is_refused(cost: bytes) -> None:
    payload = wire().replace(b'"cost":"0.000225"', b'"cost":' + cost)

    assert reason_for(payload).startswith("invalid spend event: cost: ")


@pytest.mark.parametrize("zero", ["0", "0.0", "-0", "-0.000"])
def test_zero_and_negative_zero_are_read_as_zero_and_written_as_zero(zero: str) -> None:
    event = decode_event(wire(cost=zero))

    assert event.cost == 0
    assert not event.cost.is_signed()
    assert not orjson.loads(event.to_json())["cost"].startswith("-")


def test_a_negative_zero_built_in_python_is_written_as_zero() -> None:
    assert orjson.loads(full_event(cost=Decimal("-0.0")).to_json())["cost"] == "0.0"


@pytest.mark.parametrize("cost", [0.5, True])
def test_a_float_or_bool_cost_is_refused_in_python_too(cost: object) -> None:
    with pytest.raises(ValidationError):
        full_event(cost=cost)


def test_schema_version_may_be_written_as_a_whole_float() -> None:
    assert decode_event(wire().replace(b'"schema_version":1', b'"schema_version":1.0')).schema_version == 1


@pytest.mark.parametrize("version", [b"true", b"1.5", b'"1"', b"2"])
def test_schema_version_must_be_the_number_1(version: bytes) -> None:
    payload = wire().replace(b'"schema_version":1', b'"schema_version":' + version)

    assert reason_for(payload).startswith("unsupported schema_version")


@pytest.mark.parametrize("field", ["prompt_tokens", "completion_tokens", "total_tokens"])
@pytest.mark.parametrize("count", [b"1.5", b'"1"', b"true", b"null", b"-1"])
def test_token_counts_must_be_whole_json_numbers(field: str, count: bytes) -> None:
    payload = wire().replace(b'"gateway_id"', f'"{field}":'.encode() + count + b',"gateway_id"')

    assert reason_for(payload).startswith(f"invalid spend event: {field}: ")


@pytest.mark.parametrize(("count", "read"), [(b"12.0", 12), (b"1e3", 1000), (b"-0", 0)])
def test_a_whole_number_written_as_a_float_is_a_count(count: bytes, read: int) -> None:
    payload = wire().replace(b'"gateway_id"', b'"prompt_tokens":' + count + b',"gateway_id"')

    assert decode_event(payload).prompt_tokens == read


@pytest.mark.parametrize("flag", [b"1", b'"true"', b"0"])
def test_cache_hit_must_be_a_json_boolean(flag: bytes) -> None:
    payload = wire().replace(b'"gateway_id"', b'"cache_hit":' + flag + b',"gateway_id"')

    assert reason_for(payload).startswith("invalid spend event: cache_hit: ")


@given(st.floats(min_value=-0.0, max_value=float(MAX_EVENT_COST)) | st.sampled_from([-0.0, 0.0, 5e-324, 1e-7]))
def test_every_cost_the_gateway_makes_of_a_float_survives_the_wire(value: float) -> None:
    cost = cost_from_float(value)

    payload = full_event(cost=cost).to_json()

    assert decode_event(payload).cost == cost
