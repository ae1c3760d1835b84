"""What the demo shows while it runs: spend per team and per key today, each demo key's answers,
and the blocks the demo's gateway holds. Redrawn in place on a terminal; elsewhere (a pipe, a
file) only the lines above the tables appear as they happen, and the tables once at the end."""

from collections.abc import Mapping
from datetime import UTC, datetime

from rich.console import Group
from rich.table import Table

from spendpipe.admin.cli_budgets import decisions_table
from spendpipe.admin.demo.traffic import KEYS, KeyTally
from spendpipe.admin.render import add_plain_row, result_table
from spendpipe.contracts.decisions import Decision
from spendpipe.contracts.scopes import ScopeType
from spendpipe.contracts.windows import UTC_SUNDAY, Calendar, Window, window_start
from spendpipe.store.sql_endpoint.client import Result, SqlSource
from spendpipe.store.totals import SpendQuery, SpendTotals

PER_KEY = (
    "SELECT any(key_alias) AS key_alias, sum(cost) AS spend, count() AS requests FROM events "
    "WHERE occurred_at >= toDateTime({today:UInt32}) GROUP BY key_hash ORDER BY spend DESC"
)


def screen(
    source: SqlSource, tallies: Mapping[str, KeyTally], blocks: list[Decision], calendar: Calendar = UTC_SUNDAY
) -> Group:
    now = datetime.now(UTC)
    try:
        per_team = _columns(
            SpendTotals(sql=source, calendar=calendar).in_window(SpendQuery(ScopeType.TEAM, None, Window.DAY, now)),
            ("scope_id", "spend", "requests", "total_tokens"),
        )
        per_key = source.query(PER_KEY, {"today": window_start(Window.DAY, int(now.timestamp()), calendar)})
    except RuntimeError as error:  # the pipeline is stopping, or busy: say so, keep the traffic going
        per_team = per_key = (["unavailable"], [[str(error)]])
    return Group(
        result_table("spend per team today (spend_totals)", *per_team),
        result_table("spend per key today (events; raw keys never leave the gateway)", *per_key),
        _answers(tallies),
        decisions_table(blocks, "blocks in force at this gateway (spend.decisions)"),
    )


def _columns(result: Result, names: tuple[str, ...]) -> Result:
    """The named columns of a result, in that order (a terminal of 80 columns fits them)."""
    columns, rows = result
    if not rows:  # an empty answer may come without its column names
        return list(names), []
    at = [columns.index(name) for name in names]
    return list(names), [[row[n] for n in at] for row in rows]


def _answers(tallies: Mapping[str, KeyTally]) -> Table:
    table = Table(title="LiteLLM calls of this demo", title_justify="left")
    for column in ("key_alias", "team", "served", "refused", "now"):
        table.add_column(column, justify="right" if column in ("served", "refused") else "left")
    for key in KEYS:
        tally = tallies[key.alias]
        add_plain_row(table, [key.alias, key.team, tally.served, tally.refused, tally.refusing or "served"])
    return table
