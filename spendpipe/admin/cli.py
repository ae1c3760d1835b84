"""`spendpipe`: run the services, query spend, manage topics.

The services' runner, the notifier, the preflight checks and the AsyncAPI builder are imported by
the commands that use them (the store's query modules that listings share still load with the
module): together they took about 0.9 s of the 1.4 s this module took to import (2026-12-03),
which every listing and `--help` paid before printing anything."""

import asyncio
import logging
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from enum import StrEnum
from importlib.metadata import version
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from pydantic_settings import BaseSettings
from rich.console import RenderableType
from rich.live import Live
from typer._click.exceptions import NoArgsIsHelpError

from spendpipe.admin.cli_budgets import blocks_app, budgets_app
from spendpipe.admin.cli_demo import demo
from spendpipe.admin.cli_keys import keys_app
from spendpipe.admin.cli_report import html_report
from spendpipe.admin.cli_tail import alerts_app, dlq_app
from spendpipe.admin.cli_traffic import traffic
from spendpipe.admin.errors import CliError, quiet_client_logs, report
from spendpipe.admin.formats import FormatOption, OutputFormat, emit
from spendpipe.admin.render import console, message, result_table
from spendpipe.admin.scope_options import KeyOption, scope_or_key
from spendpipe.admin.settings import AdminSettings
from spendpipe.aggregator.settings import AggregatorSettings
from spendpipe.contracts.scopes import ScopeType
from spendpipe.contracts.windows import Window
from spendpipe.enforcer.settings import EnforcerSettings
from spendpipe.notifier.settings import NotifierSettings
from spendpipe.platform.kafka_topics import TopicsRefusedError, ensure_topics, topic_specs
from spendpipe.platform.settings import PipelineSettings, SettingsError, load_settings

app = typer.Typer(
    help="spendpipe: exact LLM spend from gateways to ClickHouse.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,  # a local may hold a raw key (--key) or a secret setting
)
run_app = typer.Typer(help="Run services in this process until SIGINT/SIGTERM.", no_args_is_help=True)
topics_app = typer.Typer(help="Kafka topics.", no_args_is_help=True)
app.add_typer(run_app, name="run")
app.add_typer(topics_app, name="topics")
app.add_typer(keys_app, name="keys")
app.add_typer(alerts_app, name="alerts")
app.add_typer(dlq_app, name="dlq")
app.command()(traffic)
app.command("report")(html_report)
app.command()(demo)

S = TypeVar("S", bound=BaseSettings)

out = console()

ValidateOption = Annotated[bool, typer.Option("--validate", help="Check the settings and exit.")]


class Service(StrEnum):
    AGGREGATOR = "aggregator"
    ENFORCER = "enforcer"
    ALL = "all"


def _settings(cls: type[S]) -> S:
    """Settings that do not load end the command with exit 2 (`errors.explain`)."""
    return load_settings(cls)


def _admin_context(ctx: typer.Context) -> None:
    quiet_client_logs(debug=_Options.debug)
    ctx.obj = _settings(AdminSettings)


app.add_typer(budgets_app, name="budgets", callback=_admin_context)
app.add_typer(blocks_app, name="blocks", callback=_admin_context)


def _logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


@run_app.command("aggregator")
def run_aggregator(validate: ValidateOption = False) -> None:
    """Consume spend.events into exact windowed totals in ClickHouse."""
    _run(Service.AGGREGATOR, validate)


@run_app.command("enforcer")
def run_enforcer(validate: ValidateOption = False) -> None:
    """Compare budgets with the totals and publish block/unblock decisions (needs a ClickHouse
    server DSN, or use `run all` with the embedded store)."""
    _run(Service.ENFORCER, validate)


@run_app.command("all")
def run_all(validate: ValidateOption = False) -> None:
    """Every service in one process: what the embedded (chdb://) store needs."""
    _run(Service.ALL, validate)


@run_app.command("notifier")
def run_notifier(validate: ValidateOption = False) -> None:
    """Deliver soft-budget and burn-rate alerts, blocks and unblocks to webhooks (SPENDPIPE_WEBHOOKS), at least once."""
    settings = _settings(NotifierSettings)
    found = settings.signing.key_problems(writes=False, reads=True)
    if found:
        raise CliError("\n  ".join(["notifier cannot start:", *found]), exit_code=2)
    if validate:
        out.print(message("settings for ", ("notifier", "bold"), " are valid"))
        return
    from spendpipe.notifier.app import serve as serve_notifier  # noqa: PLC0415 - see the module's docstring

    _logging()
    asyncio.run(serve_notifier(settings))


def _run(service: Service, validate: bool) -> None:
    from spendpipe.admin import preflight  # noqa: PLC0415 - see the module's docstring
    from spendpipe.runner import Services, serve  # noqa: PLC0415

    services = Services(
        aggregator=_settings(AggregatorSettings) if service is not Service.ENFORCER else None,
        enforcer=_settings(EnforcerSettings) if service is not Service.AGGREGATOR else None,
    )
    found = preflight.problems(services)
    if found:
        lines = [str(problem) for problem in found]
        text = lines[0] if len(lines) == 1 else "\n  ".join([f"{service} cannot start:", *lines])
        raise CliError(text, exit_code=max(problem.exit_code for problem in found))
    if validate:
        out.print(message("settings for ", (service, "bold"), " are valid"))
        return
    _logging()
    asyncio.run(serve(services))


@app.command()
def spend(
    scope: Annotated[
        str | None,
        typer.Option(
            help="team:eng, key:<hash>, user:alice, team_member:eng/alice, global; "
            "a bare type (team, the default) lists every scope of it"
        ),
    ] = None,
    key: KeyOption = None,
    window: Annotated[
        Window, typer.Option(help="calendar window (in SPENDPIPE_BUDGET_TIMEZONE, UTC by default)")
    ] = Window.DAY,
    model: Annotated[str | None, typer.Option(help="a model name, or * for one row per model")] = None,
    at: Annotated[datetime | None, typer.Option(help="an instant in the window (UTC); default now")] = None,
    limit: Annotated[int, typer.Option(min=1, max=10_000)] = 50,
    watch: Annotated[
        float, typer.Option(min=0, max=86_400, help="refresh every N seconds until Ctrl-C (0: once; table only)")
    ] = 0.0,
    fmt: FormatOption = OutputFormat.TABLE,
) -> None:
    """Spend, requests and tokens of a scope in a window, from ClickHouse."""
    if watch > 0 and fmt is not OutputFormat.TABLE:
        raise typer.BadParameter("--watch redraws a table; use it with --format table", param_hint="--watch")
    from spendpipe.store.calendar import check_calendar  # noqa: PLC0415 - see the module's docstring
    from spendpipe.store.sql_endpoint.client import sql_source  # noqa: PLC0415
    from spendpipe.store.totals import SpendQuery, SpendTotals  # noqa: PLC0415

    settings = _settings(AdminSettings)
    scope_type, scope_id = _parse_scope(scope, key)
    shown = f"{scope_type.value}:{scope_id}" if scope_id else f"any {scope_type.value}"
    source = sql_source(settings.clickhouse, settings.sql_endpoint_url)
    totals = SpendTotals(sql=source, calendar=settings.calendar)

    def read() -> tuple[str, list[str], Sequence[Sequence[Any]]]:
        instant = (at.replace(tzinfo=at.tzinfo or UTC)) if at else datetime.now(UTC)
        columns, rows = totals.in_window(SpendQuery(scope_type, scope_id, window, instant, model, limit))
        return f"{window.value} of {instant:%Y-%m-%d %H:%M} UTC", columns, rows

    def render() -> RenderableType:
        when, columns, rows = read()
        if not rows:
            return message(f"no spend recorded for {shown} in the {when}")
        return result_table(f"{shown} — {when}", columns, rows)

    try:
        check_calendar(source, settings.calendar)
        if watch <= 0:
            when, columns, rows = read()
            table = result_table(f"{shown} — {when}", columns, rows)
            emit(fmt, table=table, columns=columns, rows=rows, empty=f"no spend recorded for {shown} in the {when}")
            return
        with Live(render(), console=out, refresh_per_second=4) as live:
            while True:
                time.sleep(watch)
                live.update(render())
    except KeyboardInterrupt:
        return
    except RuntimeError as error:
        raise CliError(str(error)) from None


def _parse_scope(text: str | None, key: str | None) -> tuple[ScopeType, str | None]:
    """A scope, or with a bare type (`team`, the default) every scope of that type."""
    if key is None:
        text = text or ScopeType.TEAM.value
        if ":" not in text and text != ScopeType.GLOBAL.value:
            return _scope_type(text), None
    parsed = scope_or_key(text, key)
    return parsed.type, parsed.id


def _scope_type(text: str) -> ScopeType:
    try:
        return ScopeType(text)
    except ValueError:
        known = ", ".join(t.value for t in ScopeType)
        raise typer.BadParameter(
            f"unknown scope type {text!r} (expected one of: {known})", param_hint="--scope"
        ) from None


@app.command()
def sql(
    query: Annotated[str, typer.Argument(help="a read-only query, e.g. SELECT ... FROM spend_by_scope")],
    fmt: FormatOption = OutputFormat.TABLE,
) -> None:
    """Run read-only SQL against the store and print the result."""
    from spendpipe.store.sql_endpoint.client import sql_source  # noqa: PLC0415 - see the module's docstring

    settings = _settings(AdminSettings)
    try:
        columns, rows = sql_source(settings.clickhouse, settings.sql_endpoint_url).query(query)
    except RuntimeError as error:
        raise CliError(str(error)) from None
    emit(fmt, table=result_table("", columns, rows), columns=columns, rows=rows, empty="no rows")


@topics_app.command("create")
def topics_create(
    partitions: Annotated[int, typer.Option(min=1)] = 3,
    replication: Annotated[int, typer.Option(min=1)] = 1,
) -> None:
    """Create spendpipe's topics (compacted where they hold state) if they are missing."""
    quiet_client_logs(debug=_Options.debug)
    settings = _settings(AdminSettings)
    specs = topic_specs(settings.topics, partitions=partitions, replication=replication)
    try:
        created = asyncio.run(ensure_topics(settings.kafka, specs))
    except TopicsRefusedError as error:
        raise CliError(str(error)) from None
    out.print(message(f"created: {', '.join(created) or 'nothing, all topics exist'}"))


@app.command()
def asyncapi(
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write the document to this file instead of printing it.")
    ] = None,
) -> None:
    """Print the AsyncAPI document of every topic (YAML), generated from the services' wiring."""
    from spendpipe.admin.asyncapi import build_document  # noqa: PLC0415 - it wires every service

    document = build_document()
    if output is None:
        typer.echo(document, nl=False)
        return
    output.write_text(document, encoding="utf-8")
    typer.echo(f"wrote {output}", err=True)


def _print_version(asked: bool) -> None:
    if asked:
        out.print(message(f"spendpipe {version('spendpipe')}"))
        raise typer.Exit


@app.callback()
def _options(
    debug: Annotated[bool, typer.Option("--debug", help="On an error, print its traceback too.")] = False,
    _version: Annotated[
        bool, typer.Option("--version", callback=_print_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    _Options.debug = debug


class _Options:
    debug = False


def main() -> None:
    try:
        # not standalone: a usage error comes here too, to be said in one line like every other
        code = app(prog_name="spendpipe", standalone_mode=False)
    except NoArgsIsHelpError as asked:
        asked.show()  # the help, as `spendpipe` and `spendpipe budgets` print it with no command
        raise SystemExit(asked.exit_code) from None
    except Exception as error:
        raise SystemExit(report(error, kafka_servers=_kafka_servers(), debug=_Options.debug)) from None
    raise SystemExit(code if isinstance(code, int) else 0)


def _kafka_servers() -> str | None:
    try:
        return load_settings(PipelineSettings).kafka.bootstrap_servers
    except SettingsError:
        return None


if __name__ == "__main__":
    main()
