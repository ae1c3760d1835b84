"""deploy/grafana/dashboards/spend.json as shipped: a dashboard Grafana can load (uid, title,
panels with ids, places on the grid and queries), every panel on a provisioned datasource, the
ClickHouse panels reading the analysts' views through macros the test expander knows, the
Prometheus panel reading metrics the pipeline dashboard's tests check against real scrapes, and
compose installing the pinned plugin and giving the datasource every setting it reads.
tests/integration/test_spend_dashboard.py runs each panel's SQL on real data."""

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.deploy import compose_config
from tests.support.grafana import (
    CLICKHOUSE_PLUGIN,
    DATASOURCES,
    FORMAT_TABLE,
    FORMAT_TIME_SERIES,
    TimeRange,
    clickhouse_panels,
    load_dashboard,
    provisioned_datasources,
    query_panels,
)
from tests.support.prometheus import names_in_expression

VIEWS = {path.stem for path in (Path(__file__).parents[2] / "schemas" / "clickhouse" / "views").glob("*.sql")}
RANGE = TimeRange(
    start=datetime.fromtimestamp(1415792726, UTC),
    end=datetime.fromtimestamp(1447328726, UTC),
    interval=timedelta(seconds=20),
)


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    return load_dashboard()


def test_the_dashboard_has_what_grafana_needs_to_load_it(dashboard: dict[str, Any]) -> None:
    assert dashboard["uid"] == "spendpipe-spend"
    assert dashboard["title"]
    assert isinstance(dashboard["schemaVersion"], int)
    assert dashboard["time"] == {"from": "now-7d", "to": "now"}
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(set(ids)) == len(ids)
    for panel in query_panels(dashboard):
        assert panel["title"]
        assert panel["type"] in {"stat", "timeseries", "table", "bargauge"}, panel["title"]
        assert [target["refId"] for target in panel["targets"]] == ["A"], panel["title"]


def test_no_two_panels_overlap_on_the_grid(dashboard: dict[str, Any]) -> None:
    taken: dict[tuple[int, int], str] = {}
    for panel in dashboard["panels"]:
        place = panel["gridPos"]
        assert set(place) == {"h", "w", "x", "y"}
        assert all(isinstance(v, int) for v in place.values())
        assert place["x"] + place["w"] <= 24, panel["title"]
        for x in range(place["x"], place["x"] + place["w"]):
            for y in range(place["y"], place["y"] + place["h"]):
                assert (x, y) not in taken, f"{panel['title']} overlaps {taken[(x, y)]}"
                taken[(x, y)] = panel["title"]


def test_every_panel_reads_a_provisioned_datasource(dashboard: dict[str, Any]) -> None:
    sources = provisioned_datasources()

    for panel in query_panels(dashboard):
        source = panel["datasource"]
        assert source["uid"] in sources, panel["title"]
        assert source["type"] == sources[source["uid"]]["type"], panel["title"]
        assert all(target["datasource"] == source for target in panel["targets"]), panel["title"]
    assert sources["spendpipe-clickhouse"]["type"] == CLICKHOUSE_PLUGIN


def test_clickhouse_panels_query_the_views_with_the_plugins_macros(dashboard: dict[str, Any]) -> None:
    panels = clickhouse_panels(dashboard)
    assert {p["type"] for p in panels} >= {"timeseries", "table", "stat"}

    for panel in panels:
        (target,) = panel["targets"]
        sql = target["rawSql"]
        assert target["editorType"] == "sql"
        expected_format = FORMAT_TIME_SERIES if panel["type"] == "timeseries" else FORMAT_TABLE
        assert target["format"] == expected_format, panel["title"]
        read = set(re.findall(r"\bFROM\s+(\w+)", sql))
        assert read, panel["title"]
        assert read <= VIEWS, f"{panel['title']} reads {read - VIEWS}: query the views, not the tables"
        assert "$__" not in RANGE.expand(sql)
        if panel["type"] == "timeseries":
            assert "$__timeFilter(window_start)" in sql
            assert "$__timeInterval(window_start) AS time" in sql


def test_the_expander_gives_the_plugins_documented_expansions() -> None:
    # the examples of the plugin's README, for its range 1415792726..1447328726 and a 20 s interval
    assert RANGE.expand("$__timeFilter(time)") == "time >= toDateTime(1415792726) AND time <= toDateTime(1447328726)"
    assert RANGE.expand("$__fromTime, $__toTime") == "toDateTime(1415792726), toDateTime(1447328726)"
    assert RANGE.expand("$__timeInterval(column)") == "toStartOfInterval(toDateTime(column), INTERVAL 20 second)"
    assert RANGE.expand("$__interval_s") == "20"
    with pytest.raises(ValueError, match="timeFilter_ms"):
        RANGE.expand("$__timeFilter_ms(time)")


def test_budget_panels_read_the_enforcers_gauges(dashboard: dict[str, Any]) -> None:
    """Budgets are not in ClickHouse: those panels read the enforcer's gauges
    (tests/integration/test_alert_rules.py checks every name against real scrapes)."""
    prometheus = [p for p in query_panels(dashboard) if p["datasource"]["type"] == "prometheus"]

    read = {name for panel in prometheus for target in panel["targets"] for name in names_in_expression(target["expr"])}
    assert read == {
        "spendpipe_budget_spend_dollars",
        "spendpipe_budget_cap_dollars",
        "spendpipe_budget_projected_exhaustion_timestamp_seconds",
    }


def test_compose_installs_the_pinned_plugin_and_sets_what_the_datasource_reads() -> None:
    grafana = compose_config(Path("/dev/null"))["services"]["grafana"]["environment"]
    text = (DATASOURCES / "clickhouse.yml").read_text()
    (source,) = yaml.safe_load(text)["datasources"]

    assert re.fullmatch(rf"{CLICKHOUSE_PLUGIN} \d+\.\d+\.\d+", grafana["GF_INSTALL_PLUGINS"])
    pinned = grafana["GF_INSTALL_PLUGINS"].split()[1]
    # the queries say which plugin version wrote them, so it does not migrate them as older ones
    assert {t["pluginVersion"] for p in clickhouse_panels(load_dashboard()) for t in p["targets"]} == {pinned}
    assert source["jsonData"]["protocol"] == "http"
    assert set(re.findall(r"\$(\w+)", text)) <= set(grafana), "Grafana reads an unset variable"
    assert (grafana["SPENDPIPE_GRAFANA_CLICKHOUSE_HOST"], grafana["SPENDPIPE_GRAFANA_CLICKHOUSE_PORT"]) == (
        "clickhouse",
        "8123",
    )
    assert grafana["SPENDPIPE_GRAFANA_CLICKHOUSE_DATABASE"] == "spendpipe"
