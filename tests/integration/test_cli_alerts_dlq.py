"""`spendpipe alerts tail`, `dlq tail` and `dlq replay` run as an operator runs them,
against the real broker: records printed oldest first with hostile values literal, bounded by
--limit and ending on their own (--no-follow); a letter replayed to spend.events byte for byte,
a truncated one refused with nothing published."""

import asyncio
import json
import subprocess
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from spendpipe.aggregator.dead_letters import EXCERPT_BYTES, letter_for
from spendpipe.contracts.alerts import MESSAGE_TYPE as ALERT_TYPE
from spendpipe.contracts.alerts import SoftBudgetAlert
from spendpipe.contracts.topics import TYPE_HEADER, Topics
from spendpipe.platform.kafka import KafkaSettings
from spendpipe.platform.topic_tail import TopicTail
from tests.support.alerts import publish_alerts
from tests.support.processes import ServiceProcess, run_cli
from tests.support.signing import write_records
from tests.support.waiting import eventually

HOSTILE = "[bold red]admin[/bold red]\x1b[2Jwiped\rover"
SHOWN = "[bold red]admin[/bold red]\\x1b[2Jwiped\\rover"
NOW = datetime.now(UTC).replace(microsecond=0)


def spendpipe(bootstrap: str, topics: Topics, *args: str) -> subprocess.CompletedProcess[str]:
    env = {"SPENDPIPE_KAFKA__BOOTSTRAP_SERVERS": bootstrap}
    env |= {f"SPENDPIPE_TOPICS__{name.upper()}": value for name, value in topics.model_dump().items()}
    return run_cli(env, *args)


def alert(scope: str, spend: str) -> SoftBudgetAlert:
    return SoftBudgetAlert(
        scope=scope,
        soft_budget=Decimal("1"),
        spend=Decimal(spend),
        window="24h",
        window_start=NOW,
        window_end=NOW + timedelta(days=1),
        alerted_at=NOW,
    )


async def test_alerts_tail_prints_the_last_alerts_literally(kafka_broker: str, make_topics: Callable[..., Any]) -> None:
    topics = await make_topics(kafka_broker, 1)
    alerts = [alert(f"team:t{n}", f"1.{n}") for n in range(5)] + [alert(HOSTILE, "1.000000000000000000000001")]
    headers = [(TYPE_HEADER, ALERT_TYPE.encode())]
    await write_records(
        kafka_broker, topics.alerts, [(a.key.encode(), a.model_dump_json().encode(), headers) for a in alerts]
    )

    table = await asyncio.to_thread(spendpipe, kafka_broker, topics, "alerts", "tail", "--limit", "3")
    as_json = await asyncio.to_thread(
        spendpipe, kafka_broker, topics, "alerts", "tail", "--limit", "3", "--no-follow", "--format", "json"
    )

    assert table.returncode == 0, table.stderr
    assert SHOWN in table.stdout
    assert "\x1b" not in table.stdout
    assert "\r" not in table.stdout
    assert "team:t2" not in table.stdout
    assert table.stdout.index("team:t3") < table.stdout.index("team:t4") < table.stdout.index("[bold red]")
    rows = json.loads(as_json.stdout)
    assert [row["scope"] for row in rows] == ["team:t3", "team:t4", HOSTILE]
    assert rows[-1]["spend"] == "1.000000000000000000000001"
    assert rows[-1]["type"] == "soft_budget_alert.v1"


async def test_dlq_tail_and_replay(kafka_broker: str, make_topics: Callable[..., Any]) -> None:
    topics = await make_topics(kafka_broker, 1)
    bad = b'{"not": "an event", "user": "' + HOSTILE.encode() + b'"}'
    huge = b"x" * (EXCERPT_BYTES + 1)
    letters = [
        letter_for(topic=topics.events, partition=2, offset=7, key=b"k1", value=bad, reason=f"invalid: {HOSTILE}"),
        letter_for(topic=topics.events, partition=0, offset=9, key=b"k2", value=huge, reason="record too large"),
    ]
    records = [(letter.key, letter.value, [(n, v.encode()) for n, v in letter.headers.items()]) for letter in letters]
    await write_records(kafka_broker, topics.events_dead_letter, records)  # type: ignore[arg-type]

    table = await asyncio.to_thread(spendpipe, kafka_broker, topics, "dlq", "tail", "--limit", "10")
    as_csv = await asyncio.to_thread(spendpipe, kafka_broker, topics, "dlq", "tail", "--format", "csv")
    refused = await asyncio.to_thread(
        spendpipe, kafka_broker, topics, "dlq", "replay", "--offset", "0:0", "--offset", "0:1"
    )
    missing = await asyncio.to_thread(spendpipe, kafka_broker, topics, "dlq", "replay", "--offset", "0:5")
    replayed = await asyncio.to_thread(spendpipe, kafka_broker, topics, "dlq", "replay", "--offset", "0:0")

    assert table.returncode == 0, table.stderr
    assert f"invalid: {SHOWN}" in table.stdout
    assert "\x1b" not in table.stdout
    assert f"{topics.events}/2@7" in table.stdout
    assert as_csv.stdout.splitlines()[0] == "position,reason,source,value_size,truncated,key,value"
    assert "0:1,record too large" in as_csv.stdout
    assert "x" * EXCERPT_BYTES in as_csv.stdout  # whole in CSV; the table shows 80 characters
    assert "…" in table.stdout
    assert table.stdout.count("x") < 100
    assert (refused.returncode, refused.stdout) == (1, "")
    assert "0:1 holds only an excerpt of the record's value (truncated)" in refused.stderr
    assert missing.returncode == 1
    assert "no letter at 0:5" in missing.stderr
    assert replayed.returncode == 0, replayed.stderr
    async with TopicTail(kafka=KafkaSettings(bootstrap_servers=kafka_broker), topic=topics.events) as events:
        republished = await events.last(10)
    assert [(r.key, r.value) for r in republished] == [(b"k1", bad)]


async def test_records_that_cannot_be_read_are_listed_as_such(
    kafka_broker: str, make_topics: Callable[..., Any]
) -> None:
    """JSON nested past Python's stack, and headers without a value (Kafka allows them): each is
    a row, never the end of the listing."""
    topics = await make_topics(kafka_broker, 1)
    good = alert("team:ok", "1.5")
    deep = b'{"scope": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    await write_records(
        kafka_broker,
        topics.alerts,
        [
            (good.key.encode(), good.model_dump_json().encode(), [(TYPE_HEADER, ALERT_TYPE.encode())]),
            (b"deep", deep, [(TYPE_HEADER, ALERT_TYPE.encode())]),
            (b"typeless", good.model_dump_json().encode(), [(TYPE_HEADER, None)]),
        ],
    )
    await write_records(kafka_broker, topics.events_dead_letter, [(b"k", b"{}", [("spendpipe-dlq-reason", None)])])

    alerts = await asyncio.to_thread(
        spendpipe, kafka_broker, topics, "alerts", "tail", "--no-follow", "--format", "json"
    )
    letters = await asyncio.to_thread(spendpipe, kafka_broker, topics, "dlq", "tail", "--format", "json")

    assert alerts.returncode == 0, alerts.stderr
    assert [(row["scope"], row["type"]) for row in json.loads(alerts.stdout)] == [
        ("team:ok", "soft_budget_alert.v1"),
        ("(not JSON)", "soft_budget_alert.v1"),
        ("team:ok", ""),
    ]
    assert letters.returncode == 0, letters.stderr
    assert [row["position"] for row in json.loads(letters.stdout)] == ["0:0"]


async def test_alerts_tail_follow_prints_new_alerts_as_json_lines(
    kafka_broker: str, make_topics: Callable[..., Any], tmp_path: Path
) -> None:
    topics = await make_topics(kafka_broker, 1)
    await publish_alerts(kafka_broker, topics.alerts, [alert("team:before", "1.5")])
    output = tmp_path / "tail.out"
    env = {"SPENDPIPE_KAFKA__BOOTSTRAP_SERVERS": kafka_broker, "SPENDPIPE_TOPICS__ALERTS": topics.alerts}
    tail = ServiceProcess(["alerts", "tail", "--follow", "--format", "json"], env, output)

    tail.start()
    try:
        await eventually(output.read_text, lambda text: "team:before" in text, within=30, what="the last alert")
        await publish_alerts(kafka_broker, topics.alerts, [alert(HOSTILE, "2")])
        await eventually(output.read_text, lambda text: text.count("\n") >= 2, within=30, what="the new alert")
    finally:
        tail.stop()

    lines = [json.loads(line) for line in output.read_text().splitlines()]
    assert [(line["scope"], line["spend"]) for line in lines] == [("team:before", "1.5"), (HOSTILE, "2")]
