"""Every listing in every format, run as an operator runs it (the real CLI in a subprocess, the
real broker, `run all` with its store): `--format table|json|csv`, what an empty result says,
`--version`, and `--key`, whose raw key reaches no topic and no output."""

import asyncio
import csv
import io
import json
import subprocess
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from importlib.metadata import version
from pathlib import Path

from dev.local_kafka import free_port_pair
from spendpipe.contracts.decisions import Decision
from spendpipe.contracts.scopes import hash_api_key
from spendpipe.contracts.topics import Topics
from spendpipe.store.sql_endpoint.client import EndpointSource
from tests.support.events import make_event
from tests.support.pipeline import produce, read_topic
from tests.support.processes import run_all, run_cli
from tests.support.signing import publish_decisions
from tests.support.waiting import eventually

RAW_KEY = "sk-test-Q2hhbmdlTWUhIFNlY3JldCBrZXk"
KEY_HASH = hash_api_key(RAW_KEY)
FORMATS = ("table", "json", "csv")


def cli(topics: Topics, bootstrap: str, *args: str, sql_port: int | None = None) -> subprocess.CompletedProcess[str]:
    env = {
        "SPENDPIPE_KAFKA__BOOTSTRAP_SERVERS": bootstrap,
        "SPENDPIPE_TOPICS__BUDGETS": topics.budgets,
        "SPENDPIPE_TOPICS__DECISIONS": topics.decisions,
    }
    if sql_port is not None:
        env["SPENDPIPE_SQL_ENDPOINT_URL"] = f"http://127.0.0.1:{sql_port}"
    return run_cli(env, *args)


def in_formats(topics: Topics, bootstrap: str, *args: str, **kw: int) -> dict[str, subprocess.CompletedProcess[str]]:
    results = {fmt: cli(topics, bootstrap, *args, "--format", fmt, **kw) for fmt in FORMATS}
    for fmt, result in results.items():
        assert result.returncode == 0, (fmt, result.stderr)
    return results


def csv_rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text, newline="")))


def test_version_is_the_package_version() -> None:
    shown = run_cli({}, "--version")

    assert (shown.returncode, shown.stdout, shown.stderr) == (0, f"spendpipe {version('spendpipe')}\n", "")


async def test_budgets_and_blocks_in_every_format_and_when_there_are_none(kafka_broker: str, make_topics) -> None:
    topics = await make_topics(kafka_broker)

    # given nothing yet: each listing says so on stderr, exits 0, and stdout stays a document
    for args, words in ((("budgets", "list"), "no budgets"), (("blocks", "list"), "no blocks in force")):
        empty = await asyncio.to_thread(in_formats, topics, kafka_broker, *args)
        assert {fmt: r.stderr for fmt, r in empty.items()} == dict.fromkeys(FORMATS, f"{words}\n")
        assert empty["table"].stdout == ""
        assert json.loads(empty["json"].stdout) == []
        assert empty["csv"].stdout.splitlines()[0].startswith("scope,")

    # when a budget is set for a raw key, and another by scope
    done = await asyncio.to_thread(
        cli, topics, kafka_broker, "budgets", "set", "--key", RAW_KEY, "--max-budget", "10.000000000000000000000001"
    )
    assert done.returncode == 0, done.stderr
    assert (done.stdout, done.stderr) == (f"budget of key:{KEY_HASH} published\n", "")  # the raw key in neither
    other = await asyncio.to_thread(
        cli, topics, kafka_broker, "budgets", "set", "--scope", "team:eng", "--max-budget", "2.50", "--rpm-limit", "7"
    )
    assert other.returncode == 0, other.stderr

    # then the raw key is in no record of the topic: key, value or header
    for record in await read_topic(kafka_broker, topics.budgets, expected=2):
        published = b"".join([record.key or b"", record.value or b"", *(v for _, v in record.headers)])
        assert RAW_KEY.encode() not in published
    budgets = await asyncio.to_thread(in_formats, topics, kafka_broker, "budgets", "list")
    assert all(RAW_KEY not in r.stdout + r.stderr for r in budgets.values())
    assert f"key:{KEY_HASH}" in budgets["table"].stdout
    assert {b["scope"]: b["max_budget"] for b in json.loads(budgets["json"].stdout)} == {
        f"key:{KEY_HASH}": "10.000000000000000000000001",
        "team:eng": "2.50",
    }
    by_scope = {row["scope"]: row for row in csv_rows(budgets["csv"].stdout)}
    assert Decimal(by_scope[f"key:{KEY_HASH}"]["max_budget"]) == Decimal("10.000000000000000000000001")
    assert json.loads(by_scope["team:eng"]["other"]) == {"rpm_limit": 7}

    # and blocks, listed the same three ways
    now = datetime.now(UTC)
    await publish_decisions(
        kafka_broker,
        topics.decisions,
        [Decision(scope=f"key:{KEY_HASH}", version=1, blocked=True, reason="over, \"quoted\"\nbudget", window="24h",
                  spend=Decimal("10.000000000000000000000001"), cap=Decimal(10), expires_at=now + timedelta(hours=1),
                  decided_at=now)],
    )  # fmt: skip
    blocks = await asyncio.to_thread(in_formats, topics, kafka_broker, "blocks", "list")
    assert blocks["table"].stdout.count("key:") == 1
    assert "10.000000000000000000000001" in blocks["table"].stdout
    (block,) = json.loads(blocks["json"].stdout)
    assert (block["scope"], block["spend"], block["reason"]) == (
        f"key:{KEY_HASH}",
        "10.000000000000000000000001",
        'over, "quoted"\nbudget',
    )
    (row,) = csv_rows(blocks["csv"].stdout)
    assert (row["scope"], row["spend"], row["cap"], row["reason"]) == (
        f"key:{KEY_HASH}",
        "10.000000000000000000000001",
        "10",
        'over, "quoted"\nbudget',
    )

    # and the key's budget is deleted by the key too
    deleted = await asyncio.to_thread(cli, topics, kafka_broker, "budgets", "delete", "--key", RAW_KEY)
    assert (deleted.returncode, deleted.stdout, deleted.stderr) == (0, f"budget of key:{KEY_HASH} deleted\n", "")
    left = await asyncio.to_thread(cli, topics, kafka_broker, "budgets", "list", "--format", "json")
    assert [b["scope"] for b in json.loads(left.stdout)] == ["team:eng"]


async def test_spend_and_sql_in_every_format_and_when_there_is_none(
    kafka_broker: str, make_topics, tmp_path: Path
) -> None:
    topics = await make_topics(kafka_broker)
    port = free_port_pair()
    service = run_all(kafka_broker, topics, tmp_path, sql_port=port)
    tiny = Decimal("0.000000000000000000000001")
    events = [
        make_event(team_id="eng", key_hash=KEY_HASH, cost=Decimal("0.1") + tiny),
        make_event(team_id="eng", key_hash=KEY_HASH, cost=Decimal("0.2")),
        make_event(team_id='ops "west", 2', cost=Decimal("1.5")),
    ]
    sql = "SELECT scope_id, spend FROM spend_by_scope WHERE window = 'day' AND scope_type = 'team' ORDER BY scope_id"

    service.start()
    try:
        service.wait_http_ok(f"http://127.0.0.1:{port}/healthz")
        await produce(kafka_broker, topics.events, [e.to_json() for e in events])
        store = EndpointSource(url=f"http://127.0.0.1:{port}")
        await eventually(
            lambda: asyncio.to_thread(store.query, "SELECT count() FROM events"),
            lambda result: int(result[1][0][0]) == len(events),
            within=60,
            what="every event stored",
        )
        spend = await asyncio.to_thread(in_formats, topics, kafka_broker, "spend", "--scope", "team", sql_port=port)
        queried = await asyncio.to_thread(in_formats, topics, kafka_broker, "sql", sql, sql_port=port)
        by_key = await asyncio.to_thread(
            cli, topics, kafka_broker, "spend", "--key", RAW_KEY, "--format", "json", sql_port=port
        )
        nobody = await asyncio.to_thread(
            in_formats, topics, kafka_broker, "spend", "--scope", "team:nobody", sql_port=port
        )
        no_rows = await asyncio.to_thread(
            in_formats, topics, kafka_broker, "sql", "SELECT * FROM spend_by_scope WHERE scope_id = 'nobody'",
            sql_port=port,
        )  # fmt: skip
    finally:
        service.stop()

    expected = {"eng": Decimal("0.3") + tiny, 'ops "west", 2': Decimal("1.5")}
    for results in (spend, queried):
        assert results["table"].stderr == results["json"].stderr == results["csv"].stderr == ""
        assert "0.300000000000000000000001" in results["table"].stdout
        assert {r["scope_id"]: Decimal(r["spend"]) for r in json.loads(results["json"].stdout)} == expected
        assert all(isinstance(r["spend"], str) for r in json.loads(results["json"].stdout))
        assert {r["scope_id"]: Decimal(r["spend"]) for r in csv_rows(results["csv"].stdout)} == expected
    assert by_key.returncode == 0, by_key.stderr
    assert [(r["scope_id"], r["spend"]) for r in json.loads(by_key.stdout)] == [
        (KEY_HASH, "0.300000000000000000000001")
    ]
    assert RAW_KEY not in by_key.stdout + by_key.stderr

    day = datetime.now(UTC).strftime("%Y-%m-%d")
    for fmt, result in nobody.items():
        assert result.stderr.startswith(f"no spend recorded for team:nobody in the day of {day}"), fmt
    assert nobody["table"].stdout == ""
    assert json.loads(nobody["json"].stdout) == []
    assert {fmt: r.stderr for fmt, r in no_rows.items()} == dict.fromkeys(FORMATS, "no rows\n")
