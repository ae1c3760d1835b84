"""`spendpipe budgets ...` and `spendpipe blocks ...`: what operators set and watch."""

import asyncio
import contextlib
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from spendpipe.admin.budget_admin import BudgetAdmin
from spendpipe.admin.budget_file import load_budget_file
from spendpipe.admin.render import add_plain_row, console, message, plain
from spendpipe.admin.settings import AdminSettings
from spendpipe.contracts.budgets import Budget
from spendpipe.contracts.decisions import MESSAGE_TYPE as DECISION_TYPE
from spendpipe.contracts.decisions import Decision, LatestDecisions
from spendpipe.platform.compacted import CompactedTopicReader, TopicRecord
from spendpipe.platform.settings import require_keys
from spendpipe.platform.signing import uncollected_rejections

budgets_app = typer.Typer(help="Budgets on the compacted spend.budgets topic.", no_args_is_help=True)
blocks_app = typer.Typer(help="Block/unblock decisions on spend.decisions.", no_args_is_help=True)
out = console()


def _admin(settings: AdminSettings) -> BudgetAdmin:
    return BudgetAdmin(kafka=settings.kafka, topics=settings.topics, signing=settings.signing)


def _pairs(values: list[str], option: str) -> list[tuple[str, str]]:
    pairs = []
    for value in values:
        left, sep, right = value.partition("=")
        if not sep:
            raise typer.BadParameter(f"{value!r}: expected NAME=VALUE", param_hint=option)
        pairs.append((left, right))
    return pairs


@budgets_app.command("set")
def budgets_set(
    ctx: typer.Context,
    scope: Annotated[str, typer.Option(help="team:search, key:<sha256>, user:alice, end_user:acme, global ...")],
    max_budget: Annotated[str | None, typer.Option(help="cap in USD, e.g. 10 or 0.50")] = None,
    budget_duration: Annotated[str | None, typer.Option(help="15m, 1h, 24h, 7d, 30d, 1mo ...")] = None,
    budget_limit: Annotated[list[str] | None, typer.Option(help="DURATION=CAP, repeatable: 24h=10")] = None,
    soft_budget: Annotated[str | None, typer.Option(help="alert threshold in USD")] = None,
    max_budget_in_team: Annotated[str | None, typer.Option(help="team: cap per member")] = None,
    max_end_user_budget: Annotated[str | None, typer.Option(help="global: default cap per end customer")] = None,
    model_max_budget: Annotated[
        list[str] | None, typer.Option(help="MODEL=CAP or MODEL=CAP/DURATION, repeatable")
    ] = None,
    rpm_limit: Annotated[int | None, typer.Option(help="requests per sliding minute")] = None,
    tpm_limit: Annotated[int | None, typer.Option(help="tokens per sliding minute")] = None,
    max_parallel_requests: Annotated[int | None, typer.Option(help="requests in flight, per gateway")] = None,
    model_rpm_limit: Annotated[list[str] | None, typer.Option(help="MODEL=RPM, repeatable")] = None,
    model_tpm_limit: Annotated[list[str] | None, typer.Option(help="MODEL=TPM, repeatable")] = None,
    token_rate_limit_type: Annotated[
        str | None, typer.Option(help="tokens a tpm limit counts: input, output or total (default)")
    ] = None,
    max_budget_per_session: Annotated[str | None, typer.Option(help="agent: spend cap of each session, USD")] = None,
    max_iterations: Annotated[int | None, typer.Option(help="agent: LLM calls each session may make")] = None,
) -> None:
    """Set (replace) the budget and rate limits of one scope."""
    settings: AdminSettings = ctx.obj
    document: dict[str, object] = {"scope": scope}
    optional = {
        "max_budget": max_budget,
        "budget_duration": budget_duration,
        "soft_budget": soft_budget,
        "max_budget_in_team": max_budget_in_team,
        "max_end_user_budget": max_end_user_budget,
        "rpm_limit": rpm_limit,
        "tpm_limit": tpm_limit,
        "max_parallel_requests": max_parallel_requests,
        "token_rate_limit_type": token_rate_limit_type,
        "max_budget_per_session": max_budget_per_session,
        "max_iterations": max_iterations,
    }
    document |= {name: value for name, value in optional.items() if value is not None}
    if budget_limit:
        document["budget_limits"] = [
            {"budget_duration": d, "max_budget": c} for d, c in _pairs(budget_limit, "--budget-limit")
        ]
    if model_max_budget:
        document["model_max_budget"] = {
            model: dict(zip(("max_budget", "budget_duration"), cap.split("/", 1), strict=False))
            for model, cap in _pairs(model_max_budget, "--model-max-budget")
        }
    for name, pairs in (("model_rpm_limit", model_rpm_limit), ("model_tpm_limit", model_tpm_limit)):
        if pairs:
            document[name] = dict(_pairs(pairs, "--" + name.replace("_", "-")))
    budget = _admin(settings).set(document)  # refused: `errors.explain` says nothing was published
    out.print(message("budget of ", (budget.scope, "bold"), " published"))


@budgets_app.command("apply")
def budgets_apply(ctx: typer.Context, file: Annotated[Path, typer.Option(exists=True, dir_okay=False)]) -> None:
    """Publish every budget in a YAML file (all or none)."""
    budgets = load_budget_file(file)
    _admin(ctx.obj).set_many(budgets)
    out.print(message(f"{len(budgets)} budget(s) published from ", file))


@budgets_app.command("delete")
def budgets_delete(ctx: typer.Context, scope: Annotated[str, typer.Option()]) -> None:
    """Delete a scope's budget; its blocks lift."""
    try:
        _admin(ctx.obj).delete(scope)
    except ValueError as error:  # not a scope
        raise typer.BadParameter(str(error), param_hint="--scope") from None
    out.print(message("budget of ", (scope, "bold"), " deleted"))


@budgets_app.command("resign")
def budgets_resign(
    ctx: typer.Context,
    include_unsigned: Annotated[
        bool, typer.Option(help="also take budgets no accepted key signed (turning signing on over old records)")
    ] = False,
) -> None:
    """Publish every budget in force again, signed with this writer's key (after a key rotation)."""
    budgets = _admin(ctx.obj).resign(include_unsigned=include_unsigned)
    for budget in budgets:
        out.print(message("signed the budget of ", (budget.scope, "bold")))
    out.print(message(f"{len(budgets)} budget(s) published again"))


@budgets_app.command("list")
def budgets_list(ctx: typer.Context) -> None:
    """Every budget in force."""
    out.print(budgets_table(_admin(ctx.obj).current()))


def budgets_table(budgets: list[Budget]) -> Table:
    table = Table(title="budgets", title_justify="left")
    for column in ("scope", "max_budget", "budget_duration", "budget_limits", "other"):
        table.add_column(column)
    for b in budgets:
        limits = ", ".join(f"{w.max_budget:f}/{w.budget_duration}" for w in b.budget_limits)
        other = b.model_dump(
            exclude_none=True,
            exclude={"schema_version", "scope", "max_budget", "budget_duration", "budget_limits"},
            exclude_defaults=True,
            mode="json",
        )
        add_plain_row(
            table,
            [
                b.scope,
                f"{b.max_budget:f}" if b.max_budget is not None else "",
                b.budget_duration or ("lifetime" if b.max_budget is not None else ""),
                limits,
                " ".join(f"{k}={v}" for k, v in other.items()),
            ],
        )
    return table


@blocks_app.command("list")
def blocks_list(ctx: typer.Context) -> None:
    """Blocks in force now."""
    decisions = asyncio.run(_read_decisions(ctx.obj, follow=False))
    now = datetime.now(UTC)
    out.print(decisions_table([d for d in decisions if d.in_force(now)], "blocks in force"))


@blocks_app.command("tail")
def blocks_tail(ctx: typer.Context) -> None:
    """Print decisions as the enforcer publishes them, until Ctrl-C."""
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_read_decisions(ctx.obj, follow=True))


async def _read_decisions(settings: AdminSettings, *, follow: bool) -> LatestDecisions:
    require_keys(settings.signing, writes=False, reads=True)
    topic = settings.topics.decisions
    verifier = settings.signing.verifier(message_type=DECISION_TYPE, topic=topic, rejected=uncollected_rejections())
    latest = LatestDecisions()

    def apply(record: TopicRecord) -> None:
        if record.value is None or not verifier.accepts(record):  # verified before it can outrank a version
            return
        decision = Decision.model_validate_json(record.value)
        if latest.offer(decision) and follow:
            state = ("BLOCK", "red") if decision.blocked else ("unblock", "green")
            when = f"{decision.decided_at:%H:%M:%S}"
            out.print(message(f"{when} ", state, f" {decision.key} v{decision.version}: {decision.reason}"))

    async with CompactedTopicReader(kafka=settings.kafka, topic=topic, on_record=apply) as reader:
        await reader.catch_up()
        if follow:
            await reader.follow()
    return latest


def decisions_table(decisions: list[Decision], title: str, *, reasons: bool = True) -> Table:
    table = Table(title=plain(title), title_justify="left")
    table.add_column("scope", overflow="ellipsis", max_width=40, no_wrap=True)
    for column in ("model", "spend", "cap", "window", "expires_at"):
        table.add_column(column, no_wrap=True)
    if reasons:
        table.add_column("reason", overflow="fold")
    for d in sorted(decisions, key=lambda d: d.key):
        cells = [
            d.scope,
            d.model or "(all)",
            f"{d.spend.normalize():f}" if d.spend is not None else "",
            f"{d.cap.normalize():f}" if d.cap is not None else "",
            d.window or "",
            f"{d.expires_at:%Y-%m-%d %H:%M:%S}Z" if d.expires_at else "never",
        ]
        add_plain_row(table, [*cells, *([d.reason] if reasons else [])])
    return table
