"""`spendpipe report` as a person uses it: real events through `run all` (broker, aggregator,
enforcer, embedded store), budgets set and one scope blocked, the real CLI writing the page,
and headless Chromium opening it (tests/support/chromium.py): what renders, that a hostile team
id stays text, and that the page fetches nothing."""

import asyncio
import json
import subprocess
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from dev.local_kafka import free_port_pair
from spendpipe.admin.report.page import TITLE
from spendpipe.contracts.topics import Topics
from spendpipe.store.sql_endpoint.client import EndpointSource
from tests.support.chromium import NetworkWatch, rendered_dom, screenshot
from tests.support.events import make_event
from tests.support.html_page import outside_references, parse
from tests.support.pipeline import events_stored, produce
from tests.support.processes import run_all, run_cli
from tests.support.waiting import eventually

HOSTILE = "<script>document.title='pwned'</script>"
TINY = Decimal("0.000000000000000000000001")


def cli(topics: Topics, bootstrap: str, port: int, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        "SPENDPIPE_KAFKA__BOOTSTRAP_SERVERS": bootstrap,
        "SPENDPIPE_TOPICS__BUDGETS": topics.budgets,
        "SPENDPIPE_TOPICS__DECISIONS": topics.decisions,
        "SPENDPIPE_SQL_ENDPOINT_URL": f"http://127.0.0.1:{port}",
    }
    done = run_cli(env, *args)
    assert done.returncode == 0, (args, done.stderr)
    return done


def blocked_scopes(topics: Topics, bootstrap: str, port: int) -> list[str]:
    return [b["scope"] for b in json.loads(cli(topics, bootstrap, port, "blocks", "list", "--format", "json").stdout)]


async def test_the_report_renders_in_chromium_offline_with_data_as_text(
    kafka_broker: str, make_topics, tmp_path: Path
) -> None:
    topics = await make_topics(kafka_broker)
    port = free_port_pair()
    service = run_all(kafka_broker, topics, tmp_path, sql_port=port)
    at = datetime.now(UTC)
    events = [
        make_event(team_id="eng", model="gpt-4o-mini", cost=Decimal("0.7") + TINY, occurred_at=at),
        make_event(team_id="eng", model="claude-3-haiku", cost=Decimal("0.5"), occurred_at=at),
        make_event(team_id="search", model="gpt-4o-mini", cost=Decimal("0.25"), occurred_at=at),
        make_event(team_id=HOSTILE, model="claude-3-haiku", cost=Decimal("0.05"), occurred_at=at),
    ]
    page = tmp_path / "report.html"

    service.start()
    try:
        service.wait_http_ok(f"http://127.0.0.1:{port}/healthz")
        # given two budgeted teams, and spend that takes eng over its cap
        for scope, cap in (("team:eng", "1"), ("team:search", "0.30")):
            await asyncio.to_thread(
                cli, topics, kafka_broker, port, "budgets", "set", "--scope", scope, "--max-budget", cap,
                "--budget-duration", "1d",
            )  # fmt: skip
        await produce(kafka_broker, topics.events, [e.to_json() for e in events])
        await events_stored(EndpointSource(url=f"http://127.0.0.1:{port}"), len(events))
        await eventually(
            lambda: asyncio.to_thread(blocked_scopes, topics, kafka_broker, port),
            lambda scopes: scopes == ["team:eng"],
            within=60,
            what="team:eng blocked",
        )
        # when the report is written by the CLI
        asked = datetime.now(UTC)
        written = await asyncio.to_thread(cli, topics, kafka_broker, port, "report", "--out", str(page))
        answered = datetime.now(UTC)
    finally:
        service.stop()
    assert written.stdout == f"report written to {page}\n"

    # then Chromium renders it without a connection to anywhere
    with NetworkWatch().running() as watch:
        dom = await asyncio.to_thread(rendered_dom, page, tmp_path, watch)
        await asyncio.to_thread(screenshot, page, tmp_path / "report.png", tmp_path, watch)
    assert watch.page_requests() == []
    shown = parse(dom)
    assert outside_references(parse(page.read_text())) == []
    assert shown.all("script") == []  # the hostile id became no element, so nothing ran
    assert [t.text_content() for t in shown.all("head")[0].all("title")] == [TITLE]

    # the teams, their exact totals, one bar series per team and per model
    assert shown.by_id("team-totals").rows() == [
        ["eng", "1.200000000000000000000001"],
        ["search", "0.25"],
        [HOSTILE, "0.05"],
    ]
    teams = shown.by_id("spend-by-team").all("g", class_="series")
    assert [g.attrs["data-series"] for g in teams] == ["eng", "search", HOSTILE]
    assert [len(g.all("rect")) for g in teams] == [1, 1, 1]  # every event in this hour's bar
    models = shown.by_id("spend-by-model").all("g", class_="series")
    assert sorted(g.attrs["data-series"] for g in models) == ["claude-3-haiku", "gpt-4o-mini"]

    # a burn-down per budgeted team, with the exact spend against each cap
    burns = {div.attrs["data-scope"]: div for div in shown.by_id("burn-down").all("div", class_="burn")}
    assert sorted(burns) == ["team:eng", "team:search"]
    for div in burns.values():
        assert len(div.all("polyline", class_="spend")) == len(div.all("line", class_="cap")) == 1
    assert [row[:3] for row in burns["team:eng"].all("table")[0].rows()] == [["1d", "1.200000000000000000000001", "1"]]

    # and when each cap is reached at the current rate, as the enforcer projects it: eng is over,
    # search spent 0.25 of 0.30 in the last minute, rated over the lookback's 15 whole minutes
    # and the one under way (900 to 960 s), so the last 0.05 takes 180 to 192 s more; in the
    # first quarter hour of the day the rate is over the day so far, and the last 0.05 comes sooner;
    # in the last minutes of the day that falls after the day's reset, which the page says instead
    assert burns["team:eng"].all("table")[0].rows()[0][4] == "reached"
    (search,) = burns["team:search"].all("table")[0].rows()
    assert search[:3] == ["1d", "0.25", "0.3"]
    midnight = asked.replace(hour=0, minute=0, second=0, microsecond=0)
    rated_over = min(timedelta(seconds=900), asked - midnight)
    earliest, latest = asked + rated_over / 5 - timedelta(seconds=60), answered + timedelta(seconds=192)
    reset = midnight + timedelta(days=1)
    if search[4] == "not before the reset":
        assert latest >= reset
    else:
        reached = datetime.strptime(search[4], "%Y-%m-%d %H:%M").replace(tzinfo=UTC)
        assert earliest < reached <= latest
        assert reached < reset
    assert len(shown.all("svg")) == 4

    # the blocked scope in the blocks table, top spenders in order, the hostile id as text
    (block,) = shown.by_id("blocks").all("table")[0].rows()
    assert block[:5] == ["team:eng", "(all)", "BLOCK", "1.200000000000000000000001", "1"]
    teams_ranked = [row[2] for row in shown.by_id("top").rows() if row[1] == "team"]
    assert teams_ranked == ["eng", "search", HOSTILE]
