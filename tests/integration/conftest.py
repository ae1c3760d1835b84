"""Fixtures of the integration tier beyond the shared ones (tests/conftest.py)."""

from collections.abc import Iterator

import pytest

from spendpipe.platform.clickhouse import ClickhouseStore
from spendpipe.store.sql_endpoint.server import SqlEndpoint
from spendpipe.store.sql_endpoint.settings import SqlEndpointSettings


@pytest.fixture
def endpoint(clickhouse: ClickhouseStore) -> Iterator[SqlEndpoint]:
    """The SQL endpoint over this test's store, on a free loopback port, stopped after the test."""
    endpoint = SqlEndpoint(clickhouse=clickhouse.settings, settings=SqlEndpointSettings(port=0)).start()
    try:
        yield endpoint
    finally:
        endpoint.stop()
