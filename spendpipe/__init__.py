"""spendpipe: cost events from LLM gateways to exact windowed totals, budgets and blocks.

`spendpipe.install()` plugs it into the LiteLLM SDK in one line (`gateway/sdk.py`). It is
imported on first use, so the pipeline's processes, which import this package too, never load
LiteLLM."""

from typing import TYPE_CHECKING

from spendpipe import legacy_paths

if TYPE_CHECKING:
    from spendpipe.gateway.plugin import SpendpipeLogger
    from spendpipe.gateway.settings import GatewaySettings

legacy_paths.install()


def install(settings: "GatewaySettings | None" = None) -> "SpendpipeLogger":
    """Record every LiteLLM SDK call of this process and refuse blocked ones; settings from the
    environment (`SPENDPIPE_*`) unless given. Appends to `litellm.callbacks`; idempotent. See
    docs/sdk.md."""
    from spendpipe.gateway.sdk import install as install_plugin  # noqa: PLC0415 - loads LiteLLM

    return install_plugin(settings)
