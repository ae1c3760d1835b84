"""Enforcement latency: from an event being produced to the decision it causes being held by a
gateway's block list, under 1k, 5k and 10k events/s of background traffic over thousands of
scopes. Goal (docs/architecture.md): p50 <= 300 ms, p99 <= 1 s.

Three processes, as deployed: `spendpipe run all` (aggregator and enforcer on embedded
ClickHouse, default settings) runs as a child process of its own; the background traffic comes
from another one (spawned), at a fixed rate, spread over thousands of keys, users, teams and end
customers that either have no budget or one they never reach; this process holds the gateway's
block list (the plugin's `BlockList` and `DecisionFollower`) and the probes. A probe is one event
on a fresh key whose small budget was set before the pipeline started, costing more than it:
latency is the time from just before the probe is handed to the producer (acks=all, as the
gateway plugin sends) to the moment the follower applies the block, both on this process's
clock. Nothing polls on the measured path: the block list notes when each block arrives.

Each probe is split into the hops this process can see, on the machine's one wall clock:
- aggregate: produced -> the aggregator's announcement says ClickHouse holds it (`flushed_at`):
  the aggregator's fetch wait, stage and rollup. The pipeline's /metrics splits it, as means per
  flush over the level (`spendpipe_aggregator_flush_step_seconds`): `wait` (how long a flush's
  records had waited when it started: the fetch, and the flush before it), `stage` (parse,
  check, dedup), `rollup` (the totals insert) and `events` (the copy into `events`, then what to
  announce);
- announce: `flushed_at` -> the announcement naming the probe's key read from `spend.flushes`
  (this process reads it as the enforcer does);
- judge: announcement read -> the enforcer's `decided_at`, the clock its judgement reads as it
  starts: its fetch wait on `spend.flushes` and any judgement still under way;
- publish: `decided_at` -> the decision's record created by the enforcer's producer (its
  Kafka create time, in milliseconds): the judgement itself (/metrics gives its mean,
  `spendpipe_enforcer_judge_seconds`), then signing and the send;
- apply: that record created -> the gateway's block list holds the block (the broker's write,
  the gateway's fetch, the signature check and the block list).
Every probe's hops are printed as it lands; the row's note has their medians.
"""

import asyncio
import contextlib
import multiprocessing
import os
import queue
import random
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Event
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from prometheus_client.parser import text_string_to_metric_families

from benchmarks.stats import percentile
from benchmarks.traffic import consumer_lag, spread_event
from dev.local_kafka import free_port_pair
from spendpipe.admin.budget_admin import BudgetAdmin
from spendpipe.contracts.decisions import MESSAGE_TYPE as DECISION_TYPE
from spendpipe.contracts.decisions import Decision
from spendpipe.contracts.events import SpendEvent
from spendpipe.contracts.topics import Topics
from spendpipe.gateway.blocks.blocklist import BlockList
from spendpipe.gateway.blocks.decision_follower import DecisionFollower
from spendpipe.gateway.recording.publisher import record_batches
from spendpipe.platform.kafka import KafkaSettings
from spendpipe.platform.kafka_topics import ensure_topics, topic_specs
from spendpipe.platform.processes import terminate
from spendpipe.platform.settings import SigningOnly
from spendpipe.platform.signing import uncollected_rejections

LOADS = (1_000, 5_000, 10_000)
"""Background events/s."""
PROBES = 40
"""Samples per load level (so p99 is the worst of them)."""
LEVEL_S = 35.0
"""Probing stops after this long even if fewer samples were taken; keeps `make bench` bounded."""
WARM_UP_S = 3.0
DEADLINE_S = 10.0
"""A probe not blocked by then counts as never seen (infinite latency)."""
PROBE_COST, PROBE_BUDGET = Decimal("0.02"), "0.01"
BACKGROUND_TEAMS = 30


PARTITIONS = 3
"""Of every topic the benchmark creates."""
HOPS = ("aggregate", "announce", "judge", "publish", "apply")


class _TopicWatch:
    """Reads a topic from its end as of `start()`, handing each record to `_note` with the wall
    clock of its reading."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self._consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
        self._topic = topic
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self._consumer.start()
        partitions = [TopicPartition(self._topic, p) for p in range(PARTITIONS)]
        self._consumer.assign(partitions)
        await self._consumer.seek_to_end(*partitions)
        for partition in partitions:
            await self._consumer.position(partition)  # fixed now: nothing written later is missed
        self._task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for record in self._consumer:
            if record.value is not None:
                self._note(record.key, record.value, record.timestamp / 1000, time.time())

    def _note(self, key: bytes | None, value: bytes, written: float, seen: float) -> None:
        raise NotImplementedError

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._consumer.stop()


class AnnouncementsSeen(_TopicWatch):
    """Reads `spend.flushes` as the enforcer does, noting for each key named the first
    announcement's `flushed_at` and when it was read (wall clock)."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        super().__init__(bootstrap, topic)
        self.keys: dict[str, tuple[float, float]] = {}

    def _note(self, key: bytes | None, value: bytes, written: float, seen: float) -> None:
        announcement = orjson.loads(value)
        flushed_at = datetime.fromisoformat(announcement["flushed_at"]).timestamp()
        for scope in announcement["scopes"]:
            if scope["type"] == "key":
                self.keys.setdefault(scope["id"], (flushed_at, seen))


class DecisionsSent(_TopicWatch):
    """Reads `spend.decisions`, noting for each decision key when the enforcer's producer took
    its first record (the record's create time, set as it is sent; milliseconds)."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        super().__init__(bootstrap, topic)
        self.sent: dict[str, float] = {}

    def _note(self, key: bytes | None, value: bytes, written: float, seen: float) -> None:
        if key is not None:
            self.sent.setdefault(key.decode(), written)


class TimedBlockList(BlockList):
    """The gateway's block list, noting when each block was first applied (`perf_counter`) and
    when the enforcer says it decided it (`decided_at`, wall clock: the same machine)."""

    def __init__(self) -> None:
        super().__init__()
        self.blocked_at: dict[str, float] = {}
        self.applied_wall: dict[str, float] = {}
        self.decided_at: dict[str, float] = {}

    def apply(self, decision: Decision) -> bool:
        kept = super().apply(decision)
        if kept and decision.blocked:
            self.blocked_at.setdefault(decision.key, time.perf_counter())
            self.applied_wall.setdefault(decision.key, time.time())
            self.decided_at.setdefault(decision.key, decision.decided_at.timestamp())
        return kept


def run(bootstrap: str, workdir: Path, loads: tuple[int, ...] = LOADS) -> list[dict[str, Any]]:
    topics = _topics()
    asyncio.run(
        ensure_topics(
            KafkaSettings(bootstrap_servers=bootstrap), topic_specs(topics, partitions=PARTITIONS, replication=1)
        )
    )
    probe_keys = {load: [uuid.uuid4().hex + uuid.uuid4().hex for _ in range(PROBES)] for load in loads}
    _set_budgets(bootstrap, topics, [key for keys in probe_keys.values() for key in keys])
    group = f"bench-aggregator-{uuid.uuid4().hex[:8]}"
    rows = []
    ops_port = free_port_pair()
    with (
        _pipeline_process(bootstrap, topics, group, workdir / "enforcement", ops_port),
        _following(bootstrap, topics) as gateway,
    ):
        for load in loads:
            rows.append(
                _level(bootstrap, topics, group, gateway=gateway, load=load, keys=probe_keys[load], ops_port=ops_port)
            )
    return rows


def _topics() -> Topics:
    suffix = uuid.uuid4().hex[:8]
    names = ("events", "events_dead_letter", "flushes", "decisions", "budgets", "declared_budgets", "alerts")
    return Topics(**{name: f"bench-latency-{name.replace('_', '-')}-{suffix}" for name in names})


def _set_budgets(bootstrap: str, topics: Topics, probe_keys: list[str]) -> None:
    """Before the pipeline starts, so the enforcer reads them all at start-up: a small budget per
    probe key, and budgets the background traffic never reaches on its teams and globally."""
    admin = BudgetAdmin(kafka=KafkaSettings(bootstrap_servers=bootstrap), topics=topics)
    never_reached = {"max_budget": "1000000", "budget_duration": "24h"}
    admin.set_many(
        [{"scope": f"key:{key}", "max_budget": PROBE_BUDGET, "budget_duration": "24h"} for key in probe_keys]
        + [{"scope": f"team:team-{n}"} | never_reached for n in range(BACKGROUND_TEAMS)]
        + [{"scope": "global"} | never_reached]
    )


@contextlib.contextmanager
def _pipeline_process(bootstrap: str, topics: Topics, group: str, workdir: Path, ops_port: int) -> Iterator[None]:
    """`spendpipe run all` with deployment defaults (fetch sizes, flush interval, tick), until
    SIGTERM; ready once its enforcer has read the budgets and says so."""
    workdir.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "SPENDPIPE_KAFKA__BOOTSTRAP_SERVERS": bootstrap,
        **{f"SPENDPIPE_TOPICS__{name.upper()}": value for name, value in topics.model_dump().items()},
        "SPENDPIPE_CLICKHOUSE__DSN": f"chdb://{workdir / 'clickhouse'}",
        "SPENDPIPE_GROUP_ID": group,
        "SPENDPIPE_ENFORCER_GROUP_ID": f"bench-enforcer-{uuid.uuid4().hex[:8]}",
        "SPENDPIPE_SQL_ENDPOINT__ENABLED": "false",
        "SPENDPIPE_OPS__PORT": str(ops_port),
    }
    log_path = workdir / "run-all.log"
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "spendpipe.admin.cli", "run", "all"],
            env=env,
            cwd=workdir,  # no stray .env
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        _wait_for_line(process, log_path, "enforcer ready", within=90)
        yield
    finally:
        terminate(process, 60.0)


def _wait_for_line(process: subprocess.Popen[bytes], log_path: Path, line: str, within: float) -> None:
    deadline = time.monotonic() + within
    while line not in log_path.read_text(errors="replace"):
        if process.poll() is not None or time.monotonic() > deadline:
            tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-30:])
            raise RuntimeError(f"`spendpipe run all` not ready (exit code {process.poll()}):\n{tail}")
        time.sleep(0.1)  # polling a log file, not on the measured path


@contextlib.contextmanager
def _following(bootstrap: str, topics: Topics) -> Iterator[TimedBlockList]:
    blocklist = TimedBlockList()
    verifier = SigningOnly().signing.verifier(
        message_type=DECISION_TYPE, topic=topics.decisions, rejected=uncollected_rejections()
    )
    follower = DecisionFollower(
        kafka=KafkaSettings(bootstrap_servers=bootstrap), topic=topics.decisions, blocklist=blocklist, verifier=verifier
    )
    follower.start()
    try:
        if not blocklist.in_sync.wait(60):
            raise RuntimeError("the gateway's block list did not catch up with the decisions topic")
        yield blocklist
    finally:
        follower.stop()


def _level(
    bootstrap: str, topics: Topics, group: str, *, gateway: TimedBlockList, load: int, keys: list[str], ops_port: int
) -> dict[str, Any]:
    with _background(bootstrap, topics.events, load) as achieved:
        time.sleep(WARM_UP_S)  # background traffic flowing before the first probe
        before = _histograms(ops_port)
        probed = asyncio.run(_probes(bootstrap, topics, gateway, keys, load))
        after = _histograms(ops_port)
        lag = asyncio.run(consumer_lag(bootstrap, group, topics.events))
    samples = [total for total, _ in probed]
    seen = [s for s in samples if s != float("inf")]
    hops = {hop: [ms for _, h in probed if (ms := h.get(hop)) is not None] for hop in HOPS}
    means = {name: _mean(before, after, name) for name in _HISTOGRAMS}
    split = "; ".join(f"{hop} {percentile(values, 0.5):,.0f}" for hop, values in hops.items() if values)
    split = (
        f"hops (median ms): {split}; the aggregate hop's steps (mean ms per flush): fetch wait"
        f" {means['wait']:,.0f}, stage {means['stage']:,.0f}, rollup {means['rollup']:,.0f}, events"
        f" {means['events']:,.0f}; mean per flush {means['flush']:,.0f} ms in the"
        f" aggregator (stage to commit), {means['judge']:,.0f} ms judging, {means['publish']:,.0f} ms publishing; "
        if split
        else ""
    )
    p50, p99 = percentile(samples, 0.5), percentile(samples, 0.99)
    return {
        "benchmark": f"enforcement latency, {load:,} events/s background",
        "unit": "ms",
        "p50": p50,
        "p99": p99,
        "goal": "p50 ≤ 300 ms, p99 ≤ 1 s",
        "met": p50 <= 300 and p99 <= 1000,
        "note": (
            f"{len(samples)} probes, {len(samples) - len(seen)} not blocked within {DEADLINE_S:.0f} s "
            f"(p99 of {len(samples)} = the worst); background {achieved[0]:,.0f} events/s sent; "
            f"aggregator lag at end {lag:,} events (≈ {lag / load:.1f} s of traffic); {split}"
            "`spendpipe run all` in its own process"
        ),
        "samples_ms": samples,
        "hops_ms": hops,
        "flush_steps_ms": {step: means[step] for step in _FLUSH_STEPS},
    }


_FLUSH_STEPS = ("wait", "stage", "rollup", "events")
_HISTOGRAMS = {
    "flush": "spendpipe_aggregator_flush_seconds",
    **{step: f'spendpipe_aggregator_flush_step_seconds{{step="{step}"}}' for step in _FLUSH_STEPS},
    "judge": "spendpipe_enforcer_judge_seconds",
    "publish": "spendpipe_enforcer_publish_seconds",
}


def _histograms(port: int) -> dict[str, tuple[float, float]]:
    """(sum, count) of the pipeline's histograms, from its /metrics; a labelled one's series are
    named as in the exposition format, `name{label="value"}`."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    sums: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name.endswith(("_sum", "_count")):
                labels = ",".join(f'{name}="{value}"' for name, value in sorted(sample.labels.items()))
                sums[sample.name + (f"{{{labels}}}" if labels else "")] = sample.value
    found: dict[str, tuple[float, float]] = {}
    for name, count in sums.items():
        metric, suffix, labels = name.rpartition("_count")
        if suffix and f"{metric}_sum{labels}" in sums:
            found[metric + labels] = (sums[f"{metric}_sum{labels}"], count)
    return found


def _mean(before: dict[str, tuple[float, float]], after: dict[str, tuple[float, float]], name: str) -> float:
    """Mean milliseconds of the histogram's observations between two readings (nan: none)."""
    metric = _HISTOGRAMS[name]
    (sum_before, count_before), (sum_after, count_after) = before.get(metric, (0, 0)), after.get(metric, (0, 0))
    count = count_after - count_before
    return (sum_after - sum_before) / count * 1000 if count else float("nan")


Hops = dict[str, float | None]
"""Milliseconds of each of `HOPS` (None: not seen)."""


async def _probes(
    bootstrap: str, topics: Topics, gateway: TimedBlockList, keys: list[str], load: int
) -> list[tuple[float, Hops]]:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True, acks="all", linger_ms=0)
    announcements, decisions = AnnouncementsSeen(bootstrap, topics.flushes), DecisionsSent(bootstrap, topics.decisions)
    await producer.start()
    await producer.partitions_for(topics.events)  # metadata now, not on the first timed send
    await announcements.start()
    await decisions.start()
    samples: list[tuple[float, Hops]] = []
    ends = time.monotonic() + LEVEL_S
    try:
        for key in keys:
            if time.monotonic() > ends:
                break
            total, sent_wall = await _probe(producer, topics.events, gateway, key)
            hops = _hops(key, sent_wall, announcements, decisions, gateway)
            samples.append((total, hops))
            line = " ".join(f"{hop} {'-' if ms is None else f'{ms:,.0f}'}" for hop, ms in hops.items())
            print(f"{load:>6} events/s probe {len(samples):>2}: {total:,.0f} ms = {line}", flush=True)
            await asyncio.sleep(random.uniform(0.2, 0.6))  # out of phase with the flushes
    finally:
        await decisions.stop()
        await announcements.stop()
        await producer.stop()
    return samples


def _hops(
    key: str, sent: float, announcements: AnnouncementsSeen, decisions: DecisionsSent, gateway: TimedBlockList
) -> Hops:
    """One probe's hops on the wall clock (see the module's docstring)."""
    flushed, seen = announcements.keys.get(key, (None, None))
    decided = gateway.decided_at.get(f"key:{key}")
    published = decisions.sent.get(f"key:{key}")
    applied = gateway.applied_wall.get(f"key:{key}")
    marks = [sent, flushed, seen, decided, published, applied]
    return {
        hop: (end - start) * 1000 if start is not None and end is not None else None
        for hop, start, end in zip(HOPS, marks[:-1], marks[1:], strict=True)
    }


async def _probe(producer: AIOKafkaProducer, topic: str, gateway: TimedBlockList, key: str) -> tuple[float, float]:
    """Milliseconds from producing one event over `key`'s budget to its block in `gateway`, and
    the wall-clock time it was produced at."""
    event = SpendEvent(
        event_id=str(uuid.uuid4()),
        occurred_at=datetime.now(UTC),
        key_hash=key,
        user_id="probe-user",
        team_id="probe-team",
        org_id="probe-org",
        model="gpt-4o-mini",
        prompt_tokens=10,
        completion_tokens=20,
        total_tokens=30,
        cost=PROBE_COST,
        gateway_id="bench-probe",
    )
    payload, decision_key = event.to_json(), f"key:{key}"
    sent, sent_wall = time.perf_counter(), time.time()
    await (await producer.send(topic, payload, key=key.encode()))
    while time.perf_counter() < sent + DEADLINE_S:
        if decision_key in gateway.blocked_at:
            return (gateway.blocked_at[decision_key] - sent) * 1000, sent_wall
        await asyncio.sleep(0.005)  # waiting for the outcome; the time itself was noted on arrival
    return float("inf"), sent_wall


@contextlib.contextmanager
def _background(bootstrap: str, topic: str, rate: int) -> Iterator[list[float]]:
    """A spawned process producing `rate` events/s until the block ends; yields a list that then
    holds the rate it achieved."""
    context = multiprocessing.get_context("spawn")
    stop, results = context.Event(), context.Queue()
    process = context.Process(target=produce_background, args=(bootstrap, topic, rate, stop, results), daemon=True)
    process.start()
    achieved: list[float] = []
    try:
        results.get(timeout=60)  # producing
        yield achieved
    finally:
        stop.set()
        try:
            achieved.append(results.get(timeout=60))
        except queue.Empty:
            achieved.append(float("nan"))
        process.join(30)
        if process.is_alive():
            process.terminate()


def produce_background(bootstrap: str, topic: str, rate: int, stop: Event, results: "Queue[float]") -> None:
    """The background process's entry point (module level, so `spawn` can import it)."""
    asyncio.run(_produce_at_rate(bootstrap, topic, rate, stop, results))


async def _produce_at_rate(bootstrap: str, topic: str, rate: int, stop: Event, results: "Queue[float]") -> None:
    """Sends as the gateways' publisher does: one record batch per partition for what is due
    (`record_batches`), so the producer's cost per event stays far below the pipeline's."""
    templates = [orjson.loads(_background_event(n).to_json()) for n in range(6_000)]
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True, acks="all", linger_ms=0)
    await producer.start()
    partitions = sorted(await producer.partitions_for(topic))
    results.put(0.0)
    started, sent, pending = time.monotonic(), 0, []
    while not stop.is_set():
        # at most 20 ms of traffic per pass, so a producer that falls behind still sees `stop`
        due = min(int((time.monotonic() - started) * rate), sent + rate // 50)
        stamp = datetime.now(UTC).isoformat()
        payloads = []
        for n in range(sent, due):
            template = templates[n % len(templates)]
            value = orjson.dumps(template | {"event_id": str(uuid.uuid4()), "occurred_at": stamp})
            payloads.append((template["key_hash"].encode(), value))
        for partition, batch in record_batches(producer, partitions, payloads):
            pending.append(await producer.send_batch(batch, topic, partition=partition))
        sent = max(sent, due)
        if len(pending) >= 50:
            await asyncio.gather(*pending)
            pending.clear()
        await asyncio.sleep(0.005)  # pacing
    await asyncio.gather(*pending)
    await producer.stop()
    results.put(sent / (time.monotonic() - started))


def _background_event(n: int) -> SpendEvent:
    """Spread like aggregator_throughput's traffic, over more keys; none of them has a budget it
    can reach in a run."""
    return spread_event(
        n,
        event_id=str(uuid.UUID(int=0)),  # each send gives it its own
        occurred_at=datetime.now(UTC),
        keys=2_000,
        users=300,
        teams=BACKGROUND_TEAMS,
        gateway_id="bench-background",
    )


if __name__ == "__main__":
    import tempfile

    from benchmarks.__main__ import signing_keys, table
    from dev.local_kafka import throwaway_broker

    signing_keys()
    asked = tuple(int(load) for load in sys.argv[1:]) or LOADS  # e.g. `... enforcement_latency 10000`
    with throwaway_broker(prefix="spendpipe-bench-kafka-") as broker, tempfile.TemporaryDirectory() as work:
        print(table(run(broker, Path(work), asked)))
