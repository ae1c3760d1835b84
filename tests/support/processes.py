"""Services run as real subprocesses, with exactly the CLI a container would run."""

import os
import signal
import subprocess
import sys
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from spendpipe.contracts.topics import Topics
from spendpipe.platform.processes import terminate
from tests.support.waiting import eventually_sync


@dataclass
class ServiceProcess:
    """`spendpipe run <service>` with the given SPENDPIPE_* environment."""

    args: list[str]
    env: dict[str, str]
    log_path: Path
    process: subprocess.Popen[bytes] | None = field(default=None, init=False)

    def start(self) -> None:
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "spendpipe.admin.cli", *self.args],
            env={**os.environ, **self.env},
            stdout=log,
            stderr=subprocess.STDOUT,
        )

    def wait_http_ok(self, url: str, timeout: float = 60.0) -> None:
        def probe() -> bool:
            assert self.process is not None
            if self.process.poll() is not None:
                raise AssertionError(f"service exited with {self.process.returncode}:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(url, timeout=1) as response:
                    return bool(response.status == 200)
            except OSError:
                return False

        eventually_sync(probe, bool, within=timeout, what=f"{url} to answer")

    def kill(self) -> None:
        """SIGKILL: no shutdown hook runs, nothing is flushed."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)

    def stop(self) -> None:
        terminate(self.process)

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


def shell_env() -> dict[str, str]:
    """This environment without any SPENDPIPE_ setting: an operator's shell, where a process
    finds its settings in `.env` (the test session sets signing keys for its own processes)."""
    return {name: value for name, value in os.environ.items() if not name.startswith("SPENDPIPE_")}


def run_cli(
    env: dict[str, str], *args: str, cwd: Path | None = None, base: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """`spendpipe <args>` run once, as an operator runs it, with `env` over `base` (default: this
    environment) and a wide terminal, in `cwd`; its output captured as text."""
    return subprocess.run(
        [sys.executable, "-m", "spendpipe.admin.cli", *args],
        cwd=cwd,
        env={**(os.environ if base is None else base), "COLUMNS": "200", **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def run_all(bootstrap: str, topics: Topics, workdir: Path, *, sql_port: int, ops_port: int = 0) -> ServiceProcess:
    """`spendpipe run all` as a deployment runs it, on this test's topics, consumer groups and
    embedded store (`workdir/clickhouse`), logging to `workdir/run-all.log`; not started yet."""
    return ServiceProcess(
        ["run", "all"],
        {
            "SPENDPIPE_KAFKA__BOOTSTRAP_SERVERS": bootstrap,
            **{f"SPENDPIPE_TOPICS__{name.upper()}": value for name, value in topics.model_dump().items()},
            "SPENDPIPE_CLICKHOUSE__DSN": f"chdb://{workdir / 'clickhouse'}",
            "SPENDPIPE_GROUP_ID": f"agg-{topics.events}",
            "SPENDPIPE_ENFORCER_GROUP_ID": f"enf-{topics.events}",
            "SPENDPIPE_FETCH_MIN_BYTES": "1",
            "SPENDPIPE_SQL_ENDPOINT__PORT": str(sql_port),
            "SPENDPIPE_OPS__PORT": str(ops_port),
        },
        workdir / "run-all.log",
    )
