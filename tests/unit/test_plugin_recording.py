"""The plugin never drops a call's cost: a call whose event cannot be built is counted as lost,
logged, and charged to the scopes the gateway knows by a fallback event."""

import logging
from collections.abc import Callable

import pytest

from spendpipe.contracts.events import SpendEvent
from spendpipe.gateway.blocks.blocklist import BlockList
from spendpipe.gateway.plugin import SpendpipeLogger
from tests.unit.test_event_builder import KEY_HASH, START, logging_object
from tests.unit.test_plugin_policy import plugin


def recording_plugin(monkeypatch: pytest.MonkeyPatch) -> tuple[SpendpipeLogger, list[SpendEvent]]:
    """The plugin with a publisher that builds what is handed over at once, as its thread would."""
    logger = plugin(BlockList(), "fail_open")
    published: list[SpendEvent] = []

    def build_now(build: Callable[[], SpendEvent | None]) -> None:
        event = build()
        if event is not None:
            published.append(event)

    monkeypatch.setattr(logger.publisher, "publish_deferred", build_now)
    return logger, published


def lost(logger: SpendpipeLogger, reason: str) -> float:
    return float(logger.metrics.lost.labels(reason=reason)._value.get())


def test_a_hostile_user_is_recorded_in_full(monkeypatch: pytest.MonkeyPatch) -> None:
    logger, published = recording_plugin(monkeypatch)

    logger.record({"standard_logging_object": logging_object(end_user="c" * 5000 + "\ud800")})

    (event,) = published
    assert event.end_user is not None
    assert event.end_user.startswith("c" * 200)
    assert lost(logger, "unbuildable") == 0


def test_an_unbuildable_event_is_lost_logged_and_its_cost_still_charged(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    logger, published = recording_plugin(monkeypatch)
    record = logging_object(end_user="customer-1", endTime=START + 1e10)  # a year the contract refuses

    logger.record({"standard_logging_object": record, "litellm_call_id": "call-9"})

    (event,) = published
    assert (event.key_hash, event.user_id, event.team_id, event.org_id) == (KEY_HASH, "alice", "eng", "acme")
    assert str(event.cost) == "0.000225"
    assert lost(logger, "unbuildable") == 1
    assert logger.metrics.recorded._value.get() == 1
    assert any(r.levelno >= logging.ERROR and "call-9" in r.getMessage() for r in caplog.records)


def test_a_call_not_even_the_fallback_can_charge_is_counted_uncharged(monkeypatch: pytest.MonkeyPatch) -> None:
    logger, published = recording_plugin(monkeypatch)
    record = logging_object(endTime=START + 1e10, response_cost=float("nan"))

    logger.record({"standard_logging_object": record})

    assert published == []
    assert lost(logger, "uncharged") == 1
