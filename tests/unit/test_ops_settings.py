"""The ops endpoint's settings as deployments set them, and readiness reports."""

import os

import pytest
from pydantic_settings import BaseSettings

from spendpipe.aggregator.settings import AggregatorSettings
from spendpipe.enforcer.settings import EnforcerSettings
from spendpipe.gateway.settings import GatewaySettings
from spendpipe.platform.ops_server import READY, Readiness
from spendpipe.platform.settings import SettingsError, load_settings

SETTINGS: tuple[type[BaseSettings], ...] = (AggregatorSettings, EnforcerSettings, GatewaySettings)


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.upper().startswith("SPENDPIPE_") and not name.upper().startswith("SPENDPIPE_SIGNING__"):
            monkeypatch.delenv(name)  # the session's writer keys stay (conftest.signing_keys)
    for cls in SETTINGS:
        monkeypatch.setitem(cls.model_config, "env_file", None)


@pytest.mark.parametrize("cls", [AggregatorSettings, EnforcerSettings])
def test_pipeline_processes_serve_ops_on_9464_by_default(cls: type[AggregatorSettings | EnforcerSettings]) -> None:
    ops = load_settings(cls).ops

    assert (ops.enabled, ops.host, ops.port) == (True, "127.0.0.1", 9464)


def test_the_environment_moves_and_disables_the_ops_endpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPENDPIPE_OPS__HOST", "0.0.0.0")
    monkeypatch.setenv("SPENDPIPE_OPS__PORT", "0")

    ops = load_settings(AggregatorSettings).ops

    assert (ops.enabled, ops.host, ops.port) == (True, "0.0.0.0", 0)
    monkeypatch.setenv("SPENDPIPE_OPS__ENABLED", "false")
    assert load_settings(EnforcerSettings).ops.enabled is False


def test_gateway_ops_is_off_by_default_on_9465() -> None:
    ops = load_settings(GatewaySettings).ops

    assert (ops.enabled, ops.host, ops.port) == (False, "127.0.0.1", 9465)


def test_enabling_gateway_ops_keeps_its_port(monkeypatch: pytest.MonkeyPatch) -> None:
    """A nested variable builds the section from its class defaults, not the field's default
    instance: the gateway's port must be its class default."""
    monkeypatch.setenv("SPENDPIPE_OPS__ENABLED", "true")

    ops = load_settings(GatewaySettings).ops

    assert (ops.enabled, ops.port) == (True, 9465)


def test_a_bad_port_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPENDPIPE_OPS__PORT", "70000")

    with pytest.raises(SettingsError, match=r"SPENDPIPE_OPS__PORT: .*65535"):
        load_settings(AggregatorSettings)


def test_readiness_reports_every_check_and_survives_a_broken_one() -> None:
    readiness = Readiness()
    readiness.add("aggregator", lambda: None)
    readiness.add("enforcer", lambda: "reading spend.budgets to its end")
    readiness.add("broken", lambda: str(1 // 0))

    report = readiness.report()

    assert report["aggregator"] == READY
    assert report["enforcer"] == "reading spend.budgets to its end"
    assert report["broken"].startswith("check failed: ZeroDivisionError")
