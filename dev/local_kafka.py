"""The local Kafka broker (spendpipe/platform/local_broker.py, which `spendpipe demo` uses too),
as the tests and the benchmarks import it, plus a throwaway broker for a block of code."""

import contextlib
import tempfile
from collections.abc import Iterator
from pathlib import Path

from spendpipe.platform.local_broker import CHECKOUT, SCRIPT, LocalBroker, free_port_pair

ROOT = CHECKOUT
"""The repository checkout (an editable install)."""

__all__ = ["ROOT", "SCRIPT", "LocalBroker", "free_port_pair", "throwaway_broker"]


@contextlib.contextmanager
def throwaway_broker(prefix: str = "spendpipe-kafka-") -> Iterator[str]:
    """A broker in a temporary directory on a free port, for as long as the block runs; yields
    its bootstrap address."""
    with tempfile.TemporaryDirectory(prefix=prefix) as data:
        broker = LocalBroker(Path(data), free_port_pair())
        broker.start()
        try:
            yield broker.bootstrap
        finally:
            broker.stop()
