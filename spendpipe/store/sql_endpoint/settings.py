"""Where the SQL endpoint listens (the serving process) and where its clients look for it."""

from typing import Annotated

from pydantic import BaseModel, Field

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8124
DEFAULT_URL = f"http://{DEFAULT_HOST}:{DEFAULT_PORT}"
"""Where a client finds the endpoint of a pipeline started with the default settings."""


class SqlEndpointSettings(BaseModel):
    """The loopback SQL endpoint the process that owns an embedded store serves."""

    enabled: bool = True
    host: str = DEFAULT_HOST
    port: int = Field(default=DEFAULT_PORT, ge=0, le=65535)


EndpointUrl = Annotated[str, Field(pattern=r"^https?://")]
"""A client's `sql_endpoint_url`: where a running pipeline serves SQL over its embedded store."""
