"""Request-path overhead of the gateway plugin, in-process: recording one event (copying what the
event is built from out of LiteLLM's callback arguments and handing it to the publisher) and
checking the block list. Goals (docs/architecture.md): p99 <= 50 us to record, <= 10 us to check.

Records run back to back, so the publisher's thread is busy all along building, encoding and
sending them, and contends for the GIL as it does under load. Recording is measured with each
publisher (`SPENDPIPE_PUBLISHER`): the in-thread one and the subprocess one
(the SDK's), whose child builds and sends while this process only pickles and writes to a pipe.
Each record is followed by the floor on the same thread: `orjson.dumps` of the event's dict plus
a `queue.Queue` put, the least any in-process hand-over of an event costs; both are reported,
with their ratio, from the same run. The check's floor is making the request's identity, which
each check includes: what any request path that reads who is calling pays before a lookup.
"""

import os

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # LiteLLM must not reach the internet

import asyncio
import queue
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import orjson

from benchmarks.stats import median, percentile
from spendpipe.contracts.decisions import Decision
from spendpipe.contracts.topics import Topics
from spendpipe.gateway.identity import RequestIdentity
from spendpipe.gateway.plugin import SpendpipeLogger
from spendpipe.gateway.recording.publisher_process import ProcessPublisher
from spendpipe.gateway.settings import GatewaySettings
from spendpipe.platform.kafka import KafkaSettings
from spendpipe.platform.kafka_topics import ensure_topics, topic_specs

CALLS = 100_000
Publisher = Literal["thread", "subprocess"]
PUBLISHERS: dict[Publisher, str] = {
    "thread": "in-thread publisher",
    "subprocess": "subprocess publisher",
}


def logging_kwargs(n: int) -> dict[str, Any]:
    now = time.time()
    return {
        "standard_logging_object": {
            "id": f"chatcmpl-{n}",
            "litellm_call_id": str(uuid.uuid4()),
            "startTime": now - 0.2,
            "endTime": now,
            "model": "gpt-4o-mini",
            "model_group": "gpt-4o-mini",
            "custom_llm_provider": "openai",
            "call_type": "acompletion",
            "prompt_tokens": 10,
            "completion_tokens": 20,
            "total_tokens": 30,
            "response_cost": 1.35e-05,
            "cache_hit": False,
            "status": "success",
            "request_tags": ["bench"],
            "end_user": f"customer-{n % 50}",
            "metadata": {
                "user_api_key_hash": f"{n % 100:064x}",
                "user_api_key_alias": "bench",
                "user_api_key_user_id": f"user-{n % 20}",
                "user_api_key_team_id": f"team-{n % 5}",
                "user_api_key_org_id": "org",
            },
        }
    }


def _record(plugin: SpendpipeLogger) -> tuple[list[float], list[float]]:
    """Record `CALLS` events back to back; each record's µs, and the floor's after it."""
    payloads = [logging_kwargs(n) for n in range(CALLS)]
    document = {"event_id": str(uuid.uuid4()), **payloads[0]["standard_logging_object"]}
    handed: queue.Queue[bytes] = queue.Queue()
    samples, floors = [], []
    for kwargs in payloads:
        started = time.perf_counter_ns()
        plugin.record(kwargs)
        samples.append((time.perf_counter_ns() - started) / 1000)
        started = time.perf_counter_ns()
        handed.put_nowait(orjson.dumps(document))
        floors.append((time.perf_counter_ns() - started) / 1000)
    return samples, floors


def run(bootstrap: str, workdir: Path, runs: int = 3) -> list[dict[str, Any]]:
    record: dict[Publisher, dict[str, list[float]]] = {kind: {"p50": [], "p99": [], "floor_p50": [], "floor_p99": []}
                                                 for kind in PUBLISHERS}  # fmt: skip
    check_p50, check_p99, check_floor_p50, check_floor_p99 = [], [], [], []
    for run_no in range(runs):
        suffix = uuid.uuid4().hex[:8]
        kafka = KafkaSettings(bootstrap_servers=bootstrap)
        topics = Topics(**{name: f"bench-{name.replace('_', '-')}-{suffix}" for name in Topics.model_fields})
        asyncio.run(ensure_topics(kafka, topic_specs(topics, partitions=3, replication=1)))
        for kind in PUBLISHERS:
            spool = workdir / f"spool-{run_no}-{kind}"
            settings = GatewaySettings(kafka=kafka, topics=topics, spool_dir=spool, gateway_id="bench", publisher=kind)
            plugin = SpendpipeLogger.from_settings(settings)
            plugin.publisher.start()
            if isinstance(plugin.publisher, ProcessPublisher):  # the child's imports and connection, first
                plugin.record(logging_kwargs(CALLS))
                plugin.publisher.wait_idle(60)
            samples, floors = _record(plugin)
            plugin.close()
            record[kind]["p50"].append(percentile(samples, 0.5))
            record[kind]["p99"].append(percentile(samples, 0.99))
            record[kind]["floor_p50"].append(percentile(floors, 0.5))
            record[kind]["floor_p99"].append(percentile(floors, 0.99))

        now = datetime.now(UTC)
        for n in range(1000):  # a block list with a thousand decisions, one of them in force
            plugin.blocklist.apply(
                Decision(scope=f"key:{n:064x}", version=1, blocked=n == 7, reason="bench",
                         expires_at=now + timedelta(hours=1), decided_at=now)
            )  # fmt: skip
        plugin.blocklist.in_sync.set()
        samples, floors = [], []
        for n in range(CALLS):  # 100 keys in turn, as a gateway sees its clients' keys again and again
            started = time.perf_counter_ns()
            who = RequestIdentity(key_hash=f"{n % 100:064x}", user_id="u", team_id="t", org_id="o", end_user="c")
            plugin.blocking_decision(who, "gpt-4o")
            samples.append((time.perf_counter_ns() - started) / 1000)
            started = time.perf_counter_ns()
            RequestIdentity(key_hash=f"{n % 100:064x}", user_id="u", team_id="t", org_id="o", end_user="c")
            floors.append((time.perf_counter_ns() - started) / 1000)
        check_p50.append(percentile(samples, 0.5))
        check_p99.append(percentile(samples, 0.99))
        check_floor_p50.append(percentile(floors, 0.5))
        check_floor_p99.append(percentile(floors, 0.99))
    rows = []
    for kind, figures in record.items():
        p99, floor = median(figures["p99"]), median(figures["floor_p99"])
        rows.append(
            {"benchmark": f"plugin: record one event, publisher busy ({PUBLISHERS[kind]})", "unit": "µs",
             "p50": median(figures["p50"]), "p99": p99, "goal": "p99 ≤ 50", "met": p99 <= 50,
             "note": f"floor (orjson dict + queue put) p50 {median(figures['floor_p50']):.1f}, p99 {floor:.1f}: "
                     f"p99 {p99 / floor:.1f}x the floor; p99 per run {', '.join(f'{v:.1f}' for v in figures['p99'])}"}
        )  # fmt: skip
    rows.append(
        {"benchmark": "plugin: check the block list", "unit": "µs", "p50": median(check_p50),
         "p99": median(check_p99), "goal": "p99 ≤ 10", "met": median(check_p99) <= 10,
         "note": f"1,000 decisions held, one in force: on the key of 1 request in 100; floor (making the request's "
                 f"identity alone, which the check includes) p50 {median(check_floor_p50):.1f}, "
                 f"p99 {median(check_floor_p99):.1f}; p99 per run {', '.join(f'{v:.1f}' for v in check_p99)}"}
    )  # fmt: skip
    return rows


if __name__ == "__main__":
    import tempfile

    from benchmarks.__main__ import signing_keys, table
    from dev.local_kafka import throwaway_broker

    signing_keys()
    with throwaway_broker(prefix="spendpipe-bench-kafka-") as broker, tempfile.TemporaryDirectory() as work:
        print(table(run(broker, Path(work))))
