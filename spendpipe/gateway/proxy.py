"""Entry point for the LiteLLM proxy. In the proxy's config.yaml:

    litellm_settings:
      callbacks: spendpipe.gateway.proxy.handler

Settings come from the proxy's environment (`SPENDPIPE_KAFKA__BOOTSTRAP_SERVERS`, ...); a bad
one stops the proxy at start-up with a message naming the variable. Events are built and
delivered by a child process of each proxy worker (`SPENDPIPE_PUBLISHER=auto`; `thread` keeps
them in the worker): measured, the proxy then serves 2 to 3% more calls/s (docs/performance.md).
"""

from prometheus_client import REGISTRY

from spendpipe.gateway.plugin import SpendpipeLogger
from spendpipe.gateway.settings import GatewaySettings
from spendpipe.platform.settings import load_settings

handler = SpendpipeLogger.from_settings(load_settings(GatewaySettings), registry=REGISTRY, auto_child=True)
handler.start()  # read the block list while the proxy starts up
