"""deploy/prometheus and deploy/grafana as shipped: the real promtool checks the rules and runs
the rule tests recorded from a real pipeline (tests/integration/test_alert_rules.py, which also
checks every metric name against a real scrape); every alert is tested both ways and
documented; the dashboard parses and names the provisioned datasource; compose gives the
containers exactly these files."""

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from spendpipe.gateway.metrics import LOSS_REASONS
from tests.support.deploy import REPO, compose_config
from tests.support.prometheus import ALERTS, ALERTS_TEST, DASHBOARD, alert_rules, names_in_expression, promtool

PROMETHEUS_CONFIG = REPO / "deploy" / "prometheus" / "prometheus.yml"
DATASOURCE = REPO / "deploy" / "grafana" / "provisioning" / "datasources" / "prometheus.yml"
DASHBOARD_PROVIDER = REPO / "deploy" / "grafana" / "provisioning" / "dashboards" / "spendpipe.yml"
OPERATIONS = REPO / "docs" / "operations.md"


def test_promtool_accepts_the_rules() -> None:
    result = promtool("check", "rules", str(ALERTS))

    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(alert_rules())} rules found" in result.stdout


def test_the_recorded_rule_tests_pass_in_promtool() -> None:
    result = promtool("test", "rules", str(ALERTS_TEST))

    assert result.returncode == 0, result.stdout + result.stderr


def test_a_broken_rule_fails_the_recorded_tests(tmp_path: Path) -> None:
    (tmp_path / "alerts.yml").write_text(ALERTS.read_text().replace("> 1000", "> 100000"))
    (tmp_path / "alerts_test.yml").write_text(ALERTS_TEST.read_text())

    result = promtool("test", "rules", str(tmp_path / "alerts_test.yml"))

    assert result.returncode != 0
    assert "SpendpipeConsumerLag" in result.stdout + result.stderr


def test_every_alert_is_tested_firing_and_quiet() -> None:
    tests = yaml.safe_load(ALERTS_TEST.read_text())["tests"]
    checks = [check for test in tests for check in test["alert_rule_test"]]

    for name in alert_rules():
        mine = [check for check in checks if check["alertname"] == name]
        assert any(check["exp_alerts"] for check in mine), f"{name} is never expected to fire"
        assert any(not check["exp_alerts"] for check in mine), f"{name} is never expected to stay quiet"


def test_every_alert_is_documented_with_what_to_do() -> None:
    text = OPERATIONS.read_text()

    for name, rule in alert_rules().items():
        assert f"`{name}`" in text, f"docs/operations.md does not explain {name}"
        assert rule["labels"]["severity"] in {"critical", "warning", "info"}


def test_prometheus_config_loads_the_rules_and_scrapes_every_service(tmp_path: Path) -> None:
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    targets = {t for job in config["scrape_configs"] for c in job["static_configs"] for t in c["targets"]}
    assert targets == {"aggregator:9464", "enforcer:9464", "gateway:9465"}

    local = tmp_path / "prometheus.yml"
    local.write_text(PROMETHEUS_CONFIG.read_text().replace("/etc/prometheus/alerts.yml", str(ALERTS)))
    result = promtool("check", "config", str(local))
    assert result.returncode == 0, result.stdout + result.stderr


def dashboard() -> dict[str, Any]:
    return dict(json.loads(DASHBOARD.read_text()))


def test_the_dashboard_reads_only_the_provisioned_prometheus() -> None:
    (source,) = yaml.safe_load(DATASOURCE.read_text())["datasources"]
    panels = [panel for panel in dashboard()["panels"] if panel["type"] != "row"]

    assert source["type"] == "prometheus"
    assert len({panel["id"] for panel in dashboard()["panels"]}) == len(dashboard()["panels"])
    for panel in panels:
        assert panel["datasource"] == {"type": "prometheus", "uid": source["uid"]}, panel["title"]
        assert panel["targets"], f"{panel['title']} has no query"
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == source["uid"]
            assert names_in_expression(target["expr"]), f"{panel['title']}: {target['expr']} reads no metric of ours"


def test_the_dashboard_shows_what_operators_need() -> None:
    read = {
        name
        for panel in dashboard()["panels"]
        for t in panel.get("targets", [])
        for name in names_in_expression(t["expr"])
    }

    for name in (
        "spendpipe_aggregator_consumer_lag",
        "spendpipe_aggregator_flush_seconds_bucket",
        "spendpipe_aggregator_dead_letters_total",
        "spendpipe_gateway_events_lost_total",
        "spendpipe_gateway_spool_bytes",
        "spendpipe_blocks_in_force",
        "spendpipe_budget_spend_dollars",
        "spendpipe_budget_remaining_dollars",
        "spendpipe_aggregator_last_flush_timestamp_seconds",
    ):
        assert name in read


@pytest.fixture(scope="module")
def resolved() -> dict[str, Any]:
    return compose_config(Path("/dev/null"))


def test_compose_gives_prometheus_and_grafana_these_files(resolved: dict[str, Any]) -> None:
    configs = {name: Path(config["file"]).resolve() for name, config in resolved["configs"].items()}
    mounted = {
        service: {mount["target"]: configs[mount["source"]] for mount in resolved["services"][service]["configs"]}
        for service in ("prometheus", "grafana")
    }
    provider = yaml.safe_load(DASHBOARD_PROVIDER.read_text())["providers"][0]["options"]["path"]

    assert mounted["prometheus"] == {
        "/etc/prometheus/prometheus.yml": PROMETHEUS_CONFIG,
        "/etc/prometheus/alerts.yml": ALERTS,
    }
    assert mounted["grafana"] == {
        "/etc/grafana/provisioning/datasources/prometheus.yml": DATASOURCE,
        "/etc/grafana/provisioning/dashboards/spendpipe.yml": DASHBOARD_PROVIDER,
        f"{provider}/{DASHBOARD.name}": DASHBOARD,
        # the spend dashboard's (tests/unit/test_spend_dashboard.py checks them)
        "/etc/grafana/provisioning/datasources/clickhouse.yml": DATASOURCE.with_name("clickhouse.yml"),
        f"{provider}/spend.json": DASHBOARD.with_name("spend.json"),
    }
    for service in ("prometheus", "grafana"):
        assert resolved["services"][service]["profiles"] == ["observability"]
    url = yaml.safe_load(DATASOURCE.read_text())["datasources"][0]["url"]
    assert url == "http://prometheus:9090"


def test_every_loss_reason_a_gateway_counts_starts_at_zero() -> None:
    """A labelled counter that first appears at 21 has no increase for SpendpipeEventsLost to see."""
    sources = (REPO / "spendpipe" / "gateway").rglob("*.py")
    used = {reason for path in sources for reason in re.findall(r'(?:_lose\(.*?|reason=)"(\w+)"', path.read_text())}

    assert used <= set(LOSS_REASONS)
