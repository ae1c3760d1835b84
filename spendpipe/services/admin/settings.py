"""Settings of the admin CLI (env prefix `SPENDPIPE_`)."""

from pydantic import Field
from pydantic_settings import BaseSettings

from spendpipe.platform.clickhouse import ClickhouseSettings
from spendpipe.platform.kafka import KafkaSettings
from spendpipe.platform.settings import service_config
from spendpipe.schemas.topics import Topics


class AdminSettings(BaseSettings):
    model_config = service_config()

    kafka: KafkaSettings = KafkaSettings()
    topics: Topics = Topics()
    clickhouse: ClickhouseSettings = ClickhouseSettings()
    sql_endpoint_url: str = Field(default="http://127.0.0.1:8124", pattern=r"^https?://")
    """Where a running pipeline serves SQL over its embedded store."""
