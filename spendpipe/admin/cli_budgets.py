"""`spendpipe budgets ...` and `spendpipe blocks ...`: what operators set and watch."""

import asyncio
import contextlib
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError
from rich.table import Table

from spendpipe.admin.budget_admin import BudgetAdmin
from spendpipe.admin.budget_file import load_budget_file
from spendpipe.admin.formats import FormatOption, OutputFormat, emit
from spendpipe.admin.render import add_plain_row, console, message, plain
from spendpipe.admin.scope_options import KeyOption, scope_or_key
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
    scope: Annotated[
        str | None,
        typer.Option(
            help="team:search, key:<sha256>, user:alice, end_user:acme, tag:batch, provider:openai, global ..."
        ),
    ] = None,
    key: KeyOption = None,
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
    headroom_leases: Annotated[
        bool, typer.Option("--headroom-leases", help="hold the caps by headroom leases (docs/leases.md)")
    ] = False,
) -> None:
    """Set (replace) the budget and rate limits of one scope."""
    settings: AdminSettings = ctx.obj
    # a --scope is checked with the rest of the budget, which names every problem at once
    document: dict[str, object] = {"scope": scope if key is None and scope else str(scope_or_key(scope, key))}
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
    if headroom_leases:
        document["headroom_leases"] = True
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
def budgets_delete(
    ctx: typer.Context, scope: Annotated[str | None, typer.Option()] = None, key: KeyOption = None
) -> None:
    """Delete a scope's budget; its blocks lift."""
    target = str(scope_or_key(scope, key))
    _admin(ctx.obj).delete(target)
    out.print(message("budget of ", (target, "bold"), " deleted"))


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
def budgets_list(ctx: typer.Context, fmt: FormatOption = OutputFormat.TABLE) -> None:
    """Every budget in force. JSON: each budget as it is on the topic; CSV: the table's columns
    (`other` as a JSON object)."""
    budgets = _admin(ctx.obj).current()
    emit(
        fmt,
        table=budgets_table(budgets),
        columns=BUDGET_COLUMNS,
        rows=[_budget_row(b) for b in budgets],
        documents=[b.model_dump(mode="json", exclude_none=True) for b in budgets],
        empty="no budgets",
    )


BUDGET_COLUMNS = ("scope", "max_budget", "budget_duration", "budget_limits", "other")


def _budget_row(b: Budget) -> list[Any]:
    other = b.model_dump(
        exclude_none=True,
        exclude={"schema_version", "scope", "version", "max_budget", "budget_duration", "budget_limits"},
        exclude_defaults=True,
        mode="json",
    )
    return [
        b.scope,
        b.max_budget,
        b.budget_duration or ("lifetime" if b.max_budget is not None else ""),
        ", ".join(f"{w.max_budget:f}/{w.budget_duration}" for w in b.budget_limits),
        other,
    ]


def budgets_table(budgets: list[Budget]) -> Table:
    table = Table(title="budgets", title_justify="left")
    for column in BUDGET_COLUMNS:
        table.add_column(column)
    for b in budgets:
        scope, cap, duration, limits, other = _budget_row(b)
        shown_other = " ".join(f"{k}={v}" for k, v in other.items())
        add_plain_row(table, [scope, f"{cap:f}" if cap is not None else "", duration, limits, shown_other])
    return table


@blocks_app.command("list")
def blocks_list(ctx: typer.Context, fmt: FormatOption = OutputFormat.TABLE) -> None:
    """Blocks in force now. The table leaves the reasons out (they repeat the scope, spend and
    cap); JSON (each decision as it is on the topic) and CSV carry them."""
    decisions = asyncio.run(read_decisions(ctx.obj, follow=False))
    now = datetime.now(UTC)
    blocks = sorted((d for d in decisions if d.in_force(now)), key=lambda d: d.key)
    emit(
        fmt,
        table=decisions_table(blocks, "blocks in force"),
        columns=BLOCK_COLUMNS,
        rows=[
            [d.scope, d.model, d.kind, d.rate_limit_type, d.spend, d.cap, d.window, d.expires_at, d.reason]
            for d in blocks
        ],
        documents=[d.model_dump(mode="json") for d in blocks],
        empty="no blocks in force",
    )


BLOCK_COLUMNS = ("scope", "model", "kind", "rate_limit_type", "spend", "cap", "window", "expires_at", "reason")


@blocks_app.command("tail")
def blocks_tail(ctx: typer.Context) -> None:
    """Print decisions as the enforcer publishes them, until Ctrl-C."""
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(read_decisions(ctx.obj, follow=True))


async def read_decisions(settings: AdminSettings, *, follow: bool) -> LatestDecisions:
    require_keys(settings.signing, writes=False, reads=True)
    topic = settings.topics.decisions
    verifier = settings.signing.verifier(message_type=DECISION_TYPE, topic=topic, rejected=uncollected_rejections())
    latest = LatestDecisions()

    def apply(record: TopicRecord) -> None:
        value = verifier.accepted_value(record)  # verified before it can outrank a version
        if value is None:
            return
        try:
            decision = Decision.model_validate_json(value)
        except ValidationError:  # a verified writer's record this version cannot read
            verifier.refuse("unreadable", record)  # logged once, as the forgeries are
            return
        if latest.offer(decision) and follow:
            state = ("BLOCK", "red") if decision.blocked else ("unblock", "green")
            when = f"{decision.decided_at:%H:%M:%S}"
            out.print(message(f"{when} ", state, f" {decision.key} v{decision.version}: {decision.reason}"))

    async with CompactedTopicReader(kafka=settings.kafka, topic=topic, on_record=apply) as reader:
        await reader.catch_up()
        if follow:
            await reader.follow()
    return latest


_LIMIT_NAMES = {"requests": "rpm", "tokens": "tpm", "max_parallel_requests": "parallel"}


def decisions_table(decisions: list[Decision], title: str, *, reasons: bool = False) -> Table:
    """One line per decision, 80 columns and up: only the scope, the model (and the reason) give
    way, shortened with an ellipsis; amounts and times are never cut. `per` is the budget's
    window or, for a rate limit, what it counts (spend and cap are then requests or tokens)."""
    ordered = sorted(decisions, key=lambda d: d.key)
    rows = [_decision_cells(d) for d in ordered]
    table = Table(title=plain(title), title_justify="left")
    table.add_column("scope", min_width=12)
    table.add_column("model", max_width=32)
    for n, column in enumerate(("spend", "cap", "per", "until (UTC)"), start=2):
        whole = max([len(column), *(len(cells[n]) for cells in rows)])
        table.add_column(column, no_wrap=True, min_width=whole, justify="right" if n < 4 else "left")
    if reasons:
        table.add_column("reason")
    for d, cells in zip(ordered, rows, strict=True):
        shown = [plain(cell) for cell in [*cells, *([d.reason] if reasons else [])]]
        for cell in (shown[0], shown[1], *shown[6:]):
            # the column gives way to the amounts, the cell stays one line: `…` where it is cut
            cell.no_wrap, cell.overflow = True, "ellipsis"
        table.add_row(*shown)
    return table


def _decision_cells(d: Decision) -> list[str]:
    per = _LIMIT_NAMES.get(d.rate_limit_type or "", "rate") if d.kind == "rate_limit" else d.window
    return [
        d.scope,
        d.model or "(all)",
        f"{d.spend.normalize():f}" if d.spend is not None else "",
        f"{d.cap.normalize():f}" if d.cap is not None else "",
        per or "",
        f"{d.expires_at:%m-%d %H:%M:%S}" if d.expires_at else "never",
    ]
