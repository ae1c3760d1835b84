"""`make run`: the whole pipeline on this machine, with no Docker and no internet.

Starts a real Kafka broker (deploy/kafka/kafka-local.sh) unless SPENDPIPE_KAFKA__BOOTSTRAP_SERVERS
names one, creates the topics, starts `spendpipe run all` (aggregator and enforcer) on the
embedded ClickHouse engine, gives one demo key a small daily budget, drives LiteLLM
`mock_response` calls through the gateway plugin in SDK mode (checking the block list before
each call, as SDK users do), and shows spend per team and per key, and the blocks, as they land.
Decisions and budgets are signed: local keys are made once under .data/keys (`spendpipe keys
generate`), the enforcer signs with `enforcer.key`, the demo's budget with `admin.key`.
Ctrl-C stops everything it started.
"""

import argparse
import asyncio
import os
import random
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console, Group
from rich.live import Live

from dev.local_kafka import LocalBroker
from spendpipe.admin.budget_admin import BudgetAdmin
from spendpipe.admin.cli_budgets import decisions_table
from spendpipe.admin.render import result_table
from spendpipe.contracts.scopes import ScopeType, hash_api_key
from spendpipe.contracts.topics import Topics
from spendpipe.contracts.windows import Window
from spendpipe.platform.kafka import KafkaSettings
from spendpipe.platform.kafka_topics import ensure_topics, topic_specs
from spendpipe.platform.signing import SigningSettings, generate_key_pair
from spendpipe.store.sql_endpoint.client import EndpointSource
from spendpipe.store.sql_endpoint.settings import DEFAULT_URL
from spendpipe.store.totals import SpendQuery, SpendTotals

if TYPE_CHECKING:
    from spendpipe.gateway.plugin import SpendpipeLogger

DATA = Path(".data")
KEY_DIR = DATA / "keys"
TEAMS = ["search", "support", "research"]
KEYS = [f"sk-demo-{team}-{n}" for team in TEAMS for n in range(2)]
BUDGETED_KEY = KEYS[-1]
DAILY_BUDGET = "0.002"
MODELS = ["gpt-4o-mini", "gpt-4o", "gpt-3.5-turbo"]
console = Console()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=600)
    parser.add_argument("--rate", type=float, default=40.0, help="calls per second")
    parser.add_argument("--port", type=int, default=19092, help="local broker port")
    parser.add_argument("--exit", action="store_true", help="stop once the traffic is counted")
    args = parser.parse_args()
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    admin_signing = _local_keys()
    # Ctrl-C and SIGTERM both end the demo through the cleanup below, even when the demo was
    # started with SIGINT ignored (as a background job of a non-interactive shell is)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)

    bootstrap = os.environ.get("SPENDPIPE_KAFKA__BOOTSTRAP_SERVERS")
    broker = LocalBroker(DATA / "kafka", args.port)
    # start a broker unless one is named, or the previous demo's is still up
    own_broker = bootstrap is None and not broker.running()
    bootstrap = bootstrap or broker.bootstrap
    pipeline: subprocess.Popen[bytes] | None = None
    try:
        if own_broker:
            broker.start()
            console.print(f"Kafka broker on {broker.bootstrap} (data in {broker.data_dir})")
        kafka = KafkaSettings(bootstrap_servers=bootstrap)
        asyncio.run(ensure_topics(kafka, topic_specs(Topics(), partitions=3, replication=1)))
        budget = {"scope": f"key:{hash_api_key(BUDGETED_KEY)}", "max_budget": DAILY_BUDGET, "budget_duration": "24h"}
        BudgetAdmin(kafka=kafka, topics=Topics(), signing=admin_signing).set(budget)
        console.print(f"budget: {BUDGETED_KEY} may spend ${DAILY_BUDGET} a day")
        pipeline = _start_pipeline(bootstrap)
        source = EndpointSource(url=DEFAULT_URL)
        _wait_ready(source, pipeline)
        _drive_and_show(bootstrap, source, args.calls, args.rate)
        if not args.exit:
            console.print(
                "\n[bold]The pipeline is still running.[/bold] In another shell try:\n"
                "  .venv/bin/spendpipe spend --scope team --window day\n"
                "  .venv/bin/spendpipe spend --scope global --window month --model '*'\n"
                "  .venv/bin/spendpipe sql "
                "'SELECT team_id, count(), sum(cost) FROM events GROUP BY team_id'\n"
                f"  export SPENDPIPE_KAFKA__BOOTSTRAP_SERVERS={bootstrap}\n"
                f"  export SPENDPIPE_SIGNING__PUBLIC_KEYS_DIR={KEY_DIR}/public\n"
                "  .venv/bin/spendpipe blocks list\n"
                "  .venv/bin/spendpipe budgets list\n"
                "Ctrl-C stops it."
            )
            threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        if pipeline is not None and pipeline.poll() is None:
            pipeline.send_signal(signal.SIGTERM)
            pipeline.wait(timeout=60)
        if own_broker:
            broker.stop()


def _local_keys() -> SigningSettings:
    """The demo's writer keys, made once under .data/keys; every process it starts accepts
    their public keys (unless SPENDPIPE_SIGNING__* says otherwise). Returns the admin's."""
    for name in ("enforcer", "admin"):
        if not (KEY_DIR / "private" / f"{name}.key").exists():
            generate_key_pair(KEY_DIR / "private" / f"{name}.key", KEY_DIR / "public" / f"{name}.pub")
    os.environ.setdefault("SPENDPIPE_SIGNING__PUBLIC_KEYS_DIR", str(KEY_DIR / "public"))
    return SigningSettings(
        private_key_file=KEY_DIR / "private" / "admin.key",
        public_keys_dir=Path(os.environ["SPENDPIPE_SIGNING__PUBLIC_KEYS_DIR"]),
    )


def _start_pipeline(bootstrap: str) -> subprocess.Popen[bytes]:
    DATA.mkdir(exist_ok=True)
    log = (DATA / "pipeline.log").open("ab")
    console.print(f"starting [bold]spendpipe run all[/bold] (log: {DATA / 'pipeline.log'})")
    return subprocess.Popen(
        [sys.executable, "-m", "spendpipe.admin.cli", "run", "all"],
        env={
            **os.environ,
            "SPENDPIPE_KAFKA__BOOTSTRAP_SERVERS": bootstrap,
            "SPENDPIPE_CLICKHOUSE__DSN": f"chdb://{DATA / 'clickhouse'}",
            "SPENDPIPE_SIGNING__PRIVATE_KEY_FILE": os.environ.get(
                "SPENDPIPE_SIGNING__PRIVATE_KEY_FILE", str(KEY_DIR / "private" / "enforcer.key")
            ),
        },
        stdout=log,
        stderr=subprocess.STDOUT,
    )


def _wait_ready(source: EndpointSource, pipeline: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if pipeline.poll() is not None:
            raise SystemExit(f"spendpipe run all exited with {pipeline.returncode}; see {DATA / 'pipeline.log'}")
        try:
            source.query("SELECT 1")
            return
        except RuntimeError:
            threading.Event().wait(0.3)
    raise SystemExit("spendpipe run all did not become ready in 120 s")


def _drive_and_show(bootstrap: str, source: EndpointSource, calls: int, rate: float) -> None:
    # LiteLLM is imported only here, after main() told it to keep to its packaged price map
    import litellm  # noqa: PLC0415

    from spendpipe.gateway.plugin import SpendpipeLogger  # noqa: PLC0415
    from spendpipe.gateway.settings import GatewaySettings  # noqa: PLC0415

    plugin = SpendpipeLogger.from_settings(
        GatewaySettings(kafka=KafkaSettings(bootstrap_servers=bootstrap), spool_dir=DATA / "gateway-spool")
    )
    litellm.callbacks = [plugin]
    rng = random.Random(42)  # noqa: S311 - demo traffic, not security
    done = threading.Event()
    refused = 0

    async def traffic() -> None:
        nonlocal refused
        for n in range(calls):
            key = rng.choice(KEYS)
            team = key.split("-")[2]
            call: dict[str, Any] = {
                "model": rng.choice(MODELS),
                "user": f"customer-{rng.randint(1, 5)}",
                "metadata": {
                    "user_api_key": key,
                    "user_api_key_alias": key.removeprefix("sk-"),
                    "user_api_key_user_id": f"{team}-dev-{n % 3}",
                    "user_api_key_team_id": team,
                },
            }
            try:
                plugin.check(**call)  # SDK mode: LiteLLM runs no pre-call hooks
            except litellm.BudgetExceededError:
                refused += 1
            else:
                await litellm.acompletion(
                    **call,
                    messages=[{"role": "user", "content": "hello " * rng.randint(1, 40)}],
                    mock_response="spend " * rng.randint(1, 80),
                )
            await asyncio.sleep(1 / rate)
        plugin.close()
        done.set()

    runner = threading.Thread(target=asyncio.run, args=(traffic(),), daemon=True)
    runner.start()
    with Live(_tables(source, plugin), console=console, refresh_per_second=4) as live:
        while not done.is_set():
            threading.Event().wait(0.5)
            live.update(_tables(source, plugin))
        deadline = time.monotonic() + 30
        while _counted(source) < calls - refused and time.monotonic() < deadline:
            threading.Event().wait(0.5)
        live.update(_tables(source, plugin))
    console.print(
        f"[green]{calls - refused} LiteLLM calls recorded, published, aggregated and counted; "
        f"{refused} refused because {BUDGETED_KEY} reached its budget.[/green]"
    )


def _counted(source: EndpointSource) -> int:
    return int(source.query("SELECT count() FROM events WHERE occurred_at >= toStartOfDay(now())")[1][0][0])


def _tables(source: EndpointSource, plugin: "SpendpipeLogger") -> Group:
    per_team = SpendTotals(sql=source).in_window(SpendQuery(ScopeType.TEAM, None, Window.DAY, datetime.now(UTC)))
    per_key = source.query(
        "SELECT any(key_alias) AS key_alias, left(key_hash, 16) AS key_hash_prefix, sum(cost) AS spend, "
        "count() AS requests FROM events WHERE occurred_at >= toStartOfDay(now()) "
        "GROUP BY key_hash ORDER BY spend DESC"
    )
    return Group(
        result_table("spend per team today (spend_totals)", *per_team),
        result_table("spend per key today (events; raw keys never leave the gateway)", *per_key),
        decisions_table(
            plugin.blocklist.in_force(), "blocks in force at this gateway (spend.decisions)", reasons=False
        ),
    )


if __name__ == "__main__":
    main()
