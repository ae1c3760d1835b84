"""Charging each attempt of a call once (`spendpipe.gateway.recording.attempts`)."""

from decimal import Decimal

from spendpipe.gateway.recording.attempts import ChargedAttempts


def logged(call_id: str = "call-1", start: float = 1_700_000_000.5) -> dict[str, object]:
    return {"litellm_call_id": call_id, "startTime": start}


def test_a_second_log_of_an_attempt_charged_as_much_is_a_repeat() -> None:
    attempts = ChargedAttempts()
    assert not attempts.repeats(logged(), Decimal("0.00102"))
    assert attempts.repeats(logged(), Decimal("0.00102"))
    assert attempts.repeats(logged(), Decimal("0.0001"))


def test_a_log_that_costs_more_than_the_attempt_was_charged_is_kept() -> None:
    attempts = ChargedAttempts()
    assert not attempts.repeats(logged(), Decimal("0"))  # a failed retry charged nothing
    assert not attempts.repeats(logged(), Decimal("0.5"))
    assert attempts.repeats(logged(), Decimal("0.5"))


def test_other_calls_and_other_attempts_are_not_repeats() -> None:
    attempts = ChargedAttempts()
    assert not attempts.repeats(logged(), Decimal("1"))
    assert not attempts.repeats(logged(call_id="call-2"), Decimal("1"))
    assert not attempts.repeats(logged(start=1_700_000_001.5), Decimal("1"))


def test_logs_without_an_attempt_are_never_repeats() -> None:
    attempts = ChargedAttempts()
    for record in ({}, {"litellm_call_id": "", "startTime": 1.0}, {"litellm_call_id": "c", "startTime": True}, None):
        assert not attempts.repeats(record, Decimal("1"))
        assert not attempts.repeats(record, Decimal("1"))
    assert not attempts.repeats(logged(), None)
    assert not attempts.repeats(logged(), None)


def test_only_the_latest_attempts_are_remembered() -> None:
    attempts = ChargedAttempts(most=2)
    for call_id in ("a", "b", "c"):
        assert not attempts.repeats(logged(call_id=call_id), Decimal("1"))
    assert not attempts.repeats(logged(call_id="a"), Decimal("1"))
    assert attempts.repeats(logged(call_id="c"), Decimal("1"))
