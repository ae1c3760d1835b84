"""Calls/s of a LiteLLM proxy with the spendpipe plugin against the same proxy without it, in one
run. It runs enough pairs to separate the plugin from noise and reports the ratio with its
spread; its goal is the SDK's (with the plugin ≥ 0.95x the calls/s
without it), as a proxy call costs LiteLLM more than an SDK call and so leaves the plugin a
smaller share of it.

Two real proxy processes run on loopback, started alike (`dev/litellm_proxy.py`: the same
`mock_response` models, `custom_auth`, one worker, the same environment): one whose config names
the plugin (`litellm_settings.callbacks`), publishing to the run's broker, one with no callback.
This process drives each over HTTP (httpx) with the same chat completions: per sample `CALLS`
calls, one at a time or from `CONCURRENCY` tasks at once, every answer a 200. A sample's clock
starts with its first request and stops, with the plugin, only once its events are in Kafka (the
events topic's end offsets have grown by the sample's calls; the proxy publishes one event per
call and nothing else there), so what the plugin defers to its publisher thread is paid inside
its own sample. That includes the publisher's linger (`publish_linger_s`, 50 ms by default),
a wait rather than work, which the note shows as the delivery tail after the last answer. The
proxy without the plugin is asked the same end offsets once, so both clocks hold that query.

Samples come in triples: without, with, and without again, in that order for even pairs and
reversed for odd ones, so the machine's drift falls on both sides. Per pair: the ratio with /
without, reported as median, IQR and range; and the ratio without again / without, the noise: two
samples of one and the same proxy, as far apart in time as any two samples of the pair. The
plugin is told apart from noise when the bootstrap 95% confidence intervals of the two medians
(resampling pairs, `benchmarks/stats.py`) do not overlap: the noise measured in the same run,
not an assumed 1.0, so drift or a bias of the sample's place in the pair counts against the
plugin's being told apart; and two intervals that do not overlap are a stricter test than one of
their difference. Otherwise what the plugin costs is within what this machine, shared and busy,
resolves with that many pairs, and the note says so; with fewer than `TELL_FROM_PAIRS` pairs it
gives no verdict.

Also shown: the CPU time the measured proxy's process tree used per call (from /proc, all
threads, children included), and the proxy's calls per CPU second with / without, summarised as
calls/s are (ratio, noise, verdict). Other work on a shared machine moves that measure much less
than calls/s (a run at load average 4 saw two samples of one proxy differ by up to a third in
calls/s), so it may tell the plugin's cost apart where calls/s, the goal's measure, cannot. Then
this client's CPU per call (well below the proxy's: the proxy, not the client, sets the pace);
and the CPU the proxy not being measured used meanwhile, in cores: the plugin's idle work (its
publisher polls while idle) takes that much from the other proxy's samples.
"""

import os

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # LiteLLM must not reach the internet

import asyncio
import statistics
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer, TopicPartition

from benchmarks.stats import Spread, apart, median_ci
from dev.litellm_proxy import LiteLLMProxy, process_tree
from spendpipe.contracts.topics import Topics
from spendpipe.platform.kafka import KafkaSettings
from spendpipe.platform.kafka_topics import ensure_topics, partition_numbers, topic_specs

CALLS = 300
CONCURRENCY = 16
PAIRS = 8
TELL_FROM_PAIRS = 6
"""Fewer pairs than this give no verdict: the bootstrap of a median needs a few values to mean anything."""
WARM_UP_CALLS = 100
GOAL = 0.95
KEY = "sk-bench-proxy-0123456789"
BODY = {"model": "gpt-4o-mini", "user": "customer-42", "messages": [{"role": "user", "content": "hi"}]}
DELIVERY_S = 60.0
TICKS = os.sysconf("SC_CLK_TCK")


def process_tree_cpu_s(pid: int) -> float:
    """CPU seconds (user and system, every thread) of the live process `pid` and its live
    descendants, from /proc (Linux)."""
    total = 0.0
    for current in process_tree(pid):
        try:
            fields = Path(f"/proc/{current}/stat").read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue  # it ended meanwhile
        total += (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime: fields 14 and 15
    return total


@dataclass(frozen=True)
class Sample:
    calls_per_s: float
    tail_ms: float
    """From the last answer to the sample's events in Kafka."""
    proxy_cpu_us: float
    """The measured proxy's CPU per call."""
    client_cpu_us: float
    """This process's CPU per call."""
    other_cores: float
    """The CPU the proxy not measured used meanwhile, in cores."""


@dataclass
class Bench:
    http: httpx.AsyncClient
    ends: AIOKafkaConsumer
    partitions: list[TopicPartition]
    bare: LiteLLMProxy
    plugin: LiteLLMProxy
    published: int = 0
    """Calls made through the plugin's proxy: the events topic must hold that many."""

    async def events(self) -> int:
        return sum((await self.ends.end_offsets(self.partitions)).values())

    async def sample(self, proxy: LiteLLMProxy, concurrency: int, calls: int) -> Sample:
        other = self.bare if proxy is self.plugin else self.plugin
        pid, other_pid = _pid(proxy), _pid(other)
        per_worker = calls // concurrency
        calls = per_worker * concurrency
        expected = await self.events() + (calls if proxy is self.plugin else 0)
        cpu, other_cpu, client_cpu = process_tree_cpu_s(pid), process_tree_cpu_s(other_pid), time.process_time()
        started = time.perf_counter()
        await asyncio.gather(*(self._worker(proxy, per_worker) for _ in range(concurrency)))
        answered = time.perf_counter()
        deadline = answered + DELIVERY_S
        while (events := await self.events()) < expected:
            if time.perf_counter() > deadline:
                raise AssertionError(f"{expected - events} events not delivered within {DELIVERY_S}s")
            await asyncio.sleep(0.002)  # polling the end offsets, with the deadline above
        done = time.perf_counter()
        if proxy is self.plugin:
            self.published += calls
        return Sample(
            calls_per_s=calls / (done - started),
            tail_ms=(done - answered) * 1e3,
            proxy_cpu_us=(process_tree_cpu_s(pid) - cpu) / calls * 1e6,
            client_cpu_us=(time.process_time() - client_cpu) / calls * 1e6,
            other_cores=(process_tree_cpu_s(other_pid) - other_cpu) / (done - started),
        )

    async def _worker(self, proxy: LiteLLMProxy, calls: int) -> None:
        for _ in range(calls):
            response = await self.http.post(
                f"{proxy.url}/chat/completions", headers={"Authorization": f"Bearer {KEY}"}, json=BODY
            )
            assert response.status_code == 200, f"{proxy.url} answered {response.status_code}: {response.text}"

    async def pairs(self, concurrency: int, pairs: int) -> dict[str, list[Sample]]:
        """Per configuration (without, plugin, again: without a second time), its samples."""
        samples: dict[str, list[Sample]] = {"without": [], "plugin": [], "again": []}
        proxies = {"without": self.bare, "plugin": self.plugin, "again": self.bare}
        for pair in range(pairs):
            order = ["without", "plugin", "again"] if pair % 2 == 0 else ["again", "plugin", "without"]
            for name in order:
                samples[name].append(await self.sample(proxies[name], concurrency, CALLS))
        return samples


def _pid(proxy: LiteLLMProxy) -> int:
    assert proxy.process is not None, "the proxy is started"
    return proxy.process.pid


@dataclass(frozen=True)
class Summary:
    """The per-pair ratios with / without and without / without (the noise), their spreads, and
    the bootstrap 95% confidence intervals of their medians."""

    pairs: int
    ratio: Spread
    noise: Spread
    ratio_ci: tuple[float, float]
    noise_ci: tuple[float, float]

    @classmethod
    def of(cls, with_plugin: list[float], without: list[float], again: list[float]) -> "Summary":
        """From one measure of each sample, higher the better (calls/s, calls per CPU second),
        the three lists in pair order."""
        ratios = [w / b for w, b in zip(with_plugin, without, strict=True)]
        noise = [a / b for a, b in zip(again, without, strict=True)]
        return cls(len(ratios), Spread.of(ratios), Spread.of(noise), median_ci(ratios), median_ci(noise))

    @property
    def apart(self) -> bool | None:
        """None: too few pairs to tell."""
        return apart(self.ratio_ci, self.noise_ci) if self.pairs >= TELL_FROM_PAIRS else None

    def describe(self) -> str:
        verdict = {
            True: "yes",
            False: "no, the plugin's cost is within this run's noise",
            None: f"too few pairs to tell (fewer than {TELL_FROM_PAIRS})",
        }[self.apart]
        return (
            f"ratio {self.ratio.describe()}, its median's 95% CI {self.ratio_ci[0]:.3f} to {self.ratio_ci[1]:.3f};"
            f" noise (without / without) {self.noise.describe()}, CI {self.noise_ci[0]:.3f} to"
            f" {self.noise_ci[1]:.3f}; told apart from the noise: {verdict}"
        )


def _mid(runs: list[Sample], field: str) -> float:
    return statistics.median(float(getattr(sample, field)) for sample in runs)


def _row(mode: str, samples: dict[str, list[Sample]]) -> dict[str, Any]:
    rates = {name: [s.calls_per_s for s in runs] for name, runs in samples.items()}
    per_cpu_s = {name: [1e6 / s.proxy_cpu_us for s in runs] for name, runs in samples.items()}
    told = Summary.of(rates["plugin"], rates["without"], rates["again"])
    by_cpu = Summary.of(per_cpu_s["plugin"], per_cpu_s["without"], per_cpu_s["again"])
    bare, plugin = samples["without"] + samples["again"], samples["plugin"]
    return {
        "benchmark": f"proxy calls/s with the plugin / without, {mode} HTTP calls ({len(plugin)} pairs)",
        "unit": "ratio",
        "p50": told.ratio.median,
        "p99": told.ratio.low,
        "goal": f"median ≥ {GOAL}",
        "met": told.ratio.median >= GOAL,
        "note": (
            f"calls/s without {statistics.median(rates['without']):,.0f},"
            f" with {statistics.median(rates['plugin']):,.0f};"
            f" {told.describe()}. Proxy CPU per call without {_mid(bare, 'proxy_cpu_us'):,.0f} µs,"
            f" with {_mid(plugin, 'proxy_cpu_us'):,.0f} µs; calls per proxy CPU second with / without:"
            f" {by_cpu.describe()}. Delivery tail after the last answer {_mid(plugin, 'tail_ms'):.0f} ms;"
            f" client CPU per call {_mid(bare + plugin, 'client_cpu_us'):,.0f} µs; the idle proxy meanwhile:"
            f" with the plugin {_mid(bare, 'other_cores'):.3f} cores, without {_mid(plugin, 'other_cores'):.3f}"
        ),
        "samples": {name: [vars(s) for s in runs] for name, runs in samples.items()},
    }


def run(bootstrap: str, workdir: Path, pairs: int = PAIRS) -> list[dict[str, Any]]:
    suffix = uuid.uuid4().hex[:8]
    kafka = KafkaSettings(bootstrap_servers=bootstrap)
    topics = Topics(**{name: f"bench-proxy-{name.replace('_', '-')}-{suffix}" for name in Topics.model_fields})
    asyncio.run(ensure_topics(kafka, topic_specs(topics, partitions=3, replication=1)))
    keys = {KEY: ("alice", "search")}
    bare = LiteLLMProxy(workdir / f"proxy-bare-{suffix}", bootstrap, topics, keys, callbacks=None)
    plugin = LiteLLMProxy(workdir / f"proxy-plugin-{suffix}", bootstrap, topics, keys)
    try:
        with ThreadPoolExecutor(2) as starting:
            list(starting.map(LiteLLMProxy.start, (bare, plugin)))
        return asyncio.run(_measure(kafka, topics, bare, plugin, pairs))
    finally:
        for proxy in (bare, plugin):
            proxy.stop()


async def _measure(
    kafka: KafkaSettings, topics: Topics, bare: LiteLLMProxy, plugin: LiteLLMProxy, pairs: int
) -> list[dict[str, Any]]:
    partitions = [TopicPartition(topics.events, p) for p in await partition_numbers(kafka, topics.events)]
    ends = AIOKafkaConsumer(**kafka.aiokafka_kwargs(), enable_auto_commit=False)
    await ends.start()
    limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)
    try:
        async with httpx.AsyncClient(limits=limits, timeout=30.0) as http:
            bench = Bench(http, ends, partitions, bare, plugin)
            for proxy in (bare, plugin):  # warm up: imports, connections, LiteLLM's caches
                await bench.sample(proxy, 1, WARM_UP_CALLS)
                await bench.sample(proxy, CONCURRENCY, WARM_UP_CALLS)
            rows = [
                _row("sequential", await bench.pairs(1, pairs)),
                _row(f"{CONCURRENCY} concurrent", await bench.pairs(CONCURRENCY, pairs)),
            ]
            assert await bench.events() == bench.published, "one event per call through the plugin, no more"
            return rows
    finally:
        await ends.stop()


if __name__ == "__main__":
    import sys
    import tempfile

    from benchmarks.__main__ import signing_keys, table
    from benchmarks.warm_broker import warm_broker, warm_up_row

    signing_keys()
    pairs = int(sys.argv[1]) if len(sys.argv) > 1 else PAIRS
    with warm_broker() as (broker, warmed), tempfile.TemporaryDirectory() as work:
        print(table([warm_up_row(warmed), *run(broker, Path(work), pairs=pairs)]))
