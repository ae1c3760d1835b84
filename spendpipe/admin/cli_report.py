"""`spendpipe report`: write the HTML report (spendpipe/admin/report/) to a file."""

import asyncio
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from spendpipe.admin.budget_admin import BudgetAdmin
from spendpipe.admin.cli_budgets import read_decisions
from spendpipe.admin.errors import CliError, quiet_client_logs
from spendpipe.admin.render import console, message
from spendpipe.admin.report.data import Period, gather
from spendpipe.admin.report.page import render
from spendpipe.admin.settings import AdminSettings
from spendpipe.contracts.windows import Window
from spendpipe.platform.settings import load_settings
from spendpipe.store.calendar import check_calendar
from spendpipe.store.sql_endpoint.client import sql_source

out = console()


class ReportWindow(StrEnum):
    """The calendar windows a report covers: hourly bars up to two days, daily bars beyond."""

    HOUR = "hour"
    DAY = "day"
    WEEK = "week"
    MONTH = "month"


def html_report(
    ctx: typer.Context,
    destination: Annotated[Path, typer.Option("--out", dir_okay=False, help="the HTML file to write")],
    window: Annotated[
        ReportWindow,
        typer.Option(help="the calendar window the report covers (in SPENDPIPE_BUDGET_TIMEZONE, UTC by default)"),
    ] = ReportWindow.DAY,
    since: Annotated[
        datetime | None, typer.Option(help="start the charts here instead of at the window's start (UTC)")
    ] = None,
) -> None:
    """Write one offline HTML page: spend over time by team and model, budget burn-down, blocks
    and recent decisions, top spenders."""
    quiet_client_logs(debug=bool(ctx.find_root().params.get("debug")))
    settings = load_settings(AdminSettings)
    now = datetime.now(UTC)
    period = Period.of(
        Window(window.value), now, since.replace(tzinfo=since.tzinfo or UTC) if since else None, settings.calendar
    )
    budgets = BudgetAdmin(kafka=settings.kafka, topics=settings.topics, signing=settings.signing).current()
    decisions = list(asyncio.run(read_decisions(settings, follow=False)))
    try:
        source = sql_source(settings.clickhouse, settings.sql_endpoint_url)
        check_calendar(source, settings.calendar)
        data = gather(source, budgets, decisions, period, now, lookback_minutes=settings.burn_rate.lookback_minutes)
    except RuntimeError as error:
        raise CliError(str(error)) from None
    destination.write_text(render(data), encoding="utf-8")
    out.print(message("report written to ", (destination, "bold")))
