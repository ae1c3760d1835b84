"""The processes of the overshoot benchmark: `spendpipe run all` and the gateway workers, each a
real OS process on loopback, stopped (SIGTERM, then SIGKILL) when the block ends."""

import contextlib
import json
import os
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from spendpipe.contracts.topics import Topics
from spendpipe.platform.processes import terminate

ROOT = Path(__file__).resolve().parents[1]


@contextlib.contextmanager
def running_pipeline(bootstrap: str, topics: Topics, workdir: Path) -> Iterator[subprocess.Popen[bytes]]:
    """`spendpipe run all` (aggregator and enforcer on an embedded ClickHouse), default tuning."""
    env = {
        **os.environ,
        "SPENDPIPE_KAFKA__BOOTSTRAP_SERVERS": bootstrap,
        **{f"SPENDPIPE_TOPICS__{name.upper()}": value for name, value in topics.model_dump().items()},
        "SPENDPIPE_CLICKHOUSE__DSN": f"chdb://{workdir / 'clickhouse'}",
        "SPENDPIPE_GROUP_ID": f"aggregator-{topics.events}",
        "SPENDPIPE_ENFORCER_GROUP_ID": f"enforcer-{topics.events}",
        "SPENDPIPE_SQL_ENDPOINT__ENABLED": "false",
        "SPENDPIPE_OPS__ENABLED": "false",
    }
    with (workdir / "pipeline.log").open("ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "spendpipe.admin.cli", "run", "all"],
            env=env,
            cwd=workdir,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        yield process
    finally:
        terminate(process, 30.0)


class Worker:
    """A `benchmarks.overshoot_gateway` process, spoken to in JSON lines."""

    def __init__(self, args: list[str], directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        with (directory / "stderr.log").open("ab") as errors:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "benchmarks.overshoot_gateway", *args],
                env={**os.environ, "PYTHONPATH": str(ROOT)},
                cwd=directory,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=errors,
                text=True,
            )
        self._lines: queue.Queue[str] = queue.Queue()
        assert self.process.stdout is not None
        threading.Thread(target=self._read, args=(self.process.stdout,), daemon=True).start()

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            self._lines.put(line)
        self._lines.put("")  # end of output: the process has gone

    def send(self, message: dict[str, Any]) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(message) + "\n")
        self.process.stdin.flush()

    def expect(self, key: str, deadline: float) -> dict[str, Any]:
        """The next message, which must hold `key`, by `deadline` (time.monotonic())."""
        try:
            line = self._lines.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            raise TimeoutError(f"gateway {self.directory.name}: no {key!r} in time\n{self.stderr_tail()}") from None
        message = json.loads(line) if line else {}
        if key not in message:
            raise RuntimeError(f"gateway {self.directory.name} said {line!r}, not {key!r}\n{self.stderr_tail()}")
        return dict(message)

    def stderr_tail(self, lines: int = 30) -> str:
        return "\n".join((self.directory / "stderr.log").read_text(errors="replace").splitlines()[-lines:])

    def close(self) -> None:
        if self.process.stdin is not None and not self.process.stdin.closed:
            with contextlib.suppress(OSError):
                self.process.stdin.close()  # end of input: the worker closes its plugin and exits
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=15)
        terminate(self.process, 30.0)


@contextlib.contextmanager
def running_gateways(count: int, common: list[str], workdir: Path) -> Iterator[list[Worker]]:
    workers: list[Worker] = []
    try:
        for n in range(count):
            workers.append(Worker([*common, "--gateway-id", f"overshoot-gw-{n}"], workdir / f"gateway-{n}"))
        yield workers
    finally:
        for worker in workers:
            worker.close()
