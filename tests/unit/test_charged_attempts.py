"""Charging each attempt of a call once (`spendpipe.gateway.recording.attempts`)."""

from typing import Any

from spendpipe.gateway.recording.attempts import ChargedAttempts


def logged(
    cost: object, call_id: str = "call-1", start: object = 1_700_000_000.5, stream: object = True
) -> dict[str, Any]:
    """What LiteLLM hands a logger for one log of a call."""
    record = {"litellm_call_id": call_id, "startTime": start, "response_cost": cost}
    return {"stream": stream, "standard_logging_object": record}


def test_a_second_log_of_a_stream_charged_as_much_is_a_repeat() -> None:
    attempts = ChargedAttempts()
    assert not attempts.repeats(logged(0.00102))
    assert attempts.repeats(logged(0.00102))
    assert attempts.repeats(logged(0.0001))


def test_a_log_that_costs_more_than_the_attempt_was_charged_is_kept() -> None:
    attempts = ChargedAttempts()
    assert not attempts.repeats(logged(0))  # a failed retry charged nothing
    assert not attempts.repeats(logged(0.5))
    assert attempts.repeats(logged(0.5))


def test_other_calls_and_other_attempts_are_not_repeats() -> None:
    attempts = ChargedAttempts()
    assert not attempts.repeats(logged(1))
    assert not attempts.repeats(logged(1, call_id="call-2"))
    assert not attempts.repeats(logged(1, start=1_700_000_001.5))


def test_calls_that_are_not_streams_or_name_no_attempt_are_never_repeats() -> None:
    attempts = ChargedAttempts()
    unmatched = [
        logged(1, stream=False),
        logged(1, stream="true"),
        logged(1, call_id=""),
        logged(1, start=True),
        logged(1, start="1700000000"),
        logged("not an amount"),
        logged(-1),
        {"stream": True, "standard_logging_object": None},
        {},
    ]
    for kwargs in unmatched:
        assert not attempts.repeats(kwargs)
        assert not attempts.repeats(kwargs)


def test_only_the_latest_attempts_are_remembered() -> None:
    attempts = ChargedAttempts(most=2)
    for call_id in ("a", "b", "c"):
        assert not attempts.repeats(logged(1, call_id=call_id))
    assert not attempts.repeats(logged(1, call_id="a"))
    assert attempts.repeats(logged(1, call_id="c"))
