"""`spendpipe.install()`: the plugin in an application that calls the LiteLLM SDK, in one line.

* Settings from the environment (`SPENDPIPE_*`, as the proxy reads them), or a `GatewaySettings`
  passed in.
* Appended to `litellm.callbacks` through LiteLLM's own callback manager: callbacks the
  application set stay, in their order. A list LiteLLM refuses to grow (its `MAX_CALLBACKS`) is
  an error, never a plugin that silently records nothing.
* Idempotent: a `SpendpipeLogger` already in `litellm.callbacks` (installed before, or registered
  by hand) is returned as it is, so calling `install()` twice records every call once.
* Started at once: the block list is read while the application starts up, and the plugin is
  closed at exit.
* `litellm.max_budget` is honoured for this process (`process_budget.py`).
* Events built and delivered by a subprocess (`SPENDPIPE_PUBLISHER`, `auto`: the request path
  then only pickles a few fields of each call; `recording/publisher_process.py`).
* Without what only the proxy uses: no session log (the SDK runs no pre-call hook that could cap
  a session; docs/agent-sessions.md), whose reader would otherwise ask Kafka 20 times a second.
"""

import threading

import litellm

from spendpipe.gateway.plugin import SpendpipeLogger
from spendpipe.gateway.process_budget import ProcessBudget
from spendpipe.gateway.settings import GatewaySettings
from spendpipe.platform.settings import load_settings

_INSTALLING = threading.Lock()
"""Two threads installing at once still register one plugin."""


def installed() -> SpendpipeLogger | None:
    """The plugin LiteLLM calls in this process, if any."""
    return next((c for c in litellm.callbacks if isinstance(c, SpendpipeLogger)), None)


def install(settings: GatewaySettings | None = None) -> SpendpipeLogger:
    """Register the plugin with the LiteLLM SDK (once) and start it; returns it."""
    with _INSTALLING:
        present = installed()
        if present is not None:
            return present
        plugin = SpendpipeLogger.from_settings(settings or load_settings(GatewaySettings), sdk=True)
        plugin.process_budget = ProcessBudget()
        plugin.refuses_sdk_calls = True
        plugin.declared = None  # keys with budgets of their own come with the proxy only
        plugin.sessions = plugin.sessions.without_log()  # only the proxy caps sessions: no log to follow
        plugin.metrics.sessions_live.set_function(plugin.sessions.live_sessions)
        litellm.logging_callback_manager.add_litellm_callback(plugin)
        if installed() is not plugin:
            raise RuntimeError(
                f"LiteLLM did not take spendpipe's callback: litellm.callbacks holds {len(litellm.callbacks)} "
                "callbacks, its limit; remove one and install again"
            )
        plugin.start()
        return plugin
