"""`make bench`: run the benchmarks against a real local Kafka broker (warmed up first:
benchmarks/warm_broker.py) and the embedded ClickHouse engine, print one markdown table, and
write it with the raw rows under benchmarks/results/ (ignored by git).

Covered: the plugin's request-path overhead, SDK calls/s with and without the plugin, LiteLLM
proxy calls/s with and without it, the aggregator's throughput, storage per event after merges,
the cost of fencing a flush, several aggregators in one process beside one, enforcement
latency, overshoot side by side with LiteLLM's BudgetManager, and the broker's CPU per produce
request from a gateway (for sizing). The goals and figures:
docs/architecture.md#performance-goals and docs/performance.md.
"""

import json
import os
import sys

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # LiteLLM must not reach the internet

import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks import (
    aggregator_throughput,
    broker_requests,
    enforcement_latency,
    fencing_cost,
    fleet_throughput,
    judge_cost,
    overshoot,
    plugin_overhead,
    proxy_ratio,
    sdk_ratio,
    storage,
)
from benchmarks.warm_broker import warm_broker, warm_up_row
from spendpipe.contracts.signatures import ROLES
from spendpipe.platform.signing import raw_key_pair

RESULTS = Path(__file__).resolve().parent / "results"


def table(rows: list[dict[str, Any]]) -> str:
    lines = [
        f"spendpipe benchmarks — {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores",
        "",
        "| benchmark | unit | p50 / median | p99 / worst run | goal | met | note |",
        "|---|---|---:|---:|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row['benchmark']} | {row['unit']} | {row['p50']:,.1f} | {row['p99']:,.1f} | {row['goal']} | "
            f"{_met(row['met'])} | {row.get('note', '')} |"
        )
    return "\n".join(lines)


def _met(met: bool | None) -> str:
    """None: the benchmark has no goal (storage)."""
    return "n/a" if met is None else "yes" if met else "NO"


def signing_keys() -> None:
    """One writer key for every process the benchmarks start, accepted for every writer role."""
    if "SPENDPIPE_SIGNING__PRIVATE_KEY" not in os.environ:
        private, public = raw_key_pair()
        os.environ["SPENDPIPE_SIGNING__PRIVATE_KEY"] = private
        os.environ["SPENDPIPE_SIGNING__PUBLIC_KEYS"] = json.dumps({role: [public] for role in ROLES})


def main() -> int:
    events = int(os.environ.get("SPENDPIPE_BENCH_EVENTS", "1000000"))
    signing_keys()
    rows: list[dict[str, Any]] = []
    with (
        warm_broker() as (bootstrap, warmed),
        tempfile.TemporaryDirectory(prefix="spendpipe-bench-") as work,
    ):
        rows.append(warm_up_row(warmed))
        rows += plugin_overhead.run(bootstrap, Path(work))
        rows += sdk_ratio.run(bootstrap, Path(work))
        rows += proxy_ratio.run(bootstrap, Path(work))
        rows += aggregator_throughput.run(bootstrap, Path(work), events)
        # the store that benchmark filled: chDB opens one engine directory per process
        rows += storage.run(bootstrap, Path(work), clickhouse_dir=Path(work) / "run-0" / "clickhouse")
        rows += fencing_cost.run(Path(work))
        rows += fleet_throughput.run(bootstrap, Path(work), min(events, 200_000))
        rows += judge_cost.run(Path(work))
        rows += enforcement_latency.run(bootstrap, Path(work))
        rows += overshoot.run(bootstrap, Path(work))
        rows += broker_requests.run(Path(work))  # on a broker of its own
    report = table(rows)
    print(report)
    RESULTS.mkdir(exist_ok=True)
    stamp = f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}"
    (RESULTS / f"{stamp}.md").write_text(report + "\n")
    (RESULTS / f"{stamp}.json").write_text(json.dumps(rows, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
