"""Two processes sharing one spool directory (a publisher child left running after its gateway was
killed, beside the next gateway's child): while both append and replay at once, every payload
spooled is replayed exactly once and whole, none lost with a segment another process removed."""

import subprocess
import sys
from pathlib import Path

from prometheus_client import CollectorRegistry

from spendpipe.contracts.events import decode_event
from spendpipe.gateway.metrics import GatewayMetrics
from spendpipe.gateway.recording.publisher import EventPublisher, PublisherOptions
from spendpipe.gateway.recording.spool import DiskSpool
from spendpipe.platform.kafka import KafkaSettings
from tests.support.events import make_event
from tests.support.pipeline import read_topic

WRITES = 1_500
WITHIN_S = 120.0

PROCESS = """
import sys
from pathlib import Path
from spendpipe.gateway.recording.spool import DiskSpool

name, directory, writes, replayed = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3]), Path(sys.argv[4])
spool = DiskSpool(directory=directory, max_bytes=1 << 30, segment_bytes=2_000)
sys.stdin.readline()  # both start together
with replayed.open("wb") as out:
    for n in range(writes):
        assert spool.append([f'{{"writer":"{name}","n":{n}}}'.encode()]) == 0
        if n % 3 == 0 and (taken := spool.oldest()) is not None:  # as a publisher replays between batches
            segment, values = taken
            out.write(b"".join(value + b"\\n" for value in values))
            out.flush()
            spool.remove(segment)
"""


def test_two_processes_appending_and_replaying_one_spool_lose_and_repeat_nothing(tmp_path: Path) -> None:
    directory = tmp_path / "spool"
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", PROCESS, name, str(directory), str(WRITES), str(tmp_path / name)],
            stdin=subprocess.PIPE,
        )
        for name in ("old-child", "new-child")
    ]
    for process in processes:
        assert process.stdin is not None
        process.stdin.write(b"go\n")
        process.stdin.close()
    assert [process.wait(WITHIN_S) for process in processes] == [0, 0]

    replayed = [line for name in ("old-child", "new-child") for line in (tmp_path / name).read_bytes().splitlines()]
    rest = DiskSpool(directory=directory, max_bytes=1 << 30)
    while (taken := rest.oldest()) is not None:
        replayed += taken[1]
        rest.remove(taken[0])

    expected = [f'{{"writer":"{name}","n":{n}}}'.encode() for name in ("old-child", "new-child") for n in range(WRITES)]
    assert sorted(replayed) == sorted(expected)
    assert rest.torn_lines == 0
    assert rest.empty


def test_a_segment_another_process_replays_leaves_nothing_to_replay_here(tmp_path: Path) -> None:
    directory = tmp_path / "spool"
    other, here = DiskSpool(directory=directory, max_bytes=1 << 20), DiskSpool(directory=directory, max_bytes=1 << 20)
    other.append([b'{"from":"other"}'])
    assert other.oldest() is not None  # the other process replays its segment, and holds it

    assert here.oldest() is None
    assert not here.empty
    assert here.held_elsewhere

    here.append([b'{"from":"here"}'])
    assert not here.held_elsewhere
    taken = here.oldest()
    assert taken is not None
    assert taken[1] == [b'{"from":"here"}']


async def test_a_publisher_beside_another_replaying_the_spool_settles_and_closes(
    kafka_broker: str, make_topics, tmp_path: Path
) -> None:
    """A segment another process is replaying (and may hold for long, while its Kafka fails) is not
    this publisher's to wait for: it goes idle and closes once its own events are delivered."""
    topics = await make_topics(kafka_broker)
    directory = tmp_path / "spool"
    other = DiskSpool(directory=directory, max_bytes=1 << 20)
    other.append([make_event().to_json()])
    assert other.oldest() is not None
    sender = EventPublisher(
        kafka=KafkaSettings(bootstrap_servers=kafka_broker),
        topic=topics.events,
        spool=DiskSpool(directory=directory, max_bytes=1 << 20),
        metrics=GatewayMetrics(registry=CollectorRegistry()),
        options=PublisherOptions(delivery_timeout_s=3.0, retry_backoff_s=0.3),
    )
    events = [make_event() for _ in range(20)]
    for event in events:
        sender.publish(event)

    assert sender.wait_idle(WITHIN_S / 4)
    assert sender.close(WITHIN_S / 4)
    delivered = await read_topic(kafka_broker, topics.events, expected=len(events))
    assert sorted(decode_event(r.value).event_id for r in delivered) == sorted(e.event_id for e in events)
