"""The account of calls LiteLLM has started but not yet logged, which `close()` waits on."""

import threading

from spendpipe.gateway.recording.unlogged_calls import UnloggedCalls


def test_a_logged_call_leaves_nothing_to_wait_for() -> None:
    calls = UnloggedCalls()
    calls.started("call-1")
    calls.logged("call-1")

    assert calls.wait_logged(timeout=0) == 0
    assert len(calls) == 0


def test_the_wait_ends_when_another_thread_logs_the_call() -> None:
    calls = UnloggedCalls()
    calls.started("call-1")
    logger = threading.Thread(target=calls.logged, args=("call-1",))
    logger.start()

    assert calls.wait_logged(timeout=30) == 0
    logger.join()


def test_the_wait_is_bounded_and_reports_what_was_not_logged() -> None:
    calls = UnloggedCalls()
    calls.started("call-1")
    calls.started("call-2")
    calls.logged("call-2")

    assert calls.wait_logged(timeout=0.05) == 1


def test_a_call_never_logged_is_forgotten_after_a_while() -> None:
    now = [0.0]
    calls = UnloggedCalls(forget_after_s=60, clock=lambda: now[0])
    calls.started("abandoned-stream")
    now[0] = 30.0
    calls.started("recent")
    now[0] = 61.0
    calls.started("new")

    assert len(calls) == 2  # "recent" and "new"
    calls.logged("recent")
    calls.logged("new")
    assert calls.wait_logged(timeout=0) == 0


def test_calls_without_an_id_are_not_tracked() -> None:
    calls = UnloggedCalls()
    calls.started(None)
    calls.logged(None)

    assert len(calls) == 0


def test_a_retry_under_the_same_id_is_waited_for_after_the_first_attempt_is_logged() -> None:
    calls = UnloggedCalls()
    calls.started("call-1")  # the first attempt fails...
    calls.started("call-1")  # ...its retry starts under the same id before the failure is logged
    calls.logged("call-1")  # the first attempt's log

    assert calls.wait_logged(timeout=0.05) == 1
    calls.logged("call-1")  # the retry's log
    assert calls.wait_logged(timeout=0) == 0
    assert len(calls) == 0


def test_a_log_of_an_id_never_started_changes_nothing() -> None:
    calls = UnloggedCalls()
    calls.started("call-1")
    calls.logged("other")

    assert calls.wait_logged(timeout=0) == 1
