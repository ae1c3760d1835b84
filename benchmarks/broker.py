"""A real local Kafka broker for a benchmark run, on a free loopback port."""

import contextlib
import tempfile
from collections.abc import Iterator
from pathlib import Path

from spendpipe.platform.local_kafka import LocalBroker, free_port_pair


@contextlib.contextmanager
def local_broker() -> Iterator[str]:
    with tempfile.TemporaryDirectory(prefix="spendpipe-bench-kafka-") as data:
        broker = LocalBroker(Path(data), free_port_pair())
        broker.start()
        try:
            yield broker.bootstrap
        finally:
            broker.stop()
