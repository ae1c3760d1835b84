"""Entry point for the LiteLLM proxy. In the proxy's config.yaml:

    litellm_settings:
      callbacks: spendpipe.gateway.proxy.handler

Settings come from the proxy's environment (`SPENDPIPE_KAFKA__BOOTSTRAP_SERVERS`, ...); a bad
one stops the proxy at start-up with a message naming the variable.
"""

from prometheus_client import REGISTRY

from spendpipe.gateway.plugin import SpendpipeLogger
from spendpipe.gateway.settings import GatewaySettings
from spendpipe.platform.settings import load_settings

handler = SpendpipeLogger.from_settings(load_settings(GatewaySettings), registry=REGISTRY)
handler.start()  # read the block list while the proxy starts up
