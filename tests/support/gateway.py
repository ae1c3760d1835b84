"""The gateway plugin wired into the LiteLLM SDK for a test, and unwired afterwards."""

import contextlib
from collections.abc import Iterator
from pathlib import Path

import litellm

from spendpipe.contracts.topics import Topics
from spendpipe.gateway.plugin import SpendpipeLogger
from spendpipe.gateway.settings import GatewaySettings
from spendpipe.platform.kafka import KafkaSettings


@contextlib.contextmanager
def sdk_plugin(bootstrap: str, topics: Topics, spool_dir: Path, **overrides: object) -> Iterator[SpendpipeLogger]:
    settings = GatewaySettings(
        kafka=KafkaSettings(bootstrap_servers=bootstrap),
        topics=topics,
        spool_dir=spool_dir,
        gateway_id="test-gateway",
        **overrides,  # type: ignore[arg-type]
    )
    plugin = SpendpipeLogger.from_settings(settings)
    litellm.callbacks = [plugin]
    try:
        yield plugin
    finally:
        # LiteLLM copies callbacks into its success/failure lists and skips a new logger that
        # looks like one it has: remove this one everywhere so the next test's plugin is used
        litellm.logging_callback_manager.remove_callback_from_all_lists(plugin)
        plugin.close()
