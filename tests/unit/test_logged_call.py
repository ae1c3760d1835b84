"""The copy the callback takes of a logged call builds the very event the call builds, holds no
raw key, and does not follow later changes to what LiteLLM handed the callback."""

import hashlib
from typing import Any

from hypothesis import given, settings

from spendpipe.contracts.events import SpendEvent
from spendpipe.gateway.recording.event_builder import build_spend_event, fallback_spend_event
from spendpipe.gateway.recording.logged_call import copy_logged_call
from tests.unit.test_event_builder import START, logging_object
from tests.unit.test_labels import hostile

RAW_KEY = "sk-live-raw-secret-0123456789"


def calls() -> list[dict[str, Any]]:
    """Each shape of call the builder's own tests use."""
    return [
        {"standard_logging_object": logging_object()},
        {
            "standard_logging_object": logging_object(
                metadata={"user_api_key_hash": None, "user_api_key_user_id": "a"}
            ),
            "litellm_params": {"metadata": {"user_api_key": RAW_KEY, "agent_id": "bot", "session_id": "s-1"}},
            "litellm_call_id": "call-1",
        },
        {"standard_logging_object": logging_object(metadata={}), "litellm_params": {}},
        {"standard_logging_object": logging_object(cache_hit=True, response_cost=0.0042)},
        {
            "standard_logging_object": logging_object(
                status="failure", response_cost=0.0, error_information={"error_class": "RateLimitError"}
            )
        },
        {"standard_logging_object": logging_object(end_user=None), "optional_params": {"user": "customer-7"}},
        {"standard_logging_object": logging_object(end_user=None), "user": "customer-8"},
        {
            "standard_logging_object": logging_object(session_id="logged-session"),
            "litellm_params": {"litellm_metadata": {"trace_id": "t-1"}, "litellm_session_id": "ls-1"},
        },
        {
            "standard_logging_object": logging_object(metadata="not a mapping", error_information=["x"]),
            "litellm_params": ["x"],
            "optional_params": "user",
        },
        {"standard_logging_object": logging_object(metadata={"user_api_key_hash": RAW_KEY})},
        {"standard_logging_object": {"id": "chatcmpl-9", "startTime": START, "response_cost": None, "model": ""}},
    ]


def test_the_copy_builds_the_same_event_as_the_call() -> None:
    for kwargs in calls():
        copied = copy_logged_call(kwargs)
        built = build_spend_event(kwargs, gateway_id="g")
        assert built is not None
        assert build_spend_event(copied, gateway_id="g") == built, kwargs
        assert fallback_spend_event(copied, gateway_id="g").model_copy(update={"occurred_at": built.occurred_at}) == (
            fallback_spend_event(kwargs, gateway_id="g").model_copy(update={"occurred_at": built.occurred_at})
        )


def test_no_standard_logging_object_is_none_in_the_copy_too() -> None:
    for kwargs in ({}, {"standard_logging_object": None}, {"standard_logging_object": ["x"]}):
        assert build_spend_event(copy_logged_call(kwargs), gateway_id="g") is None


def test_the_copy_holds_no_raw_key() -> None:
    for kwargs in calls():
        copied = copy_logged_call(kwargs)
        assert RAW_KEY not in repr(copied)
    sdk = calls()[1]
    assert copy_logged_call(sdk)["litellm_params"]["metadata"]["user_api_key"] == (
        hashlib.sha256(RAW_KEY.encode()).hexdigest()
    )


def test_later_changes_to_the_call_do_not_reach_the_copy() -> None:
    kwargs = {
        "standard_logging_object": logging_object(end_user={"id": "acme"}),
        "litellm_params": {"metadata": {"agent_id": "bot"}},
    }
    copied = copy_logged_call(kwargs)
    before = build_spend_event(copied, gateway_id="g")

    record = kwargs["standard_logging_object"]
    record["request_tags"].append("added-later")
    record["end_user"]["id"] = "changed"
    record["metadata"]["user_api_key_team_id"] = "changed"
    record["response_cost"] = 99.0
    kwargs["litellm_params"]["metadata"]["agent_id"] = "changed"

    assert build_spend_event(copied, gateway_id="g") == before
    assert before is not None
    assert (before.request_tags, before.end_user, before.team_id, before.agent_id) == (
        ("nightly", "batch"),
        '{"id":"acme"}',
        "eng",
        "bot",
    )


@settings(max_examples=200, deadline=None)
@given(user=hostile, label=hostile, tags=hostile, agent=hostile, tokens=hostile)
def test_hostile_values_build_the_same_event_from_the_copy(
    *, user: object, label: object, tags: object, agent: object, tokens: object
) -> None:
    kwargs = hostile_call(user=user, label=label, tags=tags, agent=agent, tokens=tokens)

    assert _event_or_error(copy_logged_call(kwargs)) == _event_or_error(kwargs)


def hostile_call(*, user: object, label: object, tags: object, agent: object, tokens: object) -> dict[str, Any]:
    """A logged call with hostile values in every field a client can reach."""
    metadata = {**logging_object()["metadata"], "user_api_key_alias": label, "user_api_key_team_id": label}
    record = logging_object(
        end_user=user,
        model=label,
        model_group=label,
        request_tags=tags,
        session_id=label,
        status="failure",
        error_information={"error_class": label},
        metadata=metadata,
        prompt_tokens=tokens,
    )
    return {
        "standard_logging_object": record,
        "litellm_params": {"metadata": {"agent_id": agent, "session_id": label, "user_api_key": RAW_KEY}},
        "user": user,
        "optional_params": {"user": user},
    }


def test_a_raw_key_that_cannot_be_hashed_is_dropped_not_raised() -> None:
    kwargs = {"standard_logging_object": logging_object(), "litellm_params": {"metadata": {"user_api_key": "\ud800"}}}

    assert "user_api_key" not in copy_logged_call(kwargs)["litellm_params"]["metadata"]


def _event_or_error(kwargs: dict[str, Any]) -> SpendEvent | str | None:
    try:
        return build_spend_event(kwargs, gateway_id="g")
    except Exception as error:
        return type(error).__name__
