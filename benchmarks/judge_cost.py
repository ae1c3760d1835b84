"""What the enforcer needs per flush as deployments grow: the time `Enforcer.judge_scopes` takes
to measure and decide the scopes one flush announces, for announcements of 10 to 5,000 scopes,
each scope with a daily budget, on a store that holds the totals of 100,000 events over 5,000
keys (and their users, teams, orgs and end customers). Beside it, in the same run and on the
same scopes, the floor: one plain query reading those scopes' day rows from `spend_totals`.

The enforcer judges what each flush announces, so this is the time a flush of that many
distinct scopes costs the enforcer: the sizing in docs/performance.md divides it by the flush
interval to say how many aggregators' announcements one enforcer keeps up with.

`python -m benchmarks.judge_cost` prints the rows as JSON; `make bench` runs it in a process of
its own (chDB holds one engine directory per process).
"""

import time
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

from benchmarks.own_process import print_rows_on_a_store, rows_of
from benchmarks.stats import median
from benchmarks.traffic import spread_event
from spendpipe.aggregator.store import SourceRecord, SpendStore
from spendpipe.aggregator.writer import BatchWriter
from spendpipe.contracts.budgets import Budget
from spendpipe.contracts.scopes import Scope, ScopeType
from spendpipe.enforcer.enforcer import Enforcer
from spendpipe.enforcer.rate_reader import RateReader
from spendpipe.enforcer.targets import BudgetBook
from spendpipe.platform.clickhouse import ClickhouseStore
from spendpipe.store.totals import SpendTotals

TOPIC = "spend.events"
EVENTS = 100_000
KEYS = 5_000
ANNOUNCED = (10, 100, 1_000, 5_000)
REPEATS = 5


def _load(clickhouse: ClickhouseStore) -> list[Scope]:
    """Write the events through the aggregator's writer; the key scopes they name."""
    now = time.time()
    writer = BatchWriter(store=SpendStore(clickhouse=clickhouse), topic=TOPIC, dedup_horizon_s=600)
    records = [
        SourceRecord(
            0,
            n,
            spread_event(
                n, event_id=str(uuid.uuid4()), occurred_at=now, keys=KEYS, users=1_000, teams=50, gateway_id="bench"
            ).to_json(),
        )
        for n in range(EVENTS)
    ]
    writer.write(records)
    return [Scope(ScopeType.KEY, f"{n:064x}") for n in range(KEYS)]


def _floor(clickhouse: ClickhouseStore, scopes: list[Scope]) -> float:
    started = time.perf_counter()
    clickhouse.rows(
        "SELECT scope_id, sum(spend) FROM spend_totals WHERE window = 'day' AND scope_type = 'key' "
        "AND scope_id IN {ids:Array(String)} GROUP BY scope_id",
        {"ids": [scope.id for scope in scopes]},
    )
    return time.perf_counter() - started


def measure(clickhouse: ClickhouseStore) -> dict[int, tuple[list[float], list[float]]]:
    """Seconds per judgement and per floor query, by the number of scopes announced."""
    scopes = _load(clickhouse)
    book = BudgetBook()
    for scope in scopes:
        book.put(Budget(scope=str(scope), max_budget=Decimal("1000"), budget_duration="1d"))
    enforcer = Enforcer(
        book=book, reader=SpendTotals(sql=clickhouse), rates=RateReader(clickhouse=clickhouse), clock=time.time
    )
    enforcer.judge_scopes(scopes[:10])  # warm
    seconds: dict[int, tuple[list[float], list[float]]] = {}
    for count in ANNOUNCED:
        judged, floor = [], []
        for n in range(REPEATS):
            announced = scopes[(n * count) % KEYS :][:count] or scopes[:count]
            started = time.perf_counter()
            result = enforcer.judge_scopes(announced)
            judged.append(time.perf_counter() - started)
            if len(result.targets) != len(announced):
                raise RuntimeError(f"{len(result.targets)} targets judged for {len(announced)} scopes")
            floor.append(_floor(clickhouse, announced))
        seconds[count] = (judged, floor)
    return seconds


def rows(seconds: dict[int, tuple[list[float], list[float]]]) -> list[dict[str, Any]]:
    out = []
    for count, (judged, floor) in seconds.items():
        p50, base = median(judged), median(floor)
        out.append(
            {
                "benchmark": f"enforcer: judge a flush announcing {count:,} scopes with budgets "
                f"(median of {len(judged)})",
                "unit": "ms",
                "p50": p50 * 1000,
                "p99": max(judged) * 1000,
                "goal": "beside the floor",
                "met": None,
                "note": f"{p50 / count * 1e6:,.0f} µs a scope; floor (one query of the same scopes' day rows) "
                f"in the same run: median {base * 1000:,.1f} ms ({p50 / base:.1f}x)",
            }
        )
    return out


def run(workdir: Path) -> list[dict[str, Any]]:
    """In a process of its own (see the module's docstring)."""
    return rows_of("benchmarks.judge_cost", str(workdir / "judge"))


def main() -> None:
    print_rows_on_a_store("judge", lambda clickhouse: rows(measure(clickhouse)))


if __name__ == "__main__":
    main()
