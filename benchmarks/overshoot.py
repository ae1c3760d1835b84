"""Overshoot, side by side: four gateway processes (LiteLLM SDK, spendpipe plugin) share one $
budget on one team and each sends `mock_response` calls at a fixed rate; the same traffic also
goes to a second team whose budget of the same cap sets `headroom_leases` (docs/leases.md), so
pipeline-lag budgets and leased budgets are measured side by side; `spendpipe run all`,
its own process, enforces it. Measured: the spend admitted past the cap (all admitted spend minus
the cap, once the traffic is done), in dollars and in seconds of traffic (divided by the rate the
four gateways' spend flowed at until the cap), median and worst over repeated runs. In the same
runs the same four processes send the same traffic gated by LiteLLM's own `BudgetManager` in its
local mode, one per process as its documentation shows, each knowing only its own spend: each
admits up to the full cap. Goals: leased budgets overshoot by nothing when the calls' estimates
are never below their cost (docs/architecture.md: one call's estimation error per gateway);
budgets without leases by at most about one second of traffic.

Also written to benchmarks/results/: the chart (overshoot-<stamp>.png) and every call
(overshoot-<stamp>.csv). `python -m benchmarks.overshoot` runs it alone on a throwaway broker.
"""

import asyncio
import math
import os
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # LiteLLM must not reach the internet

import litellm

from benchmarks.overshoot_calls import Outcome, outcome, read_calls
from benchmarks.overshoot_gateway import ANSWER, MESSAGES, MODEL
from benchmarks.overshoot_processes import Worker, running_gateways, running_pipeline
from benchmarks.overshoot_report import SYSTEMS, blocks_decided, report
from dev.local_kafka import throwaway_broker
from spendpipe.admin.budget_admin import BudgetAdmin
from spendpipe.contracts.topics import Topics
from spendpipe.platform.kafka import KafkaSettings
from spendpipe.platform.kafka_topics import ensure_topics, topic_specs

GATEWAYS = 4
RATE = 5.0
"""Calls per second each gateway sends under each system: 20/s for each system in all, 40/s of
LiteLLM mock calls. At twice that, four gateways on 2 shared cores fall behind their schedule
(a mock call costs LiteLLM about 6 ms of CPU before any callback). Overshoot in seconds of
traffic does not depend on the rate while the pipeline keeps up; in dollars it scales with it."""
CAP_AFTER_S = 10.0
"""The shared cap is reached this long into a run. A local BudgetManager, seeing a quarter of the
traffic, reaches it four times later: a run lasts long enough for all four to stop admitting."""
DURATION_S = CAP_AFTER_S * GATEWAYS + 4.0
READY_S = 240.0


def cost_per_call() -> Decimal:
    """Every call is the same mock call, with the same price (LiteLLM's packaged price map)."""
    response = litellm.mock_completion(model=MODEL, messages=MESSAGES, mock_response=ANSWER)
    return Decimal(repr(litellm.completion_cost(completion_response=response)))


def prepare(bootstrap: str, suffix: str, cap: Decimal, canary_cap: Decimal, runs: int) -> tuple[Topics, list[str]]:
    """uuid topics, and every run's budget set before the pipeline starts (it reads them all at
    start-up); the canary team is blocked by its first call, which shows the pipeline is live."""
    names = (
        "events", "events_dead_letter", "flushes", "decisions", "budgets", "declared_budgets", "alerts",
        "lease_requests", "leases",
    )  # fmt: skip
    topics = Topics(**{name: f"overshoot-{name.replace('_', '-')}-{suffix}" for name in names})
    asyncio.run(
        ensure_topics(KafkaSettings(bootstrap_servers=bootstrap), topic_specs(topics, partitions=3, replication=1))
    )
    teams = [f"overshoot-{suffix}-{run}" for run in range(runs)]
    BudgetAdmin(kafka=KafkaSettings(bootstrap_servers=bootstrap), topics=topics).set_many(
        [{"scope": f"team:{team}", "max_budget": str(cap), "budget_duration": "24h"} for team in teams]
        + [
            {"scope": f"team:{team}-leased", "max_budget": str(cap), "budget_duration": "24h", "headroom_leases": True}
            for team in teams
        ]
        + [{"scope": f"team:canary-{suffix}", "max_budget": str(canary_cap)}]
    )
    return topics, teams


@dataclass(frozen=True)
class Measured:
    start: float
    outcomes: dict[str, Outcome]
    raw: list[str]
    """Every call's log line, prefixed with the run and the gateway."""


def one_run(workers: list[Worker], run: int, team: str, suffix: str, cap: Decimal) -> Measured:
    """All gateways start together, each offset by a fraction of a period so that the aggregate
    traffic is evenly spaced."""
    start = time.time() + 1.0
    logs = [worker.directory / f"run-{run}.csv" for worker in workers]
    for n, (worker, log) in enumerate(zip(workers, logs, strict=True)):
        worker.send(
            {"run": run, "start": start + n / (GATEWAYS * RATE), "duration": DURATION_S, "team": team,
             "leased_team": f"{team}-leased", "user": f"bm-{suffix}-{run}", "cap": float(cap), "log": str(log)}
        )  # fmt: skip
    deadline = time.monotonic() + DURATION_S * 3
    for worker in workers:
        worker.expect("done", deadline)
    calls = read_calls(logs)
    return Measured(
        start=start,
        outcomes={
            system: outcome([c for c in calls if c.system == system], cap=cap, start=start) for system in SYSTEMS
        },
        raw=[f"{run},{n},{line}" for n, log in enumerate(logs) for line in log.read_text().splitlines()[1:]],
    )


def progress(began: float, message: str) -> None:
    print(f"overshoot: {time.monotonic() - began:5.0f} s: {message}", file=sys.stderr, flush=True)


def run(bootstrap: str, workdir: Path, runs: int | None = None) -> list[dict[str, Any]]:
    runs = runs or int(os.environ.get("SPENDPIPE_BENCH_OVERSHOOT_RUNS", "2"))
    began = time.monotonic()
    price = cost_per_call()
    cap = (price * Decimal(int(GATEWAYS * RATE * CAP_AFTER_S))).normalize()
    suffix = uuid.uuid4().hex[:8]
    base = workdir / f"overshoot-{suffix}"
    base.mkdir(parents=True)
    topics, teams = prepare(bootstrap, suffix, cap, price / 2, runs)
    common = ["--bootstrap", bootstrap, "--topics", topics.model_dump_json(),
              "--canary-team", f"canary-{suffix}", "--rate", str(RATE)]  # fmt: skip
    measured: list[Measured] = []
    with running_pipeline(bootstrap, topics, base) as pipeline, running_gateways(GATEWAYS, common, base) as workers:
        deadline = time.monotonic() + READY_S
        for worker in workers:
            worker.expect("ready", deadline)
        progress(began, f"{GATEWAYS} gateways ready, pipeline live; {runs} runs of {DURATION_S:.0f} s")
        for n, team in enumerate(teams):
            if pipeline.poll() is not None:
                raise RuntimeError(f"spendpipe run all exited with {pipeline.returncode}; see {base / 'pipeline.log'}")
            measured.append(one_run(workers, n, team, suffix, cap))
            progress(began, f"run {n + 1}/{runs} done")
    progress(began, "gateways and pipeline stopped")
    decided = asyncio.run(blocks_decided(KafkaSettings(bootstrap_servers=bootstrap), topics.decisions))
    return report(
        {system: [m.outcomes[system] for m in measured] for system in SYSTEMS},
        cap=cap,
        decided=[decided.get(f"team:{team}", math.nan) - m.start for team, m in zip(teams, measured, strict=True)],
        raw=[line for m in measured for line in m.raw],
        scenario=f"{GATEWAYS} gateways x {RATE:g} calls/s",
    )


if __name__ == "__main__":
    from benchmarks.__main__ import signing_keys, table

    signing_keys()
    with throwaway_broker(prefix="spendpipe-bench-kafka-") as kafka, tempfile.TemporaryDirectory() as work:
        print(table(run(kafka, Path(work))))
