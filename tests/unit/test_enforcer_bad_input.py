"""The enforcer service against input it cannot use and steps that fail: nothing stops its tick
or its followers for good, and what it skips is logged and counted. The FastStream broker is
wired but never started, the store runs each call in line, and readers are doubles."""

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

import pytest
from faststream.kafka import KafkaBroker

from spendpipe.contracts.budgets import Budget
from spendpipe.contracts.decisions import Decision
from spendpipe.contracts.scopes import Scope
from spendpipe.enforcer import app
from spendpipe.enforcer.app import EnforcerService
from spendpipe.enforcer.settings import EnforcerSettings
from spendpipe.platform.signing.settings import SigningSettings
from tests.support.waiting import eventually


class InlineStore:
    async def run(self, call: Callable[..., Any], *args: Any) -> Any:
        return call(*args)


def service(tick_interval_ms: int = 10) -> EnforcerService:
    settings = EnforcerSettings(signing=SigningSettings(required=False), tick_interval_ms=tick_interval_ms)
    return EnforcerService(settings=settings, broker=KafkaBroker("127.0.0.1:9"), clickhouse=InlineStore())  # type: ignore[arg-type]


def record(key: bytes | None, value: bytes | None) -> Any:
    return SimpleNamespace(key=key, value=value, headers=[], offset=0)


def unreadable(s: EnforcerService, topic: str) -> float:
    return float(s.metrics.records_rejected.labels(topic=topic, reason="unreadable")._value.get())


def decision(scope: str) -> Decision:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    return Decision(scope=scope, version=1, blocked=True, reason="test", decided_at=now)


@pytest.mark.parametrize("key", [b"project:p1", b"", b"team:", b"global:x", b"\xff"])
@pytest.mark.parametrize("value", [None, b'{"scope": "team:eng", "max_budget": "1"}'])
def test_a_declared_record_under_a_key_that_is_no_scope_is_refused_and_queues_nothing(
    key: bytes, value: bytes | None
) -> None:
    s = service()
    s._on_declared(record(key, value))
    assert s._pending_scopes == set()
    assert unreadable(s, s._settings.topics.declared_budgets) == 1


def test_an_invalid_declared_budget_withdraws_the_scope_s_declaration_and_is_counted() -> None:
    s = service()
    s._on_declared(record(b"team:eng", Budget(scope="team:eng", max_budget=Decimal(5)).model_dump_json().encode()))
    assert s.enforcer.book.get("team:eng") is not None
    s._on_declared(record(b"team:eng", b"not a budget"))
    assert s.enforcer.book.get("team:eng") is None
    assert s._pending_scopes == {"team:eng"}
    assert unreadable(s, s._settings.topics.declared_budgets) == 1


async def test_a_pending_change_that_is_no_scope_is_dropped_and_the_others_are_judged() -> None:
    s = service()
    judged: list[list[str]] = []

    async def judge(scopes: Sequence[Scope]) -> None:
        judged.append(sorted(map(str, scopes)))

    async def publish(decisions: Sequence[Decision]) -> None:
        pass

    s._judge = judge  # type: ignore[method-assign]
    s._publish = publish  # type: ignore[method-assign]
    s.enforcer.reconcile = list  # type: ignore[method-assign]
    s._pending_scopes |= {"project:p1", "team:eng"}

    await s._apply_budget_changes()
    await s._apply_budget_changes()

    assert judged == [["team:eng"]]
    assert s._pending_scopes == set()


async def test_a_failing_tick_step_skips_none_of_the_others_and_shows_until_a_tick_succeeds() -> None:
    s = service()
    due: list[int] = []
    reasserted: list[int] = []
    failing = [True]

    async def leases() -> None:
        if failing[0]:
            raise RuntimeError("the lease desk failed")

    async def reassert() -> None:
        reasserted.append(1)

    async def publish(decisions: Sequence[Decision]) -> None:
        pass

    s.leases.after_budget_changes = leases  # type: ignore[method-assign]
    s.enforcer.evaluate_due = lambda: due.append(1) or []  # type: ignore[method-assign,func-returns-value]
    s._reassert = reassert  # type: ignore[method-assign]
    s._publish = publish  # type: ignore[method-assign]
    s.ready.set()
    tick = asyncio.create_task(s._tick())
    try:
        # the steps after the failing one, window resets and reassertions, still run on every tick
        await eventually(lambda: len(reasserted), lambda n: n >= 2, within=10, what="two ticks to their end")
        assert len(due) >= 2
        assert s.metrics.tick_failures.labels("leases")._value.get() >= 2
        why = await eventually(s.not_ready, lambda why: why is not None, within=10, what="not ready")
        assert "leases: RuntimeError('the lease desk failed')" in why
        assert s.metrics.last_tick._value.get() == 0
        failing[0] = False
        await eventually(s.not_ready, lambda why: why is None, within=10, what="ready after a tick succeeded")
        assert s.metrics.last_tick._value.get() > 0
    finally:
        tick.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await tick


class FlakyReader:
    """`follow()` fails once (the broker went away); `start()` fails while the broker is down."""

    def __init__(self, down_for: int) -> None:
        self.down_for = down_for
        self.starts = self.follows = self.catch_ups = 0
        self.following = asyncio.Event()

    async def follow(self) -> None:
        self.follows += 1
        if self.follows == 1:
            raise ConnectionError("broker went away")
        self.following.set()
        await asyncio.Event().wait()

    async def stop(self) -> None:
        pass

    async def start(self) -> None:
        self.starts += 1
        if self.starts <= self.down_for:
            raise ConnectionError("broker still down")

    async def catch_up(self) -> int:
        self.catch_ups += 1
        return 0


async def test_a_follower_whose_reconnect_fails_keeps_retrying_until_it_follows_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(app, "FOLLOW_RETRY_S", (0.0, 0.0))
    s = service()
    s.ready.set()
    reader = FlakyReader(down_for=3)
    task = asyncio.create_task(s._follow(reader, "spend.budgets"))  # type: ignore[arg-type]
    try:
        await eventually(lambda: reader.following.is_set() or task.done(), bool, within=10, what="following again")
        assert not task.done()
        assert (reader.starts, reader.catch_ups) == (4, 1)
        assert s.metrics.follow_failures.labels("spend.budgets")._value.get() == 4
        assert s.not_ready() is None
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_a_follower_reading_again_is_not_ready() -> None:
    s = service()
    s.ready.set()
    reader = FlakyReader(down_for=1_000_000)
    task = asyncio.create_task(s._follow(reader, "spend.decisions"))  # type: ignore[arg-type]
    try:
        why = await eventually(s.not_ready, lambda why: why is not None, within=10, what="not ready")
        assert why.startswith("reading spend.decisions again after a failure")
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@pytest.mark.parametrize("value", [b"not json", b'{"scope": "team:eng", "version": "a newer schema"}'])
def test_a_decision_read_back_that_does_not_parse_is_skipped_and_counted(value: bytes) -> None:
    s = service()
    s._on_decision(record(b"team:eng", value))
    assert s.enforcer.blocks() == []
    assert unreadable(s, s._settings.topics.decisions) == 1


def test_a_decision_read_back_for_an_unknown_scope_type_is_skipped_and_reconcile_runs() -> None:
    s = service()
    s._on_decision(record(b"project:p1", decision("project:p1").model_dump_json().encode()))
    s._on_decision(record(b"team:eng", decision("team:eng").model_dump_json().encode()))
    assert [d.scope for d in s.enforcer.blocks()] == ["team:eng"]
    assert unreadable(s, s._settings.topics.decisions) == 1
    lifted = s.enforcer.reconcile()  # no budget supports the block: lifted, and nothing raises
    assert [(d.scope, d.blocked) for d in lifted] == [("team:eng", False)]


def test_an_alert_read_back_under_a_key_that_is_not_utf8_is_skipped() -> None:
    s = service()
    s._on_alert(record(b"\xff\xfe", b"{}"))
    s._on_alert(record(b"soft|team:eng|1d|2026-01-01", b"{}"))
    assert s.enforcer._alerted == {"soft|team:eng|1d|2026-01-01"}
