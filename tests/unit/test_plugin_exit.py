"""At exit the plugin closes before its publisher: `close()` first waits for LiteLLM to log the
calls already made, and only a publisher still open can deliver or spool what that logs."""

import atexit
from collections.abc import Callable

import pytest

from spendpipe.gateway.blocks.blocklist import BlockList
from tests.unit.test_plugin_policy import plugin


def test_the_plugins_exit_handler_runs_before_the_publishers(monkeypatch: pytest.MonkeyPatch) -> None:
    registered: list[Callable[..., object]] = []
    monkeypatch.setattr(atexit, "register", registered.append)
    monkeypatch.setattr(atexit, "unregister", lambda handler: None)
    gateway = plugin(BlockList(), "open")
    publisher = gateway.publisher

    def start() -> None:  # as the publisher's own start: registers its close once started
        atexit.register(publisher.close)

    publisher._start = start  # type: ignore[method-assign]

    gateway.start()

    # atexit runs the newest handler first
    assert registered.index(gateway.close) > registered.index(publisher.close)
