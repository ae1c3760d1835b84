"""A real Apache Kafka broker on this machine, for `make run`, the tests and the benchmarks:
deploy/kafka/kafka-local.sh fetches the broker from Maven Central, formats KRaft storage and
starts it on loopback. Development tooling: it needs the repository checkout, not just the package."""

import contextlib
import random
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
"""The repository checkout (an editable install)."""
SCRIPT = ROOT / "deploy" / "kafka" / "kafka-local.sh"


def free_port_pair() -> int:
    """A port p with p and p+1 free on loopback (broker and controller listeners).

    Chosen below the kernel's ephemeral range (32768 and up on Linux), so no client socket
    opened meanwhile can take it between this check and the server's bind."""
    for _ in range(200):
        port = random.randrange(20_000, 32_000)  # noqa: S311 - a port number, not a secret
        if _free(port) and _free(port + 1):
            return port
    raise RuntimeError("no free pair of loopback ports")


def _free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@dataclass
class LocalBroker:
    data_dir: Path
    port: int
    config: Path | None = None
    """Properties appended to deploy/kafka/server.properties (`kafka-local.sh start --config`),
    e.g. a filled-in deploy/kafka/sasl-acls.properties."""
    scram: tuple[str, ...] = ()
    """SCRAM credentials written when the data directory is formatted (`--add-scram`), e.g.
    `SCRAM-SHA-512=[name=admin,password=...]`."""

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        options = ["--config", str(self.config)] if self.config else []
        for credential in self.scram:
            options += ["--add-scram", credential]
        _script("start", str(self.data_dir), str(self.port), *options)

    def stop(self) -> None:
        _script("stop", str(self.data_dir))

    def running(self) -> bool:
        return subprocess.run([str(SCRIPT), "status", str(self.data_dir)], check=False).returncode == 0


def _script(*args: str) -> None:
    result = subprocess.run([str(SCRIPT), *args], capture_output=True, text=True, timeout=180, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"kafka-local.sh {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")


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
