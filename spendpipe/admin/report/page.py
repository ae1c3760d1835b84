"""The report as one HTML page: inline CSS and SVG, no script, no external reference.

Every value from data is escaped (`svg.esc`, `html.escape` with quotes): a team named
`<script>…</script>` is shown as those characters. The page carries no `<script>` of its own,
so a browser that opens it runs nothing and fetches nothing.
"""

from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from spendpipe.admin.report import svg
from spendpipe.admin.report.data import TOP_SPENDERS, Burn, ReportData
from spendpipe.contracts.decisions import Decision
from spendpipe.enforcer.burn_rate import Projection
from spendpipe.store.totals import Measurement

TITLE = "spendpipe spend report"
LONG = 24
_STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#222;max-width:1180px}
h1{font-size:22px}h2{font-size:17px;margin-top:28px;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:8px 0;max-width:100%}
td,th{padding:3px 10px;border-bottom:1px solid #eee;text-align:left}td.long{overflow-wrap:anywhere}
td.money{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
.legend{list-style:none;padding:0;display:flex;flex-wrap:wrap;gap:12px}
.swatch{display:inline-block;width:10px;height:10px;margin-right:4px}
.blocked{color:#b00020;font-weight:600}.none{color:#777}
"""


def render(data: ReportData) -> str:
    period = data.period
    header = (
        f"{period.window.value} from {_when(period.start)} to {_when(period.end)} UTC, "
        f"bars per {period.grain.value}; generated {_when(data.generated_at)} UTC"
    )
    labels = [period.label(at) for at in data.buckets]
    sections = [
        f"<h1>{svg.esc(TITLE)}</h1><p>{svg.esc(header)}</p>",
        _section("spend-by-team", "Spend by team", svg.stacked_bars("spend by team", labels, data.by_team)),
        _totals(data.team_totals),
        _section("spend-by-model", "Spend by model", svg.stacked_bars("spend by model", labels, data.by_model)),
        _section(
            "burn-down",
            "Budget burn-down",
            "".join(_burn(b, labels, data.buckets, data.generated_at) for b in data.burns) or _none("budgets"),
        ),
        _section("blocks", "Blocks in force", _decisions(data.blocks) if data.blocks else _none("blocks in force")),
        _section("decisions", "Recent decisions", _decisions(data.recent) if data.recent else _none("decisions")),
        _section("top-spenders", f"Top spenders ({TOP_SPENDERS} of each scope type)", _top(data.top)),
    ]
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{svg.esc(TITLE)}</title><style>{_STYLE}</style></head>"
        f"<body>{''.join(sections)}</body></html>\n"
    )


def _section(ident: str, heading: str, body: str) -> str:
    return f'<section id="{ident}"><h2>{svg.esc(heading)}</h2>{body}</section>'


def _none(what: str) -> str:
    return f'<p class="none">no {svg.esc(what)}</p>'


def _when(at: datetime) -> str:
    return f"{at:%Y-%m-%d %H:%M}"


def _table(ident: str | None, head: list[str], rows: list[list[tuple[str, bool]]]) -> str:
    """Cells are (text, is_money); every text escaped here."""
    th = "".join(f"<th>{svg.esc(name)}</th>" for name in head)
    body = "".join(
        "<tr>" + "".join(f"<td{_cell_class(text, m)}>{svg.esc(text)}</td>" for text, m in row) + "</tr>" for row in rows
    )
    named = f' id="{ident}"' if ident else ""
    return f"<table{named}><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>"


def _cell_class(text: str, money: bool) -> str:
    """Money never wraps; a long value (a key hash, a reason) may break anywhere to fit."""
    return ' class="money"' if money else ' class="long"' if len(text) > LONG else ""


def _totals(totals: dict[str, Decimal]) -> str:
    ranked = sorted(totals.items(), key=lambda item: (-item[1], item[0]))
    return _table("team-totals", ["team", "spend (USD)"], [[(t, False), (svg.money(s), True)] for t, s in ranked])


def _burn(burn: Burn, labels: list[str], buckets: list[datetime], now: datetime) -> str:
    tightest = max(burn.caps, key=lambda m: m.spend / m.cap.limit if m.cap.limit else Decimal(0))
    rows = [
        [
            (m.cap.duration.text if m.cap.duration else "lifetime", False),
            (svg.money(m.spend), True),
            (svg.money(m.cap.limit), True),
            (_when(datetime.fromtimestamp(m.end, tz=UTC)) if m.end else "never", False),
            (_reached(m, projection), False),
        ]
        for m, projection in zip(burn.caps, burn.projections, strict=True)
    ]
    elapsed = burn.per_bucket[: len(labels) - sum(1 for at in buckets if at > now)]  # the line stops at now
    chart = svg.burn_down(f"{burn.budget.scope} against its cap", labels, elapsed, tightest.cap.limit)
    return (
        f'<div class="burn" data-scope="{svg.esc(burn.budget.scope)}"><h3>{svg.esc(burn.budget.scope)}</h3>'
        f"{chart}{_table(None, BURN_COLUMNS, rows)}</div>"
    )


BURN_COLUMNS = ["cap window", "spent (USD)", "cap (USD)", "resets (UTC)", "cap reached at this rate (UTC)"]


def _reached(measured: Measurement, projection: Projection | None) -> str:
    """When the cap is reached if spend goes on at the rate of the enforcer's lookback."""
    if measured.spend >= measured.cap.limit:
        return "reached"
    if projection is None:
        return "no projection" if measured.end is None else "no rate yet"
    if projection.exhausted_at is None:
        return "not at this rate (no spend lately)"
    if not projection.before_reset:
        return "not before the reset"
    return _when(datetime.fromtimestamp(float(projection.exhausted_at), tz=UTC))


def _decisions(decisions: list[Decision]) -> str:
    rows = [
        [
            (d.scope, False),
            (d.model or "(all)", False),
            ("BLOCK" if d.blocked else "unblock", False),
            (svg.money(d.spend) if d.spend is not None else "", True),
            (svg.money(d.cap) if d.cap is not None else "", True),
            (d.window or "", False),
            (_when(d.expires_at) if d.expires_at else ("never" if d.blocked else ""), False),
            (_when(d.decided_at), False),
            (d.reason, False),
        ]
        for d in decisions
    ]
    head = ["scope", "model", "decision", "spend", "cap", "window", "until (UTC)", "decided (UTC)", "reason"]
    return _table(None, head, rows)


def _top(rows: Sequence[Sequence[Any]]) -> str:
    if not rows:
        return _none("spend")
    ranks: dict[str, int] = {}
    cells = []
    for scope_type, scope_id, spend, requests in rows:
        ranks[scope_type] = ranks.get(scope_type, 0) + 1
        rank = str(ranks[scope_type])
        money = svg.money(Decimal(spend))
        cells.append(
            [(rank, False), (str(scope_type), False), (str(scope_id), False), (money, True), (str(requests), False)]
        )
    return _table("top", ["#", "scope type", "scope id", "spend (USD)", "requests"], cells)
