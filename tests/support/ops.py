"""Reading a service's /healthz, /readyz and /metrics the way a probe or Prometheus does, and
running the aggregator in-process behind its ops server as `serve()` wires it."""

import asyncio
import contextlib
import json
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from spendpipe.aggregator.app import Aggregator
from spendpipe.aggregator.metrics import AggregatorMetrics
from spendpipe.aggregator.settings import AggregatorSettings
from spendpipe.platform.clickhouse import ClickhouseStore
from spendpipe.platform.kafka import build_broker
from spendpipe.platform.ops_server import OpsServer, OpsSettings, Readiness

T = TypeVar("T")


def get(url: str) -> tuple[int, str]:
    """(status, body); an error status is an answer too. Connection errors raise OSError."""
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return int(response.status), response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def readiness(base_url: str) -> tuple[int, dict[str, Any]]:
    status, body = get(f"{base_url}/readyz")
    return status, json.loads(body)


def metric(base_url: str, name: str, **labels: str) -> float:
    """Sum of the samples called `name` (e.g. `..._total`) whose labels include `labels`."""
    _, text = get(f"{base_url}/metrics")
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name and labels.items() <= sample.labels.items()
    )


async def off_loop(probe: Callable[[], T]) -> T:
    """An HTTP probe from an async test, off the event loop the service under test runs on."""
    return await asyncio.to_thread(probe)


@contextlib.asynccontextmanager
async def serving_aggregator(settings: AggregatorSettings, clickhouse: ClickhouseStore) -> AsyncIterator[str]:
    """The aggregator with its ops server on a free port; yields the server's base URL. The
    ops server answers before the broker starts, as in `serve()`."""
    registry = CollectorRegistry()
    broker = build_broker(settings.kafka)
    aggregator = Aggregator(
        settings=settings, broker=broker, clickhouse=clickhouse, metrics=AggregatorMetrics(registry=registry)
    )
    checks = Readiness()
    checks.add("aggregator", aggregator.not_ready)
    ops = OpsServer(settings=OpsSettings(port=0), registry=registry, readiness=checks).start()
    try:
        await broker.start()
        await aggregator.start()
        yield ops.url
    finally:
        await aggregator.stop()
        await broker.stop()
        ops.stop()


class TcpGate:
    """A loopback port that refuses connections until `open()`, then forwards them to `target`:
    a broker address that is not reachable yet, then is. (After bootstrap, Kafka clients talk
    to the addresses the broker advertises, so only the bootstrap goes through here.)"""

    def __init__(self, *, port: int, target: str) -> None:
        self.address = f"127.0.0.1:{port}"
        self._port = port
        host, _, target_port = target.rpartition(":")
        self._target = (host, int(target_port))
        self._server: asyncio.Server | None = None

    async def open(self) -> None:
        self._server = await asyncio.start_server(self._forward, "127.0.0.1", self._port)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()

    async def _forward(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream_reader, upstream_writer = await asyncio.open_connection(*self._target)
        await asyncio.gather(_pipe(reader, upstream_writer), _pipe(upstream_reader, writer))


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while chunk := await reader.read(65536):
            writer.write(chunk)
            await writer.drain()
    except OSError:
        pass
    finally:
        writer.close()
