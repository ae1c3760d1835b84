"""Settings of the admin CLI (env prefix `SPENDPIPE_`)."""

from spendpipe.enforcer.settings import BurnRateSettings
from spendpipe.platform.settings import PipelineSettings
from spendpipe.store.sql_endpoint.settings import DEFAULT_URL, EndpointUrl


class AdminSettings(PipelineSettings):
    sql_endpoint_url: EndpointUrl = DEFAULT_URL
    """Where a running pipeline serves SQL over its embedded store."""
    burn_rate: BurnRateSettings = BurnRateSettings()
    """`spendpipe report` projects each cap as the enforcer does, over the same lookback."""
