"""The CLI's failures, run as an operator meets them: one line on stderr naming what failed and
the setting to check, a non-zero exit, no traceback; and `run ... --validate` refuses what
start-up would refuse, with the same line."""

import socket
import subprocess
import time
from pathlib import Path

import pytest

from dev.local_kafka import free_port_pair
from tests.support.processes import run_all, run_cli

KAFKA_TIMEOUT_S = 10.0
"""A refused connection fails at once; this bounds the whole command, start-up included."""


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    return lines[0]


@pytest.mark.parametrize(
    "command",
    [("budgets", "set", "--scope", "team:eng", "--max-budget", "10"), ("blocks", "list"), ("budgets", "list")],
    ids=" ".join,
)
def test_kafka_unreachable_is_one_line_naming_the_setting(command: tuple[str, ...]) -> None:
    closed = f"127.0.0.1:{free_port_pair()}"  # free: nothing listens there

    started = time.monotonic()
    result = run_cli({"SPENDPIPE_KAFKA__BOOTSTRAP_SERVERS": closed}, *command)

    assert time.monotonic() - started < KAFKA_TIMEOUT_S
    assert result.returncode == 1
    line = one_error_line(result)
    assert f"cannot reach Kafka at {closed}: check SPENDPIPE_KAFKA__BOOTSTRAP_SERVERS" in line
    assert result.stdout == ""


def test_debug_adds_the_traceback() -> None:
    closed = f"127.0.0.1:{free_port_pair()}"

    result = run_cli({"SPENDPIPE_KAFKA__BOOTSTRAP_SERVERS": closed}, "--debug", "blocks", "list")

    assert result.returncode == 1
    assert "Traceback (most recent call last)" in result.stderr
    assert result.stderr.splitlines()[-1].startswith("error: cannot reach Kafka")


async def test_a_second_run_all_on_one_store_says_who_owns_it(kafka_broker: str, make_topics, tmp_path: Path) -> None:
    topics = await make_topics(kafka_broker)
    port = free_port_pair()
    first = run_all(kafka_broker, topics, tmp_path, sql_port=port)
    first.start()
    try:
        first.wait_http_ok(f"http://127.0.0.1:{port}/healthz")
        second_env = {**first.env, "SPENDPIPE_SQL_ENDPOINT__PORT": str(free_port_pair())}
        validated = run_cli(second_env, "run", "all", "--validate")
        second = run_cli(second_env, "run", "all")
    finally:
        first.stop()

    store = tmp_path / "clickhouse"
    expected = f"error: SPENDPIPE_CLICKHOUSE__DSN: another spendpipe process owns {store}"
    for result in (validated, second):
        assert result.returncode == 1
        assert one_error_line(result).startswith(expected)
    assert first.process is not None
    assert first.process.returncode == 0, first.log_tail()


def test_validate_refuses_an_sql_endpoint_port_in_use(tmp_path: Path) -> None:
    env = {"SPENDPIPE_CLICKHOUSE__DSN": f"chdb://{tmp_path / 'clickhouse'}", "SPENDPIPE_OPS__PORT": "0"}
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        env["SPENDPIPE_SQL_ENDPOINT__PORT"] = str(taken.getsockname()[1])

        validated = run_cli(env, "run", "all", "--validate")
        started = run_cli(env, "run", "all")

    for result in (validated, started):
        assert result.returncode == 1
        line = one_error_line(result)
        assert f"SPENDPIPE_SQL_ENDPOINT__PORT: cannot listen on 127.0.0.1:{env['SPENDPIPE_SQL_ENDPOINT__PORT']}" in line
    assert not (tmp_path / "clickhouse").exists()  # refused before anything was opened


def test_validate_refuses_what_cannot_start_and_names_every_variable(tmp_path: Path) -> None:
    not_a_directory = tmp_path / "file"
    not_a_directory.write_text("")
    env = {
        "SPENDPIPE_CLICKHOUSE__DSN": f"chdb://{not_a_directory}",
        "SPENDPIPE_KAFKA__SECURITY_PROTOCOL": "SSL",
        "SPENDPIPE_KAFKA__SSL_CAFILE": str(tmp_path / "missing-ca.pem"),
    }

    result = run_cli(env, "run", "all", "--validate")

    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "error: all cannot start:",
        f"  SPENDPIPE_KAFKA__SSL_CAFILE: no such file: {tmp_path / 'missing-ca.pem'}",
        f"  SPENDPIPE_CLICKHOUSE__DSN: {not_a_directory} is not a directory",
    ]
