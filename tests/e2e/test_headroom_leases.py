"""Headroom leases end to end (docs/leases.md): real gateway processes (the LiteLLM SDK with the
plugin, `mock_response` calls, the overshoot benchmark's worker) share one leased budget; the
aggregator and the enforcer run here on the real broker and chDB.

- Four gateways at 30 calls/s each (120/s in all, ten times the 12/s of the measured issue):
  admitted spend never passes the cap (the bound: these calls' estimate is never below their
  cost, checked below), the budget is spent to within one call per gateway, no call is refused
  before the enforcer said the headroom was all lent, and the pipeline's total equals what the
  gateways admitted.
- A busy and an idle gateway on one budget (the idle one makes one call, so it holds a slice,
  then sends nothing): the busy one spends the budget down to within a call per gateway.
"""

import asyncio
import hashlib
import os
import time
from decimal import Decimal
from pathlib import Path

import httpx
import pytest

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import litellm

from benchmarks.overshoot_calls import Call, read_calls
from benchmarks.overshoot_gateway import ANSWER, MESSAGES, MODEL
from benchmarks.overshoot_processes import Worker, running_gateways
from spendpipe.admin.budget_admin import BudgetAdmin
from spendpipe.contracts.money import cost_from_float
from spendpipe.contracts.topics import Topics
from spendpipe.gateway.leases.estimate import CallEstimator
from spendpipe.platform.clickhouse import ClickhouseSettings, ClickhouseStore
from spendpipe.platform.kafka import KafkaSettings
from tests.e2e.conftest import StartProxies
from tests.support.leases import grants, learned_estimate, leased_pipeline, scope_total, set_lease_env
from tests.support.waiting import eventually

pytestmark = pytest.mark.timeout(900)  # gateway processes warm up LiteLLM and the pipeline first


def price() -> Decimal:
    response = litellm.mock_completion(model=MODEL, messages=MESSAGES, mock_response=ANSWER)
    return cost_from_float(litellm.completion_cost(completion_response=response))


def settled_estimate(cost: Decimal) -> Decimal:
    """What a gateway reserves for the benchmark's call once it has seen one: never below the
    call's cost, so the stated bound (the calls' estimation errors) is 0 for this traffic."""
    estimator = CallEstimator(first_output_tokens=256, unpriced_reserve=Decimal("0.01"))
    response = litellm.mock_completion(model=MODEL, messages=MESSAGES, mock_response=ANSWER)
    estimator.observe(MODEL, response.usage.completion_tokens)
    estimate = estimator.estimate(MODEL, {"messages": MESSAGES})
    assert estimate >= cost
    return estimate


@pytest.fixture(autouse=True)
def lease_env(monkeypatch: pytest.MonkeyPatch) -> None:
    set_lease_env(monkeypatch)


async def run_traffic(
    workers: list[Worker], runs: list[dict[str, object]], logs: list[Path], duration: float
) -> list[Call]:
    start = time.time() + 1.0
    for n, (worker, run, log) in enumerate(zip(workers, runs, logs, strict=True)):
        worker.send({"run": 0, "start": start + n * 0.003, "duration": duration, "cap": 0, "log": str(log)} | run)
    deadline = time.monotonic() + duration * 4 + 60
    await asyncio.gather(*(asyncio.to_thread(worker.expect, "done", deadline) for worker in workers))
    return read_calls(logs)


async def ready(workers: list[Worker]) -> None:
    deadline = time.monotonic() + 240
    await asyncio.gather(*(asyncio.to_thread(worker.expect, "ready", deadline) for worker in workers))


def most_in_flight(calls: list[Call]) -> int:
    """The most admitted calls running at once (each holds its estimate until it settles)."""
    moments = sorted([(c.admitted_at, 1) for c in calls if c.admitted] + [(c.done_at, -1) for c in calls if c.admitted])
    running = most = 0
    for _, step in moments:
        running += step
        most = max(most, running)
    return most


def unlent_allowance(calls: list[Call], gateways: int, estimate: Decimal, cost: Decimal) -> Decimal:
    """What may be left unspent once refusals begin: less than a call per gateway, plus what the
    calls in flight reserve above their cost (docs/leases.md, no phantom refusal)."""
    return gateways * estimate + (estimate - cost) * most_in_flight(calls)


def timeline(calls: list[Call]) -> str:
    """Per half second of traffic: calls admitted, refused, and the slowest admission."""
    start = min(c.admitted_at for c in calls)
    buckets: dict[float, list[float]] = {}
    for call in calls:
        bucket = buckets.setdefault(int((call.admitted_at - start) * 2) / 2, [0, 0, 0.0])
        bucket[0 if call.admitted else 1] += 1
        bucket[2] = max(bucket[2], call.done_at - call.admitted_at)
    return "\n".join(
        f"{t:5.1f} s: {a:4.0f} admitted {r:4.0f} refused, slowest {s:.2f} s" for t, (a, r, s) in sorted(buckets.items())
    )


async def test_four_gateways_at_120_calls_per_second_hold_a_leased_budget(
    kafka_broker: str,
    make_topics,
    clickhouse: ClickhouseStore,
    clickhouse_settings: ClickhouseSettings,
    tmp_path: Path,
) -> None:
    topics: Topics = await make_topics(kafka_broker)
    cost = price()
    estimate = settled_estimate(cost)
    gateways, rate, duration = 4, float(os.environ.get("SPENDPIPE_TEST_LEASE_RATE", "30")), 8.0
    cap = cost * int(gateways * rate * duration * 0.6)  # reached at about 60% of the traffic
    admin = BudgetAdmin(kafka=KafkaSettings(bootstrap_servers=kafka_broker), topics=topics)
    await asyncio.to_thread(
        admin.set_many,
        [
            {"scope": "team:leased", "max_budget": str(cap), "budget_duration": "24h", "headroom_leases": True},
            {"scope": "team:canary", "max_budget": str(cost / 2)},
        ],
    )
    common = ["--bootstrap", kafka_broker, "--topics", topics.model_dump_json(), "--canary-team", "canary",
              "--rate", str(rate)]  # fmt: skip
    async with leased_pipeline(kafka_broker, topics, clickhouse, clickhouse_settings):
        with running_gateways(gateways, common, tmp_path) as workers:
            await ready(workers)
            logs = [tmp_path / f"calls-{n}.csv" for n in range(gateways)]
            calls = await run_traffic(workers, [{"leased_team": "leased"}] * gateways, logs, duration)
        print(timeline(calls))  # shown when the test fails
        admitted = [c for c in calls if c.admitted]
        spent = sum((c.cost for c in admitted), Decimal(0))
        refused = [c for c in calls if not c.admitted]
        first_refusal = min((c.done_at for c in refused), default=None)  # when the gateway refused
        sent = len(calls) / duration
        assert sent >= 0.9 * gateways * rate, f"the gateways sent {sent:.0f} calls/s"

        assert spent <= cap  # + the bound: 0 for these calls (settled_estimate)
        assert cap - spent <= unlent_allowance(calls, gateways, estimate, cost)
        assert refused, "traffic ran past the cap"
        exhausted = [g.issued_at.timestamp() for g in await grants(kafka_broker, topics) if g.free < estimate]
        assert first_refusal is not None
        assert exhausted
        assert first_refusal >= min(exhausted), "a call was refused while the enforcer had headroom free"
        await eventually(
            lambda: scope_total(clickhouse, "team:leased"),
            lambda total: total == spent,
            within=60,
            what="the pipeline's total",
        )


async def test_a_busy_gateway_is_not_starved_by_an_idle_ones_slice(
    kafka_broker: str,
    make_topics,
    clickhouse: ClickhouseStore,
    clickhouse_settings: ClickhouseSettings,
    tmp_path: Path,
) -> None:
    topics: Topics = await make_topics(kafka_broker)
    cost = price()
    estimate = settled_estimate(cost)
    rate, duration = 20.0, 12.0
    cap = cost * int(rate * duration * 0.6)
    admin = BudgetAdmin(kafka=KafkaSettings(bootstrap_servers=kafka_broker), topics=topics)
    await asyncio.to_thread(
        admin.set_many,
        [
            {"scope": "team:shared", "max_budget": str(cap), "budget_duration": "24h", "headroom_leases": True},
            {"scope": "team:canary", "max_budget": str(cost / 2)},
        ],
    )
    common = ["--bootstrap", kafka_broker, "--topics", topics.model_dump_json(), "--canary-team", "canary",
              "--rate", str(rate)]  # fmt: skip
    async with leased_pipeline(kafka_broker, topics, clickhouse, clickhouse_settings):
        with running_gateways(2, common, tmp_path) as workers:
            await ready(workers)
            logs = [tmp_path / "busy.csv", tmp_path / "idle.csv"]
            runs: list[dict[str, object]] = [
                {"leased_team": "shared", "rate": rate},
                {"leased_team": "shared", "rate": 1.0, "duration": 1.0},  # one call: it holds a slice, then idles
            ]
            calls = await run_traffic(workers, runs, logs, duration)
        print(timeline(calls))  # shown when the test fails
        busy = read_calls(logs[:1])
        idle = read_calls(logs[1:])
        spent = sum((c.cost for c in busy + idle if c.admitted), Decimal(0))
        assert all(c.admitted for c in idle)
        assert spent <= cap
        assert cap - spent <= unlent_allowance(busy + idle, 2, estimate, cost)  # the idle one's slice came back
        await eventually(
            lambda: scope_total(clickhouse, "team:shared"),
            lambda total: total == spent,
            within=60,
            what="the pipeline's total",
        )


async def test_two_proxies_hold_a_leased_key_budget(
    start_proxies: StartProxies,
    kafka_broker: str,
    clickhouse: ClickhouseStore,
    clickhouse_settings: ClickhouseSettings,
) -> None:
    """The proxy's pre-call hook reserves from its lease: requests alternate between two proxies
    until both refuse, with LiteLLM's budget error; the spend passes the cap by at most one call's
    estimation error per proxy and stops short of it by less than a call per proxy."""
    key = "sk-leased-key-0123456789"
    proxies = await start_proxies({key: ("alice", "search")}, count=2, models=("gpt-4o",))
    topics = proxies[0].topics
    messages = [{"role": "user", "content": "hello"}]
    body = {"model": "gpt-4o", "messages": messages}
    key_scope = f"key:{hashlib.sha256(key.encode()).hexdigest()}"
    admin = BudgetAdmin(kafka=KafkaSettings(bootstrap_servers=kafka_broker), topics=topics)
    cap = Decimal("0.01")  # about 44 calls; a gateway's first call reserves 256 output tokens ($0.0026)
    budget = {"scope": key_scope, "max_budget": str(cap), "budget_duration": "24h", "headroom_leases": True}
    await asyncio.to_thread(admin.set, budget)
    spent, costs, refused = Decimal(0), set[Decimal](), dict[int, httpx.Response]()
    async with (
        leased_pipeline(kafka_broker, topics, clickhouse, clickhouse_settings),
        httpx.AsyncClient(timeout=60) as http,
    ):
        deadline = time.monotonic() + 240
        n = 0
        while len(refused) < 2 and time.monotonic() < deadline:
            which, n = n % 2, n + 1
            response = await http.post(
                f"{proxies[which].url}/chat/completions", headers={"Authorization": f"Bearer {key}"}, json=body
            )
            if response.status_code == 200:
                assert not refused, "a proxy served after the other had refused"
                cost = cost_from_float(float(response.headers["x-litellm-response-cost"]))
                spent += cost
                costs.add(cost)
            else:
                refused.setdefault(which, response)
        assert sorted(refused) == [0, 1], f"refusals: {refused}; spent {spent} of {cap}"
        (cost,) = costs  # every call is the same mock call
        estimate = learned_estimate("gpt-4o", messages, "x")
        error = max(Decimal(0), cost - estimate)
        assert spent <= cap + 2 * error
        assert cap - spent < 2 * max(cost, estimate)
        for response in refused.values():
            assert response.status_code == litellm.budget_exceeded_status_code, response.text
            assert "headroom lease" in response.json()["error"]["message"]
        await eventually(
            lambda: scope_total(clickhouse, key_scope),
            lambda total: total == spent,
            within=60,
            what="the pipeline's total",
        )
