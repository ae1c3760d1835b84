"""Building a `SpendEvent` from the `standard_logging_object` LiteLLM hands a callback."""

import hashlib
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from hypothesis import given, settings
from litellm.proxy._types import UserAPIKeyAuth
from prometheus_client import CollectorRegistry

from spendpipe.contracts.events import decode_event
from spendpipe.contracts.scopes import MAX_TAGS
from spendpipe.gateway.identity import RequestIdentity
from spendpipe.gateway.labels import label_of
from spendpipe.gateway.metrics import GatewayMetrics
from spendpipe.gateway.recording.event_builder import (
    build_spend_event,
    charged_cost,
    event_or_fallback,
    fallback_spend_event,
)
from tests.unit.test_labels import hostile

KEY_HASH = hashlib.sha256(b"sk-proxy-virtual-key").hexdigest()
START = datetime(2026, 11, 28, 13, 45, 0, tzinfo=UTC).timestamp()


def logging_object(**overrides: Any) -> dict[str, Any]:
    """A proxy-mode record, trimmed to the fields the builder reads."""
    record: dict[str, Any] = {
        "id": "chatcmpl-123",
        "litellm_call_id": "7c1f9a0e-call",
        "startTime": START,
        "endTime": START + 1.25,
        "model": "azure/gpt-4o-2024-08-06",
        "model_group": "gpt-4o",
        "custom_llm_provider": "azure",
        "call_type": "acompletion",
        "prompt_tokens": 120,
        "completion_tokens": 30,
        "total_tokens": 150,
        "response_cost": 0.00022500000000000002,
        "cache_hit": False,
        "status": "success",
        "error_information": None,
        "request_tags": ["nightly", "batch"],
        "end_user": "",
        "metadata": {
            "user_api_key_hash": KEY_HASH,
            "user_api_key_alias": "ci-key",
            "user_api_key_user_id": "alice",
            "user_api_key_team_id": "eng",
            "user_api_key_org_id": "acme",
            "user_api_key_end_user_id": None,
        },
    }
    record.update(overrides)
    return record


def test_proxy_mode_event() -> None:
    event = build_spend_event({"standard_logging_object": logging_object()}, gateway_id="gw-1")

    assert event is not None
    again = build_spend_event({"standard_logging_object": logging_object()}, gateway_id="x")
    assert again is not None
    assert event.event_id == again.event_id
    assert event.occurred_at == datetime(2026, 11, 28, 13, 45, 1, 250000, tzinfo=UTC)
    assert event.key_hash == KEY_HASH
    assert (event.key_alias, event.user_id, event.team_id, event.org_id) == ("ci-key", "alice", "eng", "acme")
    assert event.end_user is None
    assert (event.model, event.model_group, event.billed_model) == (
        "azure/gpt-4o-2024-08-06",
        "gpt-4o",
        "gpt-4o",
    )
    assert (event.provider, event.call_type) == ("azure", "acompletion")
    assert (event.prompt_tokens, event.completion_tokens, event.total_tokens) == (120, 30, 150)
    assert event.cost == Decimal("0.000225")  # the price-map product, without float noise
    assert (event.status, event.error_class, event.cache_hit) == ("success", None, False)
    assert event.latency_ms == 1250.0
    assert event.request_tags == ("nightly", "batch")
    assert event.gateway_id == "gw-1"


def test_sdk_mode_hashes_the_raw_key_and_never_emits_it() -> None:
    raw_key = "sk-live-raw-secret-0123456789"
    record = logging_object(metadata={"user_api_key_hash": None, "user_api_key_user_id": "alice"})
    kwargs = {
        "standard_logging_object": record,
        "litellm_params": {"metadata": {"user_api_key": raw_key}},
    }

    event = build_spend_event(kwargs, gateway_id="sdk")

    assert event is not None
    assert event.key_hash == hashlib.sha256(raw_key.encode()).hexdigest()
    assert raw_key.encode() not in event.to_json()
    assert raw_key not in repr(event)


def test_no_key_anywhere_means_no_key_hash() -> None:
    record = logging_object(metadata={})

    event = build_spend_event({"standard_logging_object": record, "litellm_params": {}}, gateway_id="sdk")

    assert event is not None
    assert event.key_hash is None


def test_cache_hit_is_free() -> None:
    record = logging_object(cache_hit=True, response_cost=0.0042)

    event = build_spend_event({"standard_logging_object": record}, gateway_id="gw-1")

    assert event is not None
    assert event.cache_hit is True
    assert event.cost == 0


def test_failure_carries_its_error_class() -> None:
    record = logging_object(status="failure", response_cost=0.0, error_information={"error_class": "RateLimitError"})

    event = build_spend_event({"standard_logging_object": record}, gateway_id="gw-1")

    assert event is not None
    assert event.status == "failure"
    assert event.error_class == "RateLimitError"
    assert event.cost == 0


def test_success_has_no_error_class() -> None:
    record = logging_object(error_information={"error_class": "Leftover"})

    event = build_spend_event({"standard_logging_object": record}, gateway_id="gw-1")

    assert event is not None
    assert event.error_class is None


def test_end_user_from_the_sdk_call_parameters() -> None:
    kwargs = {
        "standard_logging_object": logging_object(end_user=None),
        "optional_params": {"user": "customer-7"},
    }

    event = build_spend_event(kwargs, gateway_id="sdk")

    assert event is not None
    assert event.end_user == "customer-7"


def test_end_user_resolved_by_the_proxy_wins() -> None:
    kwargs = {
        "standard_logging_object": logging_object(end_user="customer-1"),
        "optional_params": {"user": "customer-7"},
    }

    event = build_spend_event(kwargs, gateway_id="gw-1")

    assert event is not None
    assert event.end_user == "customer-1"


def test_cost_is_the_decimal_the_float_prints_as() -> None:
    record = logging_object(response_cost=1.35e-05)

    event = build_spend_event({"standard_logging_object": record}, gateway_id="gw-1")

    assert event is not None
    assert event.cost == Decimal("0.0000135")


def test_sparse_record_gets_safe_defaults() -> None:
    record = {"id": "chatcmpl-9", "startTime": START, "response_cost": None, "model": ""}

    event = build_spend_event({"standard_logging_object": record}, gateway_id="gw-1")

    assert event is not None
    assert str(uuid.UUID(event.event_id)) == event.event_id
    assert event.model == "unknown"
    assert event.cost == 0
    assert event.occurred_at == datetime.fromtimestamp(START, UTC)
    assert event.latency_ms == 0.0
    assert (event.prompt_tokens, event.request_tags) == (0, ())


def test_without_a_standard_logging_object_there_is_no_event() -> None:
    assert build_spend_event({}, gateway_id="gw-1") is None
    assert build_spend_event({"standard_logging_object": None}, gateway_id="gw-1") is None


def test_a_client_chosen_call_id_does_not_make_two_calls_one_event() -> None:
    # the proxy takes litellm_call_id from the client's x-litellm-call-id header
    first = build_spend_event({"standard_logging_object": logging_object()}, gateway_id="gw-1")
    second = build_spend_event(
        {"standard_logging_object": logging_object(id="chatcmpl-another-response")}, gateway_id="gw-1"
    )

    assert first is not None
    assert second is not None
    assert first.event_id != second.event_id


@settings(max_examples=200, deadline=None)
@given(user=hostile, alias=hostile, team=hostile, model=hostile, label=hostile, tags=hostile, agent=hostile)
def test_hostile_attribution_never_stops_the_event_nor_changes_its_cost(
    *, user: object, alias: object, team: object, model: object, label: object, tags: object, agent: object
) -> None:
    metadata = {**logging_object()["metadata"], "user_api_key_alias": alias, "user_api_key_team_id": team}
    record = logging_object(
        end_user=user,
        model=model,
        model_group=label,
        custom_llm_provider=label,
        call_type=label,
        request_tags=tags,
        session_id=label,
        status="failure",
        error_information={"error_class": label},
        metadata=metadata,
    )
    call_metadata = {"agent_id": agent, "session_id": label}
    kwargs = {
        "standard_logging_object": record,
        "litellm_params": {"metadata": call_metadata},
        "user": user,
        "optional_params": {"user": user},
    }

    event = build_spend_event(kwargs, gateway_id="gw-1")

    assert event is not None
    assert event.cost == Decimal("0.000225")  # the price-map product, without float noise
    assert (event.key_hash, event.user_id, event.org_id) == (KEY_HASH, "alice", "acme")
    assert decode_event(event.to_json()) == event
    assert len(event.request_tags) == len(set(event.request_tags)) <= MAX_TAGS
    if isinstance(tags, list) and tags:  # LiteLLM logs a request's `metadata.tags` list as its request_tags
        # so a proxy's pre-call check reads the tags the call is counted under
        auth = UserAPIKeyAuth(api_key=KEY_HASH)
        assert RequestIdentity.of_proxy_request(auth, {"metadata": {"tags": tags}}).tags == event.request_tags
    # and the pre-call checks name the customer, team, agent and session exactly as the event does
    body = {"user": user, "metadata": call_metadata}
    who = RequestIdentity.of_proxy_request(UserAPIKeyAuth(api_key=KEY_HASH, user_id="alice"), body)
    assert (who.end_user, who.agent_id, who.session_id) == (event.end_user, event.agent_id, event.session_id)
    assert event.team_id == label_of(team)


def test_malformed_containers_are_read_as_empty() -> None:
    record = logging_object(metadata="not a mapping", error_information=["x"], status="failure")
    kwargs = {"standard_logging_object": record, "litellm_params": ["x"], "optional_params": "user"}

    event = build_spend_event(kwargs, gateway_id="gw-1")

    assert event is not None
    assert (event.key_hash, event.team_id, event.error_class) == (None, None, None)
    assert event.cost == Decimal("0.000225")  # the price-map product, without float noise


def test_the_fallback_event_charges_the_cost_to_key_user_team_and_org() -> None:
    record = logging_object(end_user="customer-1", endTime=START + 1e10)  # a year the contract refuses

    event = fallback_spend_event({"standard_logging_object": record}, gateway_id="gw-1")

    full = build_spend_event({"standard_logging_object": logging_object(end_user="customer-1")}, gateway_id="gw-1")
    assert full is not None
    assert (event.key_hash, event.user_id, event.team_id, event.org_id) == (KEY_HASH, "alice", "eng", "acme")
    assert (event.end_user, event.model, event.cost) == (None, "unknown", full.cost)


def test_the_charged_cost_is_what_the_event_charges_read_without_building_it() -> None:
    for record in (logging_object(), logging_object(cache_hit=True), logging_object(endTime=START + 1e10)):
        kwargs = {"standard_logging_object": record}
        try:
            charged = build_spend_event(kwargs, gateway_id="g")
        except ValueError:
            charged = fallback_spend_event(kwargs, gateway_id="g")  # what the plugin then publishes
        assert charged is not None
        assert charged_cost(kwargs) == charged.cost
    # charged to nothing: no record, or a cost the contract refuses (the plugin counts it `uncharged`)
    assert charged_cost({}) is None
    for cost in (float("nan"), -1.0, 2e6):
        assert charged_cost({"standard_logging_object": logging_object(response_cost=cost)}) is None


def test_a_served_call_litellm_could_not_price_is_recorded_free_and_counted() -> None:
    metrics = GatewayMetrics(registry=CollectorRegistry())
    calls = [
        logging_object(response_cost=None),  # unpriced
        logging_object(response_cost=None, cache_hit=True),  # a cache hit: free by design
        logging_object(response_cost=None, status="failure"),
        logging_object(response_cost=None, prompt_tokens=0, completion_tokens=0),
        logging_object(),
    ]

    events = [
        event_or_fallback({"standard_logging_object": call}, gateway_id="gw-1", metrics=metrics) for call in calls
    ]

    assert [event.cost if event else None for event in events][:4] == [0, 0, 0, 0]
    assert metrics.unpriced._value.get() == 1
