"""SDK mode's two waits, without Kafka: a fresh process's check waits (a bounded time) for the
block list before the unsynced policy may answer, and close waits (a bounded time) for LiteLLM
to log the calls already made."""

import logging
import threading
from typing import Any

import litellm
import pytest

from spendpipe.contracts.decisions import Decision
from spendpipe.gateway.blocks.blocklist import BlockList
from tests.unit.test_plugin_policy import block, plugin


class CatchingUp(threading.Event):
    """The block list's in-sync flag, whose follower reads `decision` while a check waits."""

    def __init__(self, blocklist: BlockList, decision: Decision) -> None:
        super().__init__()
        self.waits: list[float | None] = []
        self._blocklist = blocklist
        self._decision = decision

    def wait(self, timeout: float | None = None) -> bool:
        self.waits.append(timeout)
        self._blocklist.apply(self._decision)
        self.set()
        return True


def following(decision: Decision) -> tuple[BlockList, CatchingUp]:
    blocklist = BlockList()
    blocklist.in_sync = in_sync = CatchingUp(blocklist, decision)
    return blocklist, in_sync


def test_a_fresh_check_waits_for_the_block_list_and_refuses_a_blocked_team() -> None:
    blocklist, in_sync = following(block("team:eng"))
    gateway = plugin(blocklist, "fail_open", sync_wait_s=5)

    with pytest.raises(litellm.BudgetExceededError):
        gateway.check(model="gpt-4o", metadata={"user_api_key_team_id": "eng"})

    assert len(in_sync.waits) == 1
    assert 0 < (in_sync.waits[0] or 0) <= 5


def test_once_in_sync_a_check_never_waits() -> None:
    blocklist, in_sync = following(block("team:eng"))
    in_sync.set()
    gateway = plugin(blocklist, "fail_open", sync_wait_s=5)

    gateway.check(model="gpt-4o", metadata={"user_api_key_team_id": "eng"})  # the decision never came

    assert in_sync.waits == []


def test_past_the_bound_the_unsynced_policy_answers_without_waiting() -> None:
    blocklist, in_sync = following(block("team:eng"))
    gateway = plugin(blocklist, "fail_open", sync_wait_s=0)

    gateway.check(model="gpt-4o", metadata={"user_api_key_team_id": "eng"})  # fail_open serves

    assert in_sync.waits == []


def kwargs(call_id: str) -> dict[str, Any]:
    return {"litellm_call_id": call_id}


def test_close_waits_no_longer_than_its_bound_for_a_call_litellm_never_logs(caplog: pytest.LogCaptureFixture) -> None:
    gateway = plugin(BlockList(), "fail_open", close_wait_s=0.05)
    gateway.log_pre_api_call("gpt-4o", [], kwargs("call-1"))
    gateway.log_pre_api_call("gpt-4o", [], kwargs("call-2"))
    gateway.record(kwargs("call-2"))  # logged (no standard logging object: counted, not published)

    gateway.close(timeout=1)

    assert any("had not logged 1 call(s)" in r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)


async def test_close_on_an_event_loop_does_not_block_it(caplog: pytest.LogCaptureFixture) -> None:
    gateway = plugin(BlockList(), "fail_open", close_wait_s=60)
    gateway.log_pre_api_call("gpt-4o", [], kwargs("call-1"))

    gateway.close(timeout=1)  # returns at once: waiting here would stop LiteLLM's async logging

    assert any("use aclose()" in r.getMessage() for r in caplog.records)
