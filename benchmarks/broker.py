"""A real local Kafka broker for a benchmark run (deploy/kafka/kafka-local.sh), on a free port."""

import contextlib
import random
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "deploy" / "kafka" / "kafka-local.sh"


def _free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@contextlib.contextmanager
def local_broker() -> Iterator[str]:
    port = next(p for p in (random.randrange(20_000, 32_000) for _ in range(200)) if _free(p) and _free(p + 1))
    with tempfile.TemporaryDirectory(prefix="spendpipe-bench-kafka-") as data:
        subprocess.run([str(SCRIPT), "start", data, str(port)], check=True, capture_output=True, timeout=180)
        try:
            yield f"127.0.0.1:{port}"
        finally:
            subprocess.run([str(SCRIPT), "stop", data], check=False, capture_output=True, timeout=120)
