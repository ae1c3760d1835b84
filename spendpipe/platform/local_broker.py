"""A real Apache Kafka broker on this machine, for `spendpipe demo`, the tests and the benchmarks.

deploy/kafka/kafka-local.sh fetches the broker from Maven Central, formats KRaft storage and
starts it on loopback. The script lives in the repository, not in the wheel: a broker can be
started only from a checkout (an editable install, as `make setup` makes), and `kafka_script()`
says whether this install has one.
"""

import random
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path

CHECKOUT = Path(__file__).resolve().parents[2]
"""The repository checkout, when the package is installed from one in editable mode."""
SCRIPT = CHECKOUT / "deploy" / "kafka" / "kafka-local.sh"


def kafka_script() -> Path | None:
    """deploy/kafka/kafka-local.sh of the checkout this package runs from, if it runs from one."""
    return SCRIPT if SCRIPT.is_file() else None


PORTS = range(20_000, 32_000)
"""Where `free_port_pair` looks: below the kernel's ephemeral range (32768 and up on Linux), so
no client socket opened meanwhile can take a port between the check and the server's bind.
Test processes that run side by side (pytest-xdist's workers) each narrow it to a share of their
own (tests/conftest.py), so none hands out a port another has chosen but not yet bound."""


def free_port_pair() -> int:
    """A port p in `PORTS` with p and p+1 free on loopback (broker and controller listeners)."""
    for _ in range(200):
        port = random.randrange(PORTS.start, PORTS.stop - 1)  # noqa: S311 - a port number, not a secret
        if port_free(port) and port_free(port + 1):
            return port
    raise RuntimeError("no free pair of loopback ports")


def port_free(port: int) -> bool:
    """Nothing listens on (or holds) 127.0.0.1:`port`."""
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
    script: Path = SCRIPT

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        options = ["--config", str(self.config)] if self.config else []
        for credential in self.scram:
            options += ["--add-scram", credential]
        self._run("start", str(self.data_dir), str(self.port), *options)

    def stop(self) -> None:
        self._run("stop", str(self.data_dir))

    @property
    def pid(self) -> int | None:
        """The running broker's process id (kafka-local.sh keeps it in the data directory)."""
        try:
            return int((self.data_dir / "broker.pid").read_text())
        except (FileNotFoundError, ValueError):
            return None

    def running(self) -> bool:
        return subprocess.run([str(self.script), "status", str(self.data_dir)], check=False).returncode == 0

    def _run(self, *args: str) -> None:
        result = subprocess.run([str(self.script), *args], capture_output=True, text=True, timeout=180, check=False)
        if result.returncode != 0:
            raise RuntimeError(f"kafka-local.sh {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
