"""The subprocess publisher against a real broker: every call recorded is delivered, and
accounted in the gateway process exactly once, also when its child is killed mid-stream (a new
child is started and sent what the dead one had not reported; a call it had delivered unreported
comes again with the same event id, which the aggregator drops); and a close that runs out while
Kafka hangs leaves every call spooled, for the next gateway to deliver; and where the first child
sends no start handshake, `auto` delivers every call from a thread instead."""

import asyncio
import os
import signal
import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from spendpipe.contracts.events import decode_event
from spendpipe.gateway.metrics import GatewayMetrics
from spendpipe.gateway.recording import publisher_process
from spendpipe.gateway.recording.event_builder import Recorded, build_spend_event
from spendpipe.gateway.recording.publisher import EventPublisher, PublisherOptions
from spendpipe.gateway.recording.publisher_process import ProcessPublisher
from spendpipe.gateway.recording.spool import DiskSpool
from spendpipe.platform.kafka import KafkaSettings
from spendpipe.platform.local_broker import LocalBroker
from tests.support.pipeline import read_topic
from tests.support.waiting import eventually_sync
from tests.unit.test_event_builder import logging_object

WITHIN_S = 30.0


def publisher(bootstrap: str, topic: str, spool_dir: Path) -> tuple[ProcessPublisher, list[Recorded]]:
    sender = ProcessPublisher(
        kafka=KafkaSettings(bootstrap_servers=bootstrap),
        topic=topic,
        spool_dir=spool_dir,
        spool_max_bytes=1 << 26,
        gateway_id="gw-subprocess",
        metrics=GatewayMetrics(registry=CollectorRegistry()),
        options=PublisherOptions(delivery_timeout_s=5.0, retry_backoff_s=0.3),
        restart_backoff_s=0.1,
    )
    accounted: list[Recorded] = []
    sender.account = accounted.append
    return sender, accounted


def logged_call(n: int) -> dict[str, Any]:
    return {
        "standard_logging_object": logging_object(
            litellm_call_id=f"call-{n}", id=f"chatcmpl-{n}", response_cost=0.001 * (n % 7 + 1)
        ),
        "litellm_call_id": f"call-{n}",
    }


def expected_ids(calls: list[dict[str, Any]]) -> set[str]:
    events = [build_spend_event(call, gateway_id="gw-subprocess") for call in calls]
    return {event.event_id for event in events if event is not None}


async def delivered(bootstrap: str, topic: str, expected: int) -> dict[str, list[bytes]]:
    """Each event id on the topic, with every record that carries it."""
    by_id: dict[str, list[bytes]] = {}
    for record in await read_topic(bootstrap, topic, expected=expected, timeout_s=WITHIN_S):
        by_id.setdefault(decode_event(record.value).event_id, []).append(record.value)
    return by_id


async def test_every_call_is_delivered_and_accounted_once(kafka_broker: str, make_topics, tmp_path: Path) -> None:
    topics = await make_topics(kafka_broker, partitions=3)
    calls = [logged_call(n) for n in range(1_000)]
    sender, accounted = publisher(kafka_broker, topics.events, tmp_path / "spool")

    for call in calls:
        sender.record(call)
    assert sender.wait_idle(WITHIN_S)
    assert sender.close(WITHIN_S)

    by_id = await delivered(kafka_broker, topics.events, len(calls))
    assert set(by_id) == expected_ids(calls)
    assert all(len(records) == 1 for records in by_id.values()), "no child died: no call was sent twice"
    assert sorted(r.call_id or "" for r in accounted) == sorted(c["litellm_call_id"] for c in calls)
    assert GatewayMetrics.total(sender._metrics.published) == len(calls)
    assert GatewayMetrics.total(sender._metrics.lost) == 0
    assert sender.restarts == 0


async def test_a_child_killed_mid_stream_loses_nothing_and_counts_nothing_twice(
    kafka_broker: str, make_topics, tmp_path: Path
) -> None:
    topics = await make_topics(kafka_broker, partitions=3)
    calls = [logged_call(n) for n in range(3_000)]
    sender, accounted = publisher(kafka_broker, topics.events, tmp_path / "spool")
    sender.start()
    first = eventually_sync(lambda: sender.child_pid, bool, within=WITHIN_S, what="the child started")

    # given a stream of calls, the child is killed while it holds calls it has not reported
    for call in calls[:2_000]:
        sender.record(call)
    eventually_sync(lambda: len(sender._sent), lambda n: n > 0, within=WITHIN_S, what="calls sent, unreported")
    os.kill(first, signal.SIGKILL)
    # and the stream goes on while a new child starts
    for call in calls[2_000:]:
        sender.record(call)
    assert sender.wait_idle(WITHIN_S)
    assert sender.close(WITHIN_S)

    # then every call's event is on the topic; any record there twice is the very same event
    by_id = await delivered(kafka_broker, topics.events, len(calls))
    assert set(by_id) == expected_ids(calls)
    assert all(len(set(records)) == 1 for records in by_id.values())
    # and each call is accounted in the gateway process exactly once
    assert sorted(r.call_id or "" for r in accounted) == sorted(c["litellm_call_id"] for c in calls)
    assert sum((r.cost for r in accounted), Decimal(0)) == sum(
        (Decimal(str(0.001 * (n % 7 + 1))) for n in range(len(calls))), Decimal(0)
    )
    assert sender.restarts >= 1
    assert sender.child_pid != first


HOST = """
import os, sys
from pathlib import Path
from prometheus_client import CollectorRegistry
from spendpipe.gateway.metrics import GatewayMetrics
from spendpipe.gateway.recording.publisher import PublisherOptions
from spendpipe.gateway.recording.publisher_process import ProcessPublisher
from spendpipe.platform.kafka import KafkaSettings
from tests.integration.test_subprocess_publisher import logged_call

secret = os.open(sys.argv[3], os.O_RDONLY)
os.set_inheritable(secret, True)  # a descriptor the child must not get
sender = ProcessPublisher(
    kafka=KafkaSettings(bootstrap_servers=sys.argv[1]), topic=sys.argv[2], spool_dir=Path(sys.argv[4]),
    spool_max_bytes=1 << 20, gateway_id="gw-subprocess", metrics=GatewayMetrics(registry=CollectorRegistry()),
    options=PublisherOptions(),
)
for n in range(50):
    sender.record(logged_call(n))
assert sender.wait_idle(30)
print(sender.child_pid, flush=True)
sys.stdin.read()  # held open by the test, which kills this process
"""


async def test_the_child_holds_no_inherited_descriptor_and_ends_with_its_gateway(
    kafka_broker: str, make_topics, tmp_path: Path
) -> None:
    topics = await make_topics(kafka_broker)
    await asyncio.to_thread(kill_a_gateway_process, kafka_broker, topics.events, tmp_path)
    by_id = await delivered(kafka_broker, topics.events, 50)
    assert set(by_id) == expected_ids([logged_call(n) for n in range(50)])


def kill_a_gateway_process(bootstrap: str, topic: str, tmp_path: Path) -> None:
    """A gateway process that holds an inheritable descriptor records 50 calls, and is killed:
    its child never held the descriptor, and ends."""
    secret = tmp_path / "secret"
    secret.write_text("not for the child")
    host = subprocess.Popen(
        [sys.executable, "-c", HOST, bootstrap, topic, str(secret), str(tmp_path / "spool")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert host.stdout is not None
        child_pid = int(host.stdout.readline())
        held = {os.readlink(f"/proc/{child_pid}/fd/{fd}") for fd in os.listdir(f"/proc/{child_pid}/fd")}
        assert str(secret) not in held, held

        host.send_signal(signal.SIGKILL)
        host.wait(WITHIN_S)

        eventually_sync(lambda: _alive(child_pid), lambda alive: not alive, within=WITHIN_S, what="the child ended")
    finally:
        host.kill()


def _alive(pid: int) -> bool:
    """Running (a zombie, ended but not yet reaped by init, counts as ended)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


async def test_a_close_that_runs_out_while_kafka_hangs_spools_what_the_child_holds(
    own_broker: LocalBroker, make_topics, tmp_path: Path
) -> None:
    topics = await make_topics(own_broker.bootstrap, partitions=3)
    calls = [logged_call(n) for n in range(500)]
    spool = tmp_path / "spool"
    sender = ProcessPublisher(
        kafka=KafkaSettings(bootstrap_servers=own_broker.bootstrap),
        topic=topics.events,
        spool_dir=spool,
        spool_max_bytes=1 << 26,
        gateway_id="gw-subprocess",
        metrics=GatewayMetrics(registry=CollectorRegistry()),
        options=PublisherOptions(delivery_timeout_s=120.0),  # Kafka may hang far past the close
        child_close_s=4.0,
    )
    sender.start()
    eventually_sync(lambda: sender.child_pid, bool, within=WITHIN_S, what="the child started")

    # given a broker that stops answering (stopped, its connections left open)
    broker = own_broker.pid
    assert broker is not None
    os.kill(broker, signal.SIGSTOP)
    try:
        # when calls are recorded and the gateway closes
        for call in calls:
            sender.record(call)
        closed = sender.close(WITHIN_S)
    finally:
        os.kill(broker, signal.SIGCONT)

    # then the child spooled every call within its close, and lost none
    assert closed
    metrics = sender._metrics
    assert GatewayMetrics.total(metrics.published) + GatewayMetrics.total(metrics.spooled) == len(calls)
    assert GatewayMetrics.total(metrics.lost) == 0
    # and the next gateway delivers what was spooled
    after, _ = publisher(own_broker.bootstrap, topics.events, spool)
    after.start()
    by_id = await delivered(own_broker.bootstrap, topics.events, len(calls))
    assert after.close(WITHIN_S)
    assert set(by_id) == expected_ids(calls)


async def test_a_first_child_without_its_start_handshake_makes_auto_publish_from_a_thread(
    kafka_broker: str, make_topics, tmp_path: Path, monkeypatch
) -> None:
    # given a child that cannot start (a Python that cannot import it)
    monkeypatch.setattr(publisher_process, "CHILD_MODULE", "spendpipe.no_such_publisher_child")
    topics = await make_topics(kafka_broker)
    options = PublisherOptions(delivery_timeout_s=5.0, retry_backoff_s=0.3)
    metrics = GatewayMetrics(registry=CollectorRegistry())
    spool = tmp_path / "spool"

    def in_thread() -> EventPublisher:
        spooled = DiskSpool(directory=spool, max_bytes=1 << 26)
        return EventPublisher(
            kafka=KafkaSettings(bootstrap_servers=kafka_broker),
            topic=topics.events,
            spool=spooled,
            metrics=metrics,
            options=options,
        )

    sender = ProcessPublisher(
        kafka=KafkaSettings(bootstrap_servers=kafka_broker),
        topic=topics.events,
        spool_dir=spool,
        spool_max_bytes=1 << 26,
        gateway_id="gw-subprocess",
        metrics=metrics,
        options=options,
        fallback=in_thread,
    )
    accounted: list[Recorded] = []
    sender.account = accounted.append
    calls = [logged_call(n) for n in range(100)]

    # when calls are recorded (as the first child fails) and the gateway closes
    for call in calls:
        sender.record(call)
    assert sender.wait_idle(WITHIN_S)
    assert sender.close(WITHIN_S)

    # then every call is delivered from a thread of the gateway process, and accounted once
    assert sender.fell_back
    by_id = await delivered(kafka_broker, topics.events, len(calls))
    assert set(by_id) == expected_ids(calls)
    assert all(len(records) == 1 for records in by_id.values())
    assert sorted(r.call_id or "" for r in accounted) == sorted(c["litellm_call_id"] for c in calls)


async def test_without_each_call_the_count_and_the_exact_sum_are_accounted(
    kafka_broker: str, make_topics, tmp_path: Path
) -> None:
    """SDK mode (`each_call=False`): the gateway takes each report's count and summed cost, which
    add up to the calls' costs exactly (what `litellm.max_budget` counts), and no call one by one."""
    topics = await make_topics(kafka_broker, partitions=3)
    calls = [logged_call(n) for n in range(500)]
    sender = ProcessPublisher(
        kafka=KafkaSettings(bootstrap_servers=kafka_broker),
        topic=topics.events,
        spool_dir=tmp_path / "spool",
        spool_max_bytes=1 << 26,
        gateway_id="gw-subprocess",
        metrics=GatewayMetrics(registry=CollectorRegistry()),
        options=PublisherOptions(delivery_timeout_s=5.0, retry_backoff_s=0.3),
        each_call=False,
    )
    accounted: list[Recorded] = []
    sums: list[tuple[int, Decimal]] = []
    sender.account = accounted.append
    sender.account_sum = lambda count, cost: sums.append((count, cost))

    for call in calls:
        sender.record(call)
    assert sender.wait_idle(WITHIN_S)
    assert sender.close(WITHIN_S)

    assert accounted == []
    assert sum(count for count, _ in sums) == len(calls)
    assert sum((cost for _, cost in sums), Decimal(0)) == sum(Decimal(str(0.001 * (n % 7 + 1))) for n in range(500))
