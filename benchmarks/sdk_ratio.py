"""Calls/s of LiteLLM SDK calls with the gateway plugin against the same calls without it, in one
process and one run. Goal (docs/architecture.md#performance-goals): with the plugin >= 0.95x the
calls/s without it.

The call is `litellm.acompletion` with a `mock_response` (no network), attributed as the README's
SDK example does; with the plugin each call is preceded by `check()` (that example leaves the
check to LiteLLM's pre-call hook, which `acompletion` runs).
Each sample makes `CALLS` calls, sequentially or from `CONCURRENCY` tasks at once, and its clock
stops only once LiteLLM's logging worker has run every callback and, with the plugin, once the
publisher has delivered every event (`wait_idle`): whatever the plugin costs, in any thread, is
paid inside its own sample. Samples come in pairs, without and with the plugin, their order
alternating pair by pair, so the machine's drift falls on both sides; the ratio is taken per pair
and its median and spread reported. A third sample per pair runs a callback that does nothing
(`NoopLogger`): what LiteLLM's callback machinery alone costs, which no plugin can go below.
"""

import os

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # LiteLLM must not reach the internet

import asyncio
import hashlib
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import litellm
from litellm.integrations.custom_logger import CustomLogger
from litellm.litellm_core_utils.logging_worker import GLOBAL_LOGGING_WORKER

from benchmarks.stats import Spread
from spendpipe.contracts.topics import Topics
from spendpipe.gateway.plugin import SpendpipeLogger
from spendpipe.gateway.sdk import install
from spendpipe.gateway.settings import GatewaySettings
from spendpipe.platform.kafka import KafkaSettings
from spendpipe.platform.kafka_topics import ensure_topics, topic_specs

CALLS = 300
CONCURRENCY = 20
PAIRS = 12
GOAL = 0.95
CALL: dict[str, Any] = {
    "model": "gpt-4o-mini",
    "user": "customer-42",
    "metadata": {
        "user_api_key_hash": hashlib.sha256(b"sk-bench").hexdigest(),
        "user_api_key_user_id": "alice",
        "user_api_key_team_id": "search",
        "user_api_key_org_id": "acme",
    },
}


class NoopLogger(CustomLogger):  # type: ignore[misc]  # litellm is not type-checked here
    async def async_log_success_event(self, kwargs: Any, response_obj: Any, start_time: Any, end_time: Any) -> None:
        return None


async def _call(plugin: SpendpipeLogger | None) -> None:
    if plugin is not None:
        plugin.check(**CALL)
    metadata = dict(CALL["metadata"])  # LiteLLM adds to a call's metadata: each call has its own
    await litellm.acompletion(
        **{**CALL, "metadata": metadata}, messages=[{"role": "user", "content": "hi"}], mock_response="hello"
    )


async def _sample(plugin: SpendpipeLogger | None, concurrency: int) -> tuple[float, float]:
    """Calls/s of one sample, and the process's CPU time per call (every thread) in µs."""

    async def worker(calls: int) -> None:
        for _ in range(calls):
            await _call(plugin)

    calls = CALLS // concurrency * concurrency
    started, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(worker(CALLS // concurrency) for _ in range(concurrency)))
    await GLOBAL_LOGGING_WORKER.flush()
    if plugin is not None:
        assert await asyncio.to_thread(plugin.publisher.wait_idle, 60), "the publisher did not deliver"
    return calls / (time.perf_counter() - started), (time.process_time() - cpu) / calls * 1e6


def _use(callback: CustomLogger | None, known: list[CustomLogger]) -> None:
    for logger in known:  # LiteLLM copies callbacks into lists of its own: take it out of every one
        litellm.logging_callback_manager.remove_callback_from_all_lists(logger)
    litellm.callbacks = [callback] if callback is not None else []


Samples = dict[str, list[tuple[float, float]]]
"""Per configuration (without, plugin, noop): (calls/s, CPU µs per call) of each sample."""


async def _pairs(plugin: SpendpipeLogger, noop: NoopLogger, concurrency: int, pairs: int) -> Samples:
    known: list[CustomLogger] = [plugin, noop]
    rates: Samples = {"without": [], "plugin": [], "noop": []}
    runs: dict[str, Callable[[], Awaitable[tuple[float, float]]]] = {
        "without": lambda: _sample(None, concurrency),
        "plugin": lambda: _sample(plugin, concurrency),
        "noop": lambda: _sample(None, concurrency),
    }
    callbacks: dict[str, CustomLogger | None] = {"without": None, "plugin": plugin, "noop": noop}
    for pair in range(pairs):
        order = ["without", "plugin", "noop"] if pair % 2 == 0 else ["noop", "plugin", "without"]
        for name in order:
            _use(callbacks[name], known)
            rates[name].append(await runs[name]())
    _use(None, known)
    return rates


def _row(mode: str, samples: Samples) -> dict[str, Any]:
    rates = {name: [rate for rate, _ in runs] for name, runs in samples.items()}
    cpu = {name: statistics.median(cpu for _, cpu in runs) for name, runs in samples.items()}
    ratios = Spread.of([p / w for p, w in zip(rates["plugin"], rates["without"], strict=True)])
    noop = statistics.median(n / w for n, w in zip(rates["noop"], rates["without"], strict=True))
    return {
        "benchmark": f"SDK calls/s with the plugin / without, {mode} mock acompletion ({len(rates['plugin'])} pairs)",
        "unit": "ratio",
        "p50": ratios.median,
        "p99": ratios.low,
        "goal": f"median ≥ {GOAL}",
        "met": ratios.median >= GOAL,
        "note": (
            f"without {statistics.median(rates['without']):,.0f} calls/s,"
            f" with {statistics.median(rates['plugin']):,.0f};"
            f" ratio {ratios.describe()};"
            f" a callback doing nothing: {noop:.3f}; CPU per call (all threads, median) without"
            f" {cpu['without']:,.0f} µs, with {cpu['plugin']:,.0f} µs, doing nothing {cpu['noop']:,.0f} µs"
        ),
        "samples": samples,
    }


def run(bootstrap: str, workdir: Path, pairs: int = PAIRS) -> list[dict[str, Any]]:
    suffix = uuid.uuid4().hex[:8]
    kafka = KafkaSettings(bootstrap_servers=bootstrap)
    topics = Topics(**{name: f"bench-sdk-{name.replace('_', '-')}-{suffix}" for name in Topics.model_fields})
    asyncio.run(ensure_topics(kafka, topic_specs(topics, partitions=3, replication=1)))
    settings = GatewaySettings(
        kafka=kafka, topics=topics, spool_dir=workdir / f"spool-sdk-{suffix}", gateway_id="bench"
    )
    plugin = install(settings)  # as the README's SDK example: LiteLLM's callback, started
    plugin.blocklist.in_sync.wait(30)

    async def measure() -> list[dict[str, Any]]:
        noop = NoopLogger()
        await _pairs(plugin, noop, 1, 1)  # warm up: imports, connections, LiteLLM's caches
        return [
            _row("sequential", await _pairs(plugin, noop, 1, pairs)),
            _row(f"{CONCURRENCY} concurrent", await _pairs(plugin, noop, CONCURRENCY, pairs)),
        ]

    try:
        return asyncio.run(measure())
    finally:
        plugin.close()


if __name__ == "__main__":
    import sys
    import tempfile

    from benchmarks.__main__ import signing_keys, table
    from benchmarks.warm_broker import warm_broker, warm_up_row

    signing_keys()
    pairs = int(sys.argv[1]) if len(sys.argv) > 1 else PAIRS
    with warm_broker() as (broker, warmed), tempfile.TemporaryDirectory() as work:
        print(table([warm_up_row(warmed), *run(broker, Path(work), pairs=pairs)]))
