"""The Grafana dashboards as data, and the ClickHouse datasource's macros expanded as the plugin
expands them, so a test can run a panel's SQL exactly as Grafana would send it.

The expansions are those of the official plugin (grafana-clickhouse-datasource, the version
compose pins; `pkg/macros/macros.go`), for a fixed time range and interval:

    $__timeFilter(col)    col >= toDateTime(<from, Unix s>) AND col <= toDateTime(<to, Unix s>)
    $__fromTime           toDateTime(<from, Unix s>)
    $__toTime             toDateTime(<to, Unix s>)
    $__timeInterval(col)  toStartOfInterval(toDateTime(col), INTERVAL <interval, s, at least 1> second)
    $__interval_s         <interval, s, at least 1>

Grafana computes the interval from the range and the panel's width; a test names it. Any other
`$__` macro is refused, so a panel that starts using one fails until it is added here.
"""

import json
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from tests.support.deploy import REPO

GRAFANA = REPO / "deploy" / "grafana"
SPEND_DASHBOARD = GRAFANA / "dashboards" / "spend.json"
DATASOURCES = GRAFANA / "provisioning" / "datasources"
CLICKHOUSE_PLUGIN = "grafana-clickhouse-datasource"
FORMAT_TIME_SERIES, FORMAT_TABLE = 0, 1
"""The plugin's `format` of a query (sqlds' numbering): a time series frame or a table."""

_MACRO = re.compile(r"\$__(\w+)\b(?:\(([^()]*)\))?")


@dataclass(frozen=True)
class TimeRange:
    """The dashboard's time range and the interval Grafana derived from it, as the plugin gets them."""

    start: datetime
    end: datetime
    interval: timedelta

    def expand(self, sql: str) -> str:
        """`sql` with every macro replaced; `ValueError` for a macro the plugin expands otherwise."""
        return _MACRO.sub(lambda match: self._macro(match[1], match[2]), sql)

    def _macro(self, name: str, argument: str | None) -> str:
        start, end = f"toDateTime({int(self.start.timestamp())})", f"toDateTime({int(self.end.timestamp())})"
        seconds = max(int(self.interval.total_seconds()), 1)
        if name in ("fromTime", "toTime", "interval_s") and argument is None:
            return {"fromTime": start, "toTime": end, "interval_s": str(seconds)}[name]
        if name == "timeFilter" and argument:
            return f"{argument} >= {start} AND {argument} <= {end}"
        if name == "timeInterval" and argument:
            return f"toStartOfInterval(toDateTime({argument}), INTERVAL {seconds} second)"
        raise ValueError(f"$__{name}({argument or ''}) is not expanded here (tests/support/grafana.py)")


def load_dashboard(path: Path = SPEND_DASHBOARD) -> dict[str, Any]:
    return dict(json.loads(path.read_text()))


def query_panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    """Every panel but the rows, which only group."""
    return [panel for panel in dashboard["panels"] if panel["type"] != "row"]


def clickhouse_panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for p in query_panels(dashboard) if p["datasource"]["type"] == CLICKHOUSE_PLUGIN]


def provisioned_datasources() -> dict[str, dict[str, Any]]:
    """{uid: datasource} of every provisioning file."""
    found: dict[str, dict[str, Any]] = {}
    for path in sorted(DATASOURCES.glob("*.yml")):
        found |= {source["uid"]: source for source in yaml.safe_load(path.read_text())["datasources"]}
    return found
