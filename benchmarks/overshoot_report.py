"""The overshoot benchmark's output: table rows, the chart and every call under
benchmarks/results/, and when the enforcer decided each block (read back from the decisions topic,
to tell the pipeline's share of the delay from the gateways')."""

import math
import statistics
from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from benchmarks import overshoot_chart
from benchmarks.overshoot_calls import Outcome
from spendpipe.contracts.decisions import Decision
from spendpipe.platform.compacted import TopicRecord, read_to_end
from spendpipe.platform.kafka import KafkaSettings

RESULTS = Path(__file__).resolve().parent / "results"
SYSTEMS = {
    "spendpipe": "spendpipe (one shared budget)",
    "leased": "spendpipe with headroom leases",
    "budget_manager": "LiteLLM BudgetManager (local, per process)",
}
GOALS = {"spendpipe": "≤ ~1 s of traffic", "leased": "0: the estimate of these calls is never below their cost"}
CSV_HEADER = "run,gateway,system,admitted_at,done_at,cost,admitted"


async def blocks_decided(kafka: KafkaSettings, topic: str) -> dict[str, float]:
    """{scope: when the enforcer decided its first block (epoch seconds)}."""
    decided: dict[str, float] = {}

    def remember(record: TopicRecord) -> None:
        if record.value is not None:
            decision = Decision.model_validate_json(record.value)
            if decision.blocked:
                decided.setdefault(decision.scope, decision.decided_at.timestamp())

    await read_to_end(kafka=kafka, topic=topic, on_record=remember)
    return decided


def report(
    outcomes: dict[str, list[Outcome]], *, cap: Decimal, decided: list[float], raw: list[str], scenario: str
) -> list[dict[str, Any]]:
    """`decided`: per run, seconds into it at which the enforcer decided the block (NaN: never)."""
    stamp = f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}"
    RESULTS.mkdir(exist_ok=True)
    chart = RESULTS / f"overshoot-{stamp}.png"
    count = len(outcomes["spendpipe"])
    overshoot_chart.draw(
        {f"{SYSTEMS[system]}: {headline(runs)}": [o.curve for o in runs] for system, runs in outcomes.items()},
        cap=float(cap),
        title=f"{scenario}, one ${cap} budget; {count} runs",
        path=chart,
    )
    (RESULTS / f"overshoot-{stamp}.csv").write_text("\n".join([CSV_HEADER, *raw]) + "\n")
    ours, leased, theirs = outcomes["spendpipe"], outcomes["leased"], outcomes["budget_manager"]
    shown = chart.relative_to(RESULTS.parents[1])
    return [
        row("spendpipe", ours, f"{timeline(ours, decided)}; {dollars(theirs)} for BudgetManager; chart {shown}", cap),
        row("leased", leased, f"{timeline(leased, [math.nan] * count)}; {dollars(ours)} without leases", cap),
        row("budget_manager", theirs, f"{timeline(theirs, [math.nan] * count)}; {dollars(ours)} for spendpipe", cap),
    ]


def row(system: str, runs: list[Outcome], note: str, cap: Decimal) -> dict[str, Any]:
    seconds = [o.seconds_past_cap for o in runs]
    return {
        "benchmark": f"overshoot: 4 gateways, one ${cap} budget — {SYSTEMS[system]}",
        "unit": "s of traffic past cap",
        "p50": statistics.median(seconds),
        "p99": max(seconds),
        "goal": GOALS.get(system, "none: the comparison"),
        "met": max(seconds) <= 1.0 if system == "spendpipe" else (max(seconds) == 0 if system == "leased" else None),
        "note": f"{dollars(runs)}; {note}; {len(runs)} runs",
    }


def dollars(runs: list[Outcome]) -> str:
    past = sorted(o.past_cap for o in runs)
    seconds = statistics.median(o.seconds_past_cap for o in runs)
    rate = statistics.median(o.dollars_per_s for o in runs)
    return (
        f"${statistics.median(past):.6f} past cap (worst ${past[-1]:.6f}) = {seconds:.2f} s of traffic at ${rate:.6f}/s"
    )


def headline(runs: list[Outcome]) -> str:
    past = statistics.median(o.past_cap for o in runs)
    return f"${past:.5f} past cap = {statistics.median(o.seconds_past_cap for o in runs):.1f} s of traffic (median)"


def timeline(runs: list[Outcome], decided: list[float]) -> str:
    """Median seconds: when the cap was crossed, and how long after that the block was decided,
    the gateways refused, and the last call was admitted."""

    def after(moments: Sequence[float | None]) -> str:
        gaps = [
            m - o.crossed_at
            for m, o in zip(moments, runs, strict=True)
            if m is not None and not math.isnan(m) and o.crossed_at is not None
        ]
        return f"{statistics.median(gaps):+.2f} s" if gaps else "never"

    crossed = [o.crossed_at for o in runs if o.crossed_at is not None]
    parts = [f"cap crossed at {statistics.median(crossed):.1f} s" if crossed else "cap not crossed"]
    if not all(math.isnan(d) for d in decided):
        parts.append(f"block decided {after(decided)}")
    parts.append(f"first refusal {after([o.first_refused_at for o in runs])}")
    parts.append(f"last admission {after([o.last_admitted_at for o in runs])}")
    return ", ".join(parts)
