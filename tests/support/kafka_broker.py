"""A real local Kafka broker for tests, started with deploy/kafka/kafka-local.sh."""

import random
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "deploy" / "kafka" / "kafka-local.sh"


def free_port_pair() -> int:
    """A port p with p and p+1 free on loopback (broker and controller listeners).

    Chosen below the kernel's ephemeral range (32768 and up on Linux), so no client socket the
    tests open can take it between this check and the server's bind."""
    for _ in range(200):
        port = random.randrange(20_000, 32_000)
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

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        _script("start", str(self.data_dir), str(self.port))

    def stop(self) -> None:
        _script("stop", str(self.data_dir))


def _script(*args: str) -> None:
    result = subprocess.run([str(SCRIPT), *args], capture_output=True, text=True, timeout=180, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"kafka-local.sh {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
