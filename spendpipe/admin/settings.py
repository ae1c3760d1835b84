"""Settings of the admin CLI (env prefix `SPENDPIPE_`)."""

from pydantic import Field

from spendpipe.platform.settings import PipelineSettings


class AdminSettings(PipelineSettings):
    sql_endpoint_url: str = Field(default="http://127.0.0.1:8124", pattern=r"^https?://")
    """Where a running pipeline serves SQL over its embedded store."""
