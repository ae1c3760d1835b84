"""Charging a stream that fails as its client hangs up once (`spendpipe.gateway.recording.attempts`)."""

from typing import Any

from spendpipe.gateway.recording.attempts import ChargedAttempts


def logged(
    cost: object,
    *,
    hung_up: bool = False,
    call_id: str = "call-1",
    start: object = 1_700_000_000.5,
    stream: object = True,
    deployment: str = "deployment-a",
) -> dict[str, Any]:
    """What LiteLLM hands a logger for one log of a call."""
    record = {"litellm_call_id": call_id, "startTime": start, "response_cost": cost, "model_id": deployment}
    metadata = {"client_disconnected": True} if hung_up else {}
    return {"stream": stream, "standard_logging_object": record, "litellm_params": {"metadata": metadata}}


def test_the_hang_up_success_after_a_failure_charged_as_much_is_a_repeat() -> None:
    attempts = ChargedAttempts()
    assert not attempts.repeats(logged(0.00102))
    assert attempts.repeats(logged(0.00102, hung_up=True))
    assert attempts.repeats(logged(0.0001, hung_up=True))


def test_a_hang_up_success_that_costs_more_than_the_earlier_log_is_kept() -> None:
    attempts = ChargedAttempts()
    assert not attempts.repeats(logged(0.001))
    assert not attempts.repeats(logged(0.002, hung_up=True))


def test_retries_fallbacks_and_rounds_of_one_call_are_each_charged() -> None:
    # LiteLLM logs them under one call id and start time, a failed stream charged what it streamed
    attempts = ChargedAttempts()
    assert not attempts.repeats(logged(0.5))  # a stream that failed after its first chunks
    assert not attempts.repeats(logged(0.2))  # the retry's success, cheaper (a cached prompt)
    assert not attempts.repeats(logged(0.1, deployment="deployment-b"))  # a fallback's
    assert not attempts.repeats(logged(0.1, hung_up=True, deployment="deployment-c"))  # hung up on another


def test_a_hang_up_success_with_nothing_before_it_is_charged() -> None:
    attempts = ChargedAttempts()
    assert not attempts.repeats(logged(0.3, hung_up=True))
    assert not attempts.repeats(logged(0.3, hung_up=True, call_id="call-2"))
    assert not attempts.repeats(logged(0.3, hung_up=True, start=1_700_000_001.5))


def test_calls_that_are_not_streams_or_name_no_attempt_are_never_repeats() -> None:
    attempts = ChargedAttempts()
    unmatched = [
        logged(1, hung_up=True, stream=False),
        logged(1, hung_up=True, stream="true"),
        logged(1, hung_up=True, call_id=""),
        logged(1, hung_up=True, start=True),
        logged(1, hung_up=True, start="1700000000"),
        logged("not an amount", hung_up=True),
        logged(-1, hung_up=True),
        {"stream": True, "standard_logging_object": None},
        {},
    ]
    for kwargs in unmatched:
        assert not attempts.repeats(kwargs)
        assert not attempts.repeats(kwargs)


def test_only_the_latest_calls_are_remembered() -> None:
    attempts = ChargedAttempts(most=2)
    for call_id in ("a", "b", "c"):
        assert not attempts.repeats(logged(1, call_id=call_id))
    assert not attempts.repeats(logged(1, hung_up=True, call_id="a"))
    assert attempts.repeats(logged(1, hung_up=True, call_id="c"))
