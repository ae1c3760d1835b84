"""Draws docs/report.png: `spendpipe report`'s page for a demo-like day, in headless Chromium.

    .venv/bin/python -m dev.report_picture

The data is made up here (seeded, so the picture is the same each run): the demo's teams and
models through a working day, two budgets, one key blocked. It goes through the same
`page.render` as the CLI; tests/integration/test_report.py covers the page on a real pipeline.
"""

import random
import subprocess
import tempfile
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from spendpipe.admin.report.data import Burn, Period, ReportData
from spendpipe.admin.report.page import render
from spendpipe.contracts.budgets import Budget
from spendpipe.contracts.decisions import Decision
from spendpipe.contracts.windows import Window
from spendpipe.enforcer.burn_rate import project
from spendpipe.store.totals import Measurement

NOW = datetime(2026, 3, 4, 17, 40, tzinfo=UTC)
TEAMS = {"search": 3.0, "support": 1.6, "research": 4.5, "platform": 0.8}
MODELS = {"gpt-4o": 0.55, "gpt-4o-mini": 0.3, "claude-3-haiku": 0.15}
KEY = "key:" + "9f2c" * 16
PICTURE = Path("docs/report.png")


def day() -> ReportData:
    rng = random.Random(16)  # noqa: S311 - a picture's made-up data, not a secret
    period = Period.of(Window.DAY, NOW)
    buckets = period.buckets()
    hours = [at.hour if at <= NOW else -1 for at in buckets]
    by_team = {
        team: [Decimal(f"{scale * _office(hour) * rng.uniform(0.6, 1.4):.6f}") for hour in hours]
        for team, scale in TEAMS.items()
    }
    total = [sum(column, Decimal(0)) for column in zip(*by_team.values(), strict=True)]
    by_model = {
        m: [(t * Decimal(str(share))).quantize(Decimal("0.000001")) for t in total] for m, share in MODELS.items()
    }
    research = Budget(scope="team:research", max_budget=Decimal(40), budget_duration="1d")
    key = Budget(scope=KEY, max_budget=Decimal(5), budget_duration="1d")
    key_spend = [(t * Decimal("0.135")).quantize(Decimal("0.000001")) for t in by_team["research"]]
    block = Decision(scope=KEY, version=3, blocked=True, reason=f"{KEY} spent over its 1d cap", window="1d",
                     spend=sum(key_spend, Decimal(0)), cap=Decimal(5), expires_at=period.end,
                     decided_at=NOW - timedelta(minutes=38))  # fmt: skip
    return ReportData(
        period=period,
        generated_at=NOW,
        buckets=buckets,
        by_team=by_team,
        by_model=by_model,
        team_totals={team: sum(values, Decimal(0)) for team, values in by_team.items()},
        burns=[_burn(research, by_team["research"], period.end), _burn(key, key_spend, period.end)],
        blocks=[block],
        recent=[block],
        top=[("team", t, s, int(s * 400)) for t, s in sorted(((t, sum(v, Decimal(0))) for t, v in by_team.items()),
                                                              key=lambda item: -item[1])],
    )  # fmt: skip


def _office(hour: int) -> float:
    return 0.0 if hour < 0 else 0.15 + max(0.0, 1 - abs(hour - 13) / 6)


def _burn(budget: Budget, spent: list[Decimal], end: datetime) -> Burn:
    (cap,) = budget.hard_caps()
    now, total = int(NOW.timestamp()), sum(spent, Decimal(0))
    # the rate of the last hour's bar, as the enforcer's lookback would read it
    recent = next(value for value in reversed(spent) if value)
    rate = project(spend=total, cap=cap.limit, recent=recent, since=now - 3600, now=now, resets_at=int(end.timestamp()))
    return Burn(budget, spent, [Measurement(cap, total, int(end.timestamp()))], [rate])


def main() -> None:
    with tempfile.TemporaryDirectory() as work:
        page = Path(work) / "report.html"
        page.write_text(render(day()), encoding="utf-8")
        subprocess.run(
            ["/usr/bin/chromium", "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
             f"--user-data-dir={work}/profile", f"--screenshot={PICTURE.resolve()}", "--window-size=1280,2300",
             page.as_uri()],
            check=True, capture_output=True, timeout=120,
        )  # fmt: skip
    print(f"wrote {PICTURE}")


if __name__ == "__main__":
    main()
