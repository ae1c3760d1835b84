"""The ops server over real loopback HTTP: the three paths, port 0, a disabled server."""

from collections.abc import Iterator

import pytest
from prometheus_client import CollectorRegistry, Counter

from spendpipe.platform.ops_server import OpsServer, OpsSettings, Readiness
from tests.support.ops import get, metric, readiness


@pytest.fixture
def waiting() -> dict[str, str | None]:
    return {"consumer": "12 records behind"}


@pytest.fixture
def server(waiting: dict[str, str | None]) -> Iterator[tuple[OpsServer, Counter]]:
    registry = CollectorRegistry()
    consumed = Counter("spendpipe_test_consumed", "test counter", registry=registry)
    checks = Readiness()
    checks.add("consumer", lambda: waiting["consumer"])
    ops = OpsServer(settings=OpsSettings(port=0), registry=registry, readiness=checks).start()
    try:
        yield ops, consumed
    finally:
        ops.stop()


def test_port_0_binds_a_free_port_and_serves_liveness(server: tuple[OpsServer, Counter]) -> None:
    ops, _ = server

    assert ops.port > 0
    assert get(f"{ops.url}/healthz") == (200, "ok\n")
    assert get(f"{ops.url}/elsewhere")[0] == 404


def test_readyz_says_what_it_waits_for_until_ready(
    server: tuple[OpsServer, Counter], waiting: dict[str, str | None]
) -> None:
    ops, _ = server

    assert readiness(ops.url) == (503, {"ready": False, "checks": {"consumer": "12 records behind"}})
    waiting["consumer"] = None
    assert readiness(ops.url) == (200, {"ready": True, "checks": {"consumer": "ready"}})


def test_metrics_are_the_registry_in_prometheus_text_format(server: tuple[OpsServer, Counter]) -> None:
    ops, consumed = server

    consumed.inc(7)

    status, text = get(f"{ops.url}/metrics")
    assert status == 200
    assert "spendpipe_test_consumed_total 7.0" in text.splitlines()
    assert metric(ops.url, "spendpipe_test_consumed_total") == 7


def test_a_disabled_server_binds_nothing() -> None:
    ops = OpsServer(settings=OpsSettings(enabled=False), registry=CollectorRegistry(), readiness=Readiness())

    ops.start()
    ops.stop()

    with pytest.raises(RuntimeError, match="not running"):
        _ = ops.port


def test_a_port_in_use_is_logged_and_the_process_runs_on(
    server: tuple[OpsServer, Counter], caplog: pytest.LogCaptureFixture
) -> None:
    taken, _ = server
    second = OpsServer(settings=OpsSettings(port=taken.port), registry=CollectorRegistry(), readiness=Readiness())

    second.start()

    assert "cannot serve health and metrics" in caplog.text
    assert "SPENDPIPE_OPS__PORT" in caplog.text
    with pytest.raises(RuntimeError, match="not running"):
        _ = second.port
    assert get(f"{taken.url}/healthz") == (200, "ok\n")
