"""`spendpipe demo` (what `make run` runs) as an operator uses it: started in a directory of its
own, with its own broker, pipeline and LiteLLM traffic; a second shell there reads spend and sets
a budget with nothing but the `.env` the demo wrote; the demo's traffic shows LiteLLM's refusal;
Ctrl-C stops everything it started and frees its ports."""

import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

from spendpipe.platform.local_broker import free_port_pair
from tests.support.processes import run_cli, shell_env
from tests.support.waiting import eventually_sync

REFUSAL = re.compile(r"refused demo-support-\d \(team support\): BudgetExceededError: .*")
"""How the demo shows a refused call: the key's alias and team, then LiteLLM's error."""


def processes_in(directory: Path) -> dict[int, str]:
    """Every live process whose working directory is `directory` (the demo, and what it started
    there: the broker's JVM and `spendpipe run all`), with its command line."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if (entry / "cwd").resolve() == directory:
                found[int(entry.name)] = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:  # gone meanwhile, or not ours to read
            continue
    return found


def listening(port: int) -> bool:
    """Something accepts connections on 127.0.0.1:`port` (a closed server's TIME_WAIT does not)."""
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def test_demo_until_ctrl_c(tmp_path: Path) -> None:
    workdir = tmp_path.resolve()
    kafka_port, sql_port, ops_port = free_port_pair(), free_port_pair(), free_port_pair()
    ports = (kafka_port, kafka_port + 1, sql_port, ops_port)
    shell = shell_env() | {"LITELLM_LOCAL_MODEL_COST_MAP": "True", "COLUMNS": "200"}
    output = workdir / "demo.out"
    command = [sys.executable, "-m", "spendpipe.admin.cli", "demo", "--rate", "5", "--data-dir", "data"]
    command += ["--kafka-port", str(kafka_port), "--sql-port", str(sql_port), "--ops-port", str(ops_port)]
    with output.open("wb") as sink:
        demo = subprocess.Popen(command, cwd=workdir, env=shell, stdout=sink, stderr=subprocess.STDOUT)

    def shown() -> str:
        return output.read_text(errors="replace")

    def running() -> bool:
        if demo.poll() is not None:
            raise AssertionError(f"the demo exited with {demo.returncode}:\n{shown()}")
        return True

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return run_cli({}, *args, cwd=workdir, base=shell)

    try:
        eventually_sync(lambda: running() and (workdir / ".env").exists(), bool, within=120, what="the .env")
        assert f"SPENDPIPE_SQL_ENDPOINT_URL='http://127.0.0.1:{sql_port}'" in (workdir / ".env").read_text()
        spend = eventually_sync(
            lambda: running() and cli("spend", "--scope", "team", "--window", "day", "--format", "csv"),
            lambda result: result.returncode == 0 and "\nsupport," in result.stdout,
            within=30,
            what="spend of team support through the CLI",
        )
        assert spend.stdout.startswith("scope_id,"), spend.stdout

        budget = cli("budgets", "set", "--scope", "team:support", "--max-budget", "0.000001", "--budget-duration=24h")
        assert budget.returncode == 0, budget.stderr
        refusal = eventually_sync(
            lambda: running() and REFUSAL.search(shown()),
            bool,
            within=30,
            what="the demo's traffic refused for team:support",
        )
        assert "team:support" in refusal.group(), refusal.group()

        # the pipeline the demo runs keeps the block for SQL (blocks_history)
        recorded = eventually_sync(
            lambda: cli("sql", "SELECT action FROM blocks_history WHERE scope_id = 'support'", "--format", "csv"),
            lambda result: result.stdout.splitlines()[1:] == ["block"],
            within=30,
            what="the block of team:support in blocks_history",
        )
        assert recorded.returncode == 0, recorded.stderr

        started = processes_in(workdir)
        pipeline = re.search(r"started `spendpipe run all` \(pid (\d+)", shown())
        assert pipeline is not None, shown()
        broker = int((workdir / "data" / "kafka" / "broker.pid").read_text())
        assert {demo.pid, int(pipeline.group(1)), broker} <= started.keys(), started
        assert all(listening(port) for port in ports)

        demo.send_signal(signal.SIGINT)
        demo.wait(timeout=90)
        left = processes_in(workdir)
        still_listening = [port for port in ports if listening(port)]
    finally:
        if demo.poll() is None:
            demo.kill()
        for pid in processes_in(workdir):  # only when the test failed: leave nothing behind
            os.kill(pid, signal.SIGKILL)

    assert demo.returncode == 0, shown()
    assert left == {}
    assert still_listening == []
    assert not (workdir / ".env").exists()
    assert shown().rstrip().endswith("demo stopped"), shown()[-2000:]
