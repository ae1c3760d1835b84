"""`spendpipe demo`: the whole pipeline on this machine with gentle LiteLLM traffic, until Ctrl-C.

No Docker and no internet: a real Kafka broker (from a checkout's deploy/kafka/kafka-local.sh),
`spendpipe run all` on the embedded ClickHouse store, and LiteLLM `mock_response` calls through
the gateway plugin in SDK mode, priced from LiteLLM's packaged cost map. What it starts is in
`demo/stack.py`, the traffic in `demo/traffic.py`, what it shows in `demo/screen.py`.
"""

import importlib
import os
import signal
import threading
import time
from decimal import Decimal
from pathlib import Path
from typing import Annotated

import typer
from rich.live import Live

from spendpipe.admin.demo.stack import DemoOptions, DemoStack
from spendpipe.admin.errors import quiet_client_logs
from spendpipe.admin.render import console, message
from spendpipe.store.sql_endpoint.client import EndpointSource

out = console()
REFRESH_S = 1.0
TRAFFIC = "spendpipe.admin.demo.traffic"
"""The demo's traffic module: it imports LiteLLM and the gateway plugin."""


def demo(
    ctx: typer.Context,
    rate: Annotated[float, typer.Option(min=0.01, help="LiteLLM calls per second")] = 2.0,
    duration: Annotated[float, typer.Option(min=0, help="seconds of traffic, then stop (0: until Ctrl-C)")] = 0.0,
    data_dir: Annotated[
        Path, typer.Option(file_okay=False, help="the broker's log, the embedded store, keys, spool, pipeline.log")
    ] = Path(".data"),
    env_file: Annotated[
        Path, typer.Option(dir_okay=False, help="settings for `spendpipe` commands run from this directory")
    ] = Path(".env"),
    kafka_port: Annotated[
        int, typer.Option(min=1, max=65534, help="the local broker's port (its controller: the next one)")
    ] = 19092,
    bootstrap_servers: Annotated[
        str | None, typer.Option(help="use this Kafka instead of starting a local broker")
    ] = None,
    sql_port: Annotated[int, typer.Option(min=1, max=65535, help="the pipeline's SQL endpoint")] = 8124,
    ops_port: Annotated[
        int, typer.Option(min=0, max=65535, help="the pipeline's /healthz, /readyz, /metrics (0: any free)")
    ] = 9464,
    key_budget: Annotated[str, typer.Option(help="daily budget in USD of the demo key that gets blocked")] = "0.001",
) -> None:
    """Start a local broker and the pipeline on embedded ClickHouse, send LiteLLM mock calls and
    show live spend and refusals until Ctrl-C; write a .env for `spendpipe` commands meanwhile."""
    quiet_client_logs(debug=bool(ctx.find_root().params.get("debug")))
    options = DemoOptions(
        rate=rate,
        duration_s=duration,
        data_dir=data_dir,
        env_file=env_file,
        kafka_port=kafka_port,
        bootstrap_servers=bootstrap_servers,
        sql_port=sql_port,
        ops_port=ops_port,
        key_budget=_money(key_budget),
    )
    # Ctrl-C, SIGTERM and a closed terminal all end the demo through the stack's cleanup, even
    # when it was started with SIGINT ignored (as a background job of a non-interactive shell is)
    for stop_signal in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(stop_signal, signal.default_int_handler)
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # before LiteLLM is imported
    # LiteLLM takes seconds to import: meanwhile, while the broker and the pipeline start
    threading.Thread(target=importlib.import_module, args=(TRAFFIC,), name="import-litellm", daemon=True).start()
    try:
        with DemoStack(options=options, say=_say) as stack:
            _show_traffic(stack)
    except KeyboardInterrupt:
        pass
    out.print(message("demo stopped"))


def _money(text: str) -> Decimal:
    try:
        return Decimal(text)
    except ArithmeticError:
        raise typer.BadParameter(f"not an amount: {text!r}", param_hint="--key-budget") from None


def _say(line: str) -> None:
    out.print(message(line))


def _show_traffic(stack: DemoStack) -> None:
    # LiteLLM only for this command, after the cost map setting above (imported by now, or soon)
    from spendpipe.admin.demo.screen import screen  # noqa: PLC0415
    from spendpipe.admin.demo.traffic import BUDGETED_KEY, DemoTraffic  # noqa: PLC0415
    from spendpipe.gateway.plugin import SpendpipeLogger  # noqa: PLC0415
    from spendpipe.gateway.settings import GatewaySettings  # noqa: PLC0415
    from spendpipe.platform.kafka import KafkaSettings  # noqa: PLC0415

    stack.set_key_budget(BUDGETED_KEY.raw, BUDGETED_KEY.alias)
    gateway = GatewaySettings(
        kafka=KafkaSettings(bootstrap_servers=stack.bootstrap),
        topics=stack.topics,
        spool_dir=stack.data_dir / "gateway-spool",
        signing=stack.signing(None),
    )
    plugin = SpendpipeLogger.from_settings(gateway)
    import litellm  # noqa: PLC0415

    litellm.callbacks = [plugin]
    traffic = DemoTraffic(plugin=plugin, rate=stack.options.rate, report=_say)
    _print_try_this(stack)
    source = EndpointSource(url=stack.sql_url, timeout_s=5)
    ends = time.monotonic() + stack.options.duration_s if stack.options.duration_s else None
    plugin.start()
    traffic.start()
    try:
        with Live(screen(source, traffic.tallies, [], gateway.calendar), console=out, refresh_per_second=4) as live:
            while ends is None or time.monotonic() < ends:
                threading.Event().wait(REFRESH_S)  # the screen's refresh interval
                live.update(screen(source, traffic.tallies, plugin.blocklist.in_force(), gateway.calendar))
        if not out.is_terminal:
            out.line()  # the tables end without one where they are printed once, at the end
    finally:
        traffic.stop()
        plugin.close()
        served = sum(t.served for t in traffic.tallies.values())
        refused = sum(t.refused for t in traffic.tallies.values())
        _say(f"{served} LiteLLM calls served and published, {refused} refused")


def _print_try_this(stack: DemoStack) -> None:
    lines = [
        f"The pipeline is running; {stack.options.env_file} points `spendpipe` commands in this directory at it.",
        "Try these from another shell here, and Ctrl-C here to stop everything:",
        "  .venv/bin/spendpipe spend --scope team --window day",
        "  .venv/bin/spendpipe spend --scope key --window day --format json",
        '  .venv/bin/spendpipe sql "SELECT rank, scope_id, spend FROM top_spenders '
        "WHERE window = 'day' AND scope_type = 'team'\"",
        "  .venv/bin/spendpipe blocks list",
        "  .venv/bin/spendpipe budgets set --scope team:search --max-budget 0.001 --budget-duration 24h",
        "  .venv/bin/spendpipe budgets delete --scope team:search",
        "  .venv/bin/spendpipe report --out report.html",
    ]
    for line in lines:
        out.print(message(line))
