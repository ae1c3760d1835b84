"""Prometheus's side of the tests: scrapes of a real /metrics kept as snapshots, turned into
promtool `input_series`; the metric names a rule file or a dashboard uses; running promtool."""

import math
import re
import shutil
import subprocess
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.support.deploy import REPO
from tests.support.ops import get

ALERTS = REPO / "deploy" / "prometheus" / "alerts.yml"
ALERTS_TEST = REPO / "deploy" / "prometheus" / "alerts_test.yml"
DASHBOARD = REPO / "deploy" / "grafana" / "dashboards" / "pipeline-health.json"
_METRIC_NAME = re.compile(r"\bspendpipe_[a-z0-9_]+\b")
_LABEL_REFERENCE = re.compile(r"\{\{ \$labels\.([a-zA-Z_][a-zA-Z0-9_]*) \}\}")
_SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "summary": ("_sum", "_count")}

SeriesKey = tuple[str, tuple[tuple[str, str], ...]]
"""(sample name, sorted labels)."""


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    """Run promtool (the venv's, as `make` installs it, else the one on PATH)."""
    binary = REPO / ".venv" / "bin" / "promtool"
    found = str(binary) if binary.exists() else shutil.which("promtool")
    if found is None:
        raise RuntimeError("promtool is not installed: `make .venv/bin/promtool` (dev/install-promtool.sh)")
    return subprocess.run([found, *args], capture_output=True, text=True, timeout=60, check=False)


def names_in_expression(expression: str) -> set[str]:
    """The spendpipe metric names a PromQL expression reads (every metric of ours starts so)."""
    return set(_METRIC_NAME.findall(expression))


def alert_rules(path: Path = ALERTS) -> dict[str, dict[str, Any]]:
    """{alert name: rule} of a rule file."""
    document = yaml.safe_load(path.read_text())
    return {rule["alert"]: rule for group in document["groups"] for rule in group["rules"]}


def rule_expressions(path: Path = ALERTS) -> dict[str, str]:
    """{alert name: expression} of a rule file."""
    return {name: rule["expr"] for name, rule in alert_rules(path).items()}


def firing(alert: str, labels: Mapping[str, str], path: Path = ALERTS) -> dict[str, Any]:
    """promtool's `exp_alerts` entry for `alert` firing on a series with `labels`: the rule's
    labels added, its annotations rendered (they may only use `{{ $labels.name }}`), and empty
    labels left out, as Prometheus drops them."""
    rule = alert_rules(path)[alert]
    every = {**labels, **rule.get("labels", {})}
    return {
        "exp_labels": {name: value for name, value in every.items() if value},
        "exp_annotations": {name: render(text, every) for name, text in rule.get("annotations", {}).items()},
    }


def render(template: str, labels: Mapping[str, str]) -> str:
    text = _LABEL_REFERENCE.sub(lambda match: labels.get(match[1], ""), template)
    assert "{{" not in text, f"an annotation may only use {{{{ $labels.name }}}}: {template!r}"
    return text


@dataclass(frozen=True)
class Scrape:
    """One scrape of a /metrics endpoint: every spendpipe sample, with the labels Prometheus
    adds (job, instance), when it was taken, and every name the exposition declares (a labelled
    metric with no series yet has its HELP and TYPE lines but no sample)."""

    samples: dict[SeriesKey, float]
    names: frozenset[str]
    at: float

    def total(self, name: str) -> float | None:
        """The sum of the samples called `name`, whatever their labels; None when there is none."""
        found = [value for (sample, _), value in self.samples.items() if sample == name]
        return sum(found) if found else None


def scrape(base_url: str, **target_labels: str) -> Scrape:
    """`at` is taken before the request: a moment stamped after the page was rendered but before
    its answer arrived is not in this scrape, and stamped after it, would be placed in it
    (`Recording._on_promtool_clock`): a flush counted just after a scrape then looked one held
    stretch older than it was, and a staleness alert fired in a healthy state."""
    at = time.time()
    status, text = get(f"{base_url}/metrics")
    assert status == 200, text
    samples: dict[SeriesKey, float] = {}
    names = set()
    for family in text_string_to_metric_families(text):
        if not family.name.startswith("spendpipe_"):
            continue
        names |= {family.name + suffix for suffix in _SUFFIXES.get(family.type, ("",))}
        for sample in family.samples:
            if sample.name.endswith("_created"):
                continue
            names.add(sample.name)
            samples[(sample.name, tuple(sorted({**sample.labels, **target_labels}.items())))] = sample.value
    return Scrape(samples=samples, names=frozenset(names), at=at)


@dataclass
class Recording:
    """Scrapes of one target over time; each is held for some minutes of promtool's clock,
    one sample a minute, from minute 0 on. A gauge in Unix seconds (`*_timestamp_seconds`) is
    moved to promtool's clock: a moment is placed before the first scrape taken after it, as
    old as it was then (0, "never", stays 0), so a value that does not change between scrapes
    stays one moment."""

    scrapes: list[tuple[Scrape, int]] = field(default_factory=list)

    def hold(self, taken: Scrape, minutes: int) -> int:
        """Add a scrape; returns the minute it starts at."""
        start = self.minutes
        self.scrapes.append((taken, minutes))
        return start

    @property
    def minutes(self) -> int:
        return sum(minutes for _, minutes in self.scrapes)

    def input_series(self, names: set[str]) -> list[dict[str, str]]:
        """promtool `input_series` of the samples whose name is in `names`; a series missing
        from a scrape is `_` (no sample) for that stretch."""
        keys = sorted({key for taken, _ in self.scrapes for key in taken.samples if key[0] in names})
        series = []
        for key in keys:
            values: list[tuple[str, int]] = []  # (value, how many samples)
            for taken, minutes in self.scrapes:
                value = taken.samples.get(key)
                if value is not None and key[0].endswith("_timestamp_seconds") and value:
                    value = math.floor(self._on_promtool_clock(value))
                text = _number(value)
                if values and values[-1][0] == text:
                    values[-1] = (text, values[-1][1] + minutes)
                else:
                    values.append((text, minutes))
            # promtool's expanding notation: `5x3` is 5 four times
            notation = " ".join(text if count == 1 else f"{text}x{count - 1}" for text, count in values)
            series.append({"series": series_text(key), "values": notation})
        return series

    def _on_promtool_clock(self, moment: float) -> float:
        start = 0
        for taken, minutes in self.scrapes:
            if taken.at >= moment:
                return start * 60 - (taken.at - moment)
            start += minutes
        # after every scrape's start, so in the last one's page: stamped while it was being asked for
        return (start - self.scrapes[-1][1]) * 60


def series_text(key: SeriesKey) -> str:
    name, labels = key
    inner = ",".join(f'{label}="{_escape(value)}"' for label, value in labels)
    return f"{name}{{{inner}}}"


def rules_test(
    rule_file: Path, recordings: Sequence[Recording], expectations: Iterable[Mapping[str, Any]], names: set[str]
) -> dict[str, Any]:
    """A promtool rule-test document: the recordings' series (only `names`) and the alerts
    expected at each evaluation time (`{"eval_time": "12m", "alertname": ..., "exp_alerts": [...]}`)."""
    return {
        "rule_files": [str(rule_file)],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": [s for recording in recordings for s in recording.input_series(names)],
                "alert_rule_test": list(expectations),
            }
        ],
    }


def _number(value: float | None) -> str:
    if value is None:
        return "_"
    return repr(int(value)) if value == int(value) else repr(value)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
