"""The report page: exact money, every data value as text, nothing a browser would fetch."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from spendpipe.admin.report.data import Burn, Period, ReportData
from spendpipe.admin.report.page import TITLE, render
from spendpipe.contracts.budgets import Budget
from spendpipe.contracts.decisions import Decision
from spendpipe.contracts.windows import Window
from spendpipe.enforcer.burn_rate import project
from spendpipe.store.totals import Measurement
from tests.support.html_page import outside_references, parse

HOSTILE = "<script>document.title='pwned'</script>"
NOW = datetime(2026, 3, 4, 15, 30, tzinfo=UTC)
TINY = Decimal("0.000000000000000000000001")


def report() -> ReportData:
    period = Period.of(Window.DAY, NOW)
    buckets = period.buckets()
    zero = [Decimal(0)] * len(buckets)
    eng = [*zero[:-1], Decimal("1.2") + TINY]
    budget = Budget(scope="team:eng", max_budget=Decimal(1), budget_duration="24h")
    (cap,) = budget.hard_caps()
    block = Decision(
        scope="team:eng",
        version=1,
        blocked=True,
        reason=f"over {HOSTILE}",
        window="24h",
        spend=Decimal("1.2") + TINY,
        cap=Decimal(1),
        expires_at=NOW + timedelta(hours=8),
        decided_at=NOW,
    )
    return ReportData(
        period=period,
        generated_at=NOW,
        buckets=buckets,
        by_team={"eng": eng, HOSTILE: [*zero[:-1], Decimal("0.05")]},
        by_model={'gpt"><img src=x>': eng},
        team_totals={"eng": Decimal("1.2") + TINY, HOSTILE: Decimal("0.05")},
        burns=[Burn(budget, eng, [Measurement(cap, Decimal("1.2") + TINY, int(NOW.timestamp()) + 3600)], [None])],
        blocks=[block],
        recent=[block],
        top=[("team", HOSTILE, Decimal("0.05"), 1)],
    )


def test_values_from_data_are_text_and_money_is_exact() -> None:
    html = render(report())
    page = parse(html)

    assert "<script" not in html
    assert "<img" not in html
    assert [t.text_content() for t in page.all("head")[0].all("title")] == [TITLE]
    assert [row[0] for row in page.by_id("team-totals").rows()] == ["eng", HOSTILE]
    assert page.by_id("team-totals").rows()[0][1] == "1.200000000000000000000001"
    assert [g.attrs["data-series"] for g in page.by_id("spend-by-team").all("g", class_="series")] == ["eng", HOSTILE]
    assert HOSTILE in page.by_id("top").text_content()
    assert outside_references(page) == []


def test_one_bar_per_hour_of_the_day_and_an_svg_per_chart() -> None:
    page = parse(render(report()))

    assert len(report().buckets) == 24
    assert len(page.all("svg")) == 3  # by team, by model, one burn-down
    assert page.by_id("burn-down").all("line", class_="cap")


def test_a_week_is_drawn_per_day_and_since_moves_the_start() -> None:
    week = Period.of(Window.WEEK, NOW)
    since = Period.of(Window.DAY, NOW, since=NOW - timedelta(hours=30))

    assert (week.grain, len(week.buckets()), week.label(week.buckets()[0])) == (Window.DAY, 7, "03-01")
    assert (since.grain, len(since.buckets())) == (Window.HOUR, 15 + 24)  # from 09:00 yesterday to the day's end


def test_each_cap_says_when_it_is_reached_at_the_current_rate() -> None:
    now = int(NOW.timestamp())
    resets = now + 3600
    budget = Budget(scope="team:eng", max_budget=Decimal(1), budget_duration="1h")
    (cap,) = budget.hard_caps()
    cases = [
        (Decimal("0.5"), Decimal("0.1"), "2026-03-04 15:40"),  # 0.5 left at 0.1 per 120 s: 600 s from now
        (Decimal("0.5"), Decimal("0.001"), "not before the reset"),
        (Decimal("0.5"), Decimal(0), "not at this rate (no spend lately)"),
        (Decimal("1.5"), Decimal("0.1"), "reached"),
    ]
    measured = [Measurement(cap, spend, resets) for spend, _, _ in cases]
    projected = [
        project(spend=spend, cap=Decimal(1), recent=recent, since=now - 120, now=now, resets_at=resets)
        for spend, recent, _ in cases
    ]
    burn = Burn(budget, [Decimal(0)] * 24, measured, projected)
    data = report()
    data.burns = [burn]

    rows = parse(render(data)).by_id("burn-down").all("table")[0].rows()

    assert [row[4] for row in rows] == [expected for _, _, expected in cases]


def test_a_value_that_reorders_or_hides_text_is_shown_escaped() -> None:
    """HTML escaping keeps markup out, not a right-to-left override (`team:\u202egnp.exe` reads as
    `team:exe.png`) nor a zero-width space (`eng` and `eng\u200b` would be two rows that look
    alike): the report shows them as the CLI does, `\\u202e`."""
    data = report()
    spoofed = {"eng": Decimal(1), "eng\u200b": Decimal(2), "team:\u202egnp.exe\x1b[2J": Decimal(3)}
    html = render(ReportData(**{**vars(data), "team_totals": spoofed}))

    assert [row[0] for row in parse(html).by_id("team-totals").rows()] == [
        "team:\\u202egnp.exe\\x1b[2J", "eng\\u200b", "eng"
    ]  # fmt: skip
    assert "\u202e" not in html
    assert "\u200b" not in html
