"""The record the subprocess publisher's child builds an event from (`wire.py`): a snapshot of a
logged call builds the event the call builds, holds no raw key, does not follow later changes to
the call, and `restore` takes nothing but data."""

import math
import pickle
import time
from types import MappingProxyType
from typing import Any

import pytest
from hypothesis import given, settings

from spendpipe.contracts.events import SpendEvent
from spendpipe.gateway.recording.event_builder import build_spend_event, fallback_spend_event
from spendpipe.gateway.recording.wire import _PLAN, _SHAPE, RECORDED_AT, _taken, fallback_id, restore, snapshot
from tests.unit.test_event_builder import logging_object
from tests.unit.test_labels import hostile
from tests.unit.test_logged_call import RAW_KEY, calls, hostile_call


def through_the_pipe(kwargs: dict[str, Any]) -> dict[str, Any]:
    return restore(snapshot(kwargs))


def fields_taken(kwargs: Any) -> dict[str, Any]:
    """What comes back through the pipe, less the time it was recorded (checked: now)."""
    restored = through_the_pipe(kwargs)
    at = restored.pop(RECORDED_AT)
    assert type(at) is float
    assert abs(at - time.time()) < 60
    return restored


def comparable(value: object) -> object:
    """`value` with each NaN as a marker: a NaN equals no NaN, not even itself once pickled."""
    if isinstance(value, float) and math.isnan(value):
        return "<NaN>"
    if isinstance(value, dict):
        return {name: comparable(item) for name, item in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(comparable(item) for item in value)
    return value


def test_the_snapshot_builds_the_same_event_as_the_call() -> None:
    for kwargs in calls():
        built = build_spend_event(kwargs, gateway_id="g")
        assert built is not None
        assert build_spend_event(through_the_pipe(kwargs), gateway_id="g") == built, kwargs
        fallback = fallback_spend_event(kwargs, gateway_id="g", fallback_id="x")
        sent = fallback_spend_event(through_the_pipe(kwargs), gateway_id="g", fallback_id="x")
        assert sent.model_copy(update={"occurred_at": fallback.occurred_at}) == fallback


def test_the_snapshot_holds_no_raw_key() -> None:
    for kwargs in calls():
        assert RAW_KEY.encode() not in snapshot(kwargs)


def test_later_changes_to_the_call_do_not_reach_the_snapshot() -> None:
    kwargs = {"standard_logging_object": logging_object(end_user={"id": "acme"})}
    sent = snapshot(kwargs)
    before = build_spend_event(kwargs, gateway_id="g")

    kwargs["standard_logging_object"]["request_tags"].append("added-later")
    kwargs["standard_logging_object"]["end_user"]["id"] = "changed"
    kwargs["standard_logging_object"]["response_cost"] = 99.0

    assert build_spend_event(restore(sent), gateway_id="g") == before


@settings(max_examples=200, deadline=None)
@given(user=hostile, label=hostile, tags=hostile, agent=hostile, tokens=hostile)
def test_hostile_values_build_the_same_event_through_the_pipe(
    *, user: object, label: object, tags: object, agent: object, tokens: object
) -> None:
    """A value that is not plain data crosses as its label. A field read as a number that held
    one fails the full event by another exception, which the plugin treats alike (the fallback)."""
    kwargs = hostile_call(user=user, label=label, tags=tags, agent=agent, tokens=tokens)

    assert _event_or_failed(through_the_pipe(kwargs)) == _event_or_failed(kwargs)


def test_restore_takes_nothing_but_data() -> None:
    with pytest.raises(pickle.UnpicklingError):
        restore(pickle.dumps({"user": Gadget()}))
    with pytest.raises(pickle.UnpicklingError):
        restore(pickle.dumps(["not", "a", "call"]))


def test_an_event_without_ids_keeps_its_id_when_sent_again() -> None:
    kwargs = {"standard_logging_object": {"startTime": 1.8e9, "response_cost": 0.1, "model": "m"}}
    first = build_spend_event(through_the_pipe(kwargs), gateway_id="g", fallback_id=fallback_id("ab" * 16, 7))
    again = build_spend_event(through_the_pipe(kwargs), gateway_id="g", fallback_id=fallback_id("ab" * 16, 7))
    other = build_spend_event(through_the_pipe(kwargs), gateway_id="g", fallback_id=fallback_id("ab" * 16, 8))
    assert first is not None
    assert again is not None
    assert other is not None
    assert first.event_id == again.event_id != other.event_id


class Gadget:
    """Any class but datetime's."""


def _event_or_failed(kwargs: dict[str, Any]) -> SpendEvent | str | None:
    try:
        return build_spend_event(kwargs, gateway_id="g")
    except Exception:
        return "failed"


def test_a_plain_call_crosses_flat_and_comes_back_as_the_fields_taken() -> None:
    """LiteLLM hands over plain dicts: their snapshot is a flat tuple of values (no keys, no
    dicts), restored to exactly the dict the field-by-field walk (`_taken`) gives."""
    for kwargs in calls():
        assert type(pickle.loads(snapshot(kwargs))) is tuple, kwargs
        assert comparable(fields_taken(kwargs)) == comparable(_taken(kwargs, _SHAPE)), kwargs


def test_a_mapping_of_another_type_crosses_as_the_walk_takes_it() -> None:
    kwargs = calls()[1]
    kwargs["litellm_params"] = MappingProxyType(kwargs["litellm_params"])

    assert type(pickle.loads(snapshot(kwargs))) is dict
    assert comparable(fields_taken(kwargs)) == comparable(_taken(kwargs, _SHAPE))
    assert build_spend_event(through_the_pipe(kwargs), gateway_id="g") == build_spend_event(kwargs, gateway_id="g")


@settings(max_examples=200, deadline=None)
@given(user=hostile, label=hostile, tags=hostile, agent=hostile, tokens=hostile)
def test_hostile_values_come_back_as_the_walk_takes_them(
    *, user: object, label: object, tags: object, agent: object, tokens: object
) -> None:
    kwargs = hostile_call(user=user, label=label, tags=tags, agent=agent, tokens=tokens)

    assert comparable(fields_taken(kwargs)) == comparable(_taken(kwargs, _SHAPE))


def test_restore_refuses_a_flat_snapshot_of_another_shape_or_with_odd_markers() -> None:
    """The flat form is positional: a child of another version, or values not in their places,
    must refuse it, never read a value into another field."""
    plan_id, at, *rest = pickle.loads(snapshot(calls()[0]))
    assert restore(pickle.dumps((plan_id, at, *rest)))
    with pytest.raises(pickle.UnpicklingError, match="another version"):
        restore(pickle.dumps((plan_id + 1, at, *rest)))
    with pytest.raises(pickle.UnpicklingError, match="recorded time"):
        restore(pickle.dumps((plan_id, str(at), *rest)))
    first_flag = len(_PLAN.plain) + len(_PLAN.ruled)  # whether the first inner dict is there
    assert rest[first_flag] in (True, False)
    odd = list(rest)
    odd[first_flag] = 1  # truthy, but not the marker
    with pytest.raises(pickle.UnpicklingError, match="flag"):
        restore(pickle.dumps((plan_id, at, *odd)))


def test_restore_refuses_a_flat_snapshot_of_the_wrong_length() -> None:
    values = pickle.loads(snapshot(calls()[0]))
    with pytest.raises(pickle.UnpicklingError):
        restore(pickle.dumps(values[:-1]))
    with pytest.raises(pickle.UnpicklingError):
        restore(pickle.dumps((*values, None)))
