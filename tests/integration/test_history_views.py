"""Blocks history and budget utilisation (migration 0008): budgets set with `BudgetAdmin` and
calls counted by the real aggregator, judged by the real enforcer, recorded into chDB by the
history recorder as `spendpipe run all` runs it; the views give every block and unblock in order
and each cap in force against its exact spend. Reading both topics again from the beginning (a
restart) adds no row."""

import asyncio
import re
import time
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from spendpipe.admin.budget_admin import BudgetAdmin
from spendpipe.contracts.budgets import MESSAGE_TYPE as BUDGET_TYPE
from spendpipe.contracts.decisions import Decision
from spendpipe.contracts.durations import parse_duration
from spendpipe.contracts.topics import Topics
from spendpipe.history.recorder import HistoryRecorder
from spendpipe.platform.clickhouse import ClickhouseSettings, ClickhouseStore
from spendpipe.platform.compacted import TopicRecord
from spendpipe.platform.kafka import KafkaSettings
from tests.conftest import aggregator_settings, enforcer_settings
from tests.support.events import make_event
from tests.support.pipeline import events_counted, produce, produce_records, running_pipeline
from tests.support.signing import WriterKey, reader_settings
from tests.support.waiting import eventually

ENG = {
    "scope": "team:eng",
    "max_budget": "1.00",
    "budget_duration": "1mo",
    "budget_limits": [
        {"budget_duration": "24h", "max_budget": "0.50"},
        {"budget_duration": "2h", "max_budget": "0.40"},
    ],
    "model_max_budget": {"gpt-4o": {"max_budget": "0.20"}},
}
GUIDE = Path(__file__).parents[2] / "docs" / "analysts.md"
HISTORY = "SELECT scope_type, scope_id, model, action, version, spend, cap, window FROM blocks_history"
UTILISATION = (
    "SELECT scope_type, scope_id, model, duration, window_start, window_end, cap, spend, remaining, used "
    "FROM budget_utilisation ORDER BY scope_id, model, duration"
)


def by_model(rows: list[tuple[Any, ...]]) -> dict[str, list[tuple[Any, ...]]]:
    """blocks_history rows of one scope per model, in the order read (by version)."""
    grouped: dict[str, list[tuple[Any, ...]]] = {}
    for row in rows:
        grouped.setdefault(row[2], []).append(row)
    return grouped


def fully_blocked(rows: dict[str, list[tuple[Any, ...]]]) -> bool:
    """The scope blocked at its whole spend, and its gpt-4o spend blocked too."""
    scope, model = rows.get("", []), rows.get("gpt-4o", [])
    return bool(scope and model) and scope[-1][3] == "block" and scope[-1][5] == Decimal("1.2")


def bounds(duration: str | None, now: datetime) -> tuple[datetime, datetime | None]:
    if duration is None:
        return datetime.fromtimestamp(0, UTC), None
    start, end = parse_duration(duration).bounds(int(now.timestamp()))
    return datetime.fromtimestamp(start, UTC), datetime.fromtimestamp(end, UTC)


async def test_blocks_history_and_budget_utilisation(
    kafka_broker: str, make_topics, clickhouse: ClickhouseStore, clickhouse_settings: ClickhouseSettings
) -> None:
    topics = await make_topics(kafka_broker)
    admin = BudgetAdmin(kafka=KafkaSettings(bootstrap_servers=kafka_broker), topics=topics)
    ops = {"scope": "team:ops", "rpm_limit": 100}  # no cap on spend: not in the utilisation
    gone = {"scope": "team:gone", "max_budget": "1"}  # deleted: its latest record is a tombstone
    await asyncio.to_thread(admin.set_many, [ENG, ops, gone])
    await asyncio.to_thread(admin.delete, "team:gone")
    aggregator = aggregator_settings(kafka_broker, topics, clickhouse_settings)
    enforcer = enforcer_settings(kafka_broker, topics, clickhouse_settings)

    def recorder() -> HistoryRecorder:
        return HistoryRecorder(kafka=enforcer.kafka, topics=topics, signing=enforcer.signing, store=clickhouse)

    def history() -> list[tuple[Any, ...]]:
        return clickhouse.rows(f"{HISTORY} WHERE scope_id = 'eng' ORDER BY model, version")

    called = datetime.now(UTC)
    costs = [("gpt-4o", "0.30"), ("claude", "0.30"), ("claude", "0.30"), ("claude", "0.30")]
    events = [make_event(occurred_at=called, team_id="eng", model=m, cost=Decimal(c)) for m, c in costs]
    events.append(make_event(occurred_at=called, team_id="ops", model="claude", cost=Decimal("0.05")))

    async with running_pipeline(aggregator, enforcer, clickhouse, time.time):
        first = recorder()
        await first.start()
        try:
            await produce(kafka_broker, topics.events, [e.to_json() for e in events])
            await events_counted(clickhouse, len(events))
            # the aggregator may count the calls in more than one flush: a block per spend seen
            blocks = await eventually(
                history, lambda rows: fully_blocked(by_model(rows)), within=30, what="both blocks at full spend"
            )
            utilisation = await eventually(
                lambda: clickhouse.rows(UTILISATION), lambda rows: len(rows) == 4, within=30, what="four caps"
            )
            now = datetime.fromtimestamp(int(clickhouse.column("SELECT toUnixTimestamp(now())")[0]), UTC)

            # when the cap is raised and the model cap dropped, both blocks lift
            await asyncio.to_thread(admin.set, {"scope": "team:eng", "max_budget": "100", "budget_duration": "1mo"})
            lifted = await eventually(
                history,
                lambda rows: all(actions[-1][3] == "unblock" for actions in by_model(rows).values()),
                within=30,
                what="both unblocks recorded",
            )
            raised = await eventually(
                lambda: clickhouse.rows(UTILISATION), lambda rows: len(rows) == 1, within=30, what="the raised cap"
            )
        finally:
            await first.stop()

        # an unsigned decision (a forged block) is never recorded
        forged = Decision(scope="team:forged", version=10**15, blocked=True, reason="forged", decided_at=called)
        await produce_records(
            kafka_broker, topics.decisions, [(forged.key.encode(), forged.model_dump_json().encode())]
        )
        # a restart reads both topics from the beginning again: no row twice
        again = recorder()
        await again.start()
        try:
            await eventually(
                lambda: all(event.is_set() for event in again.in_sync.values()), bool, within=30, what="read again"
            )
        finally:
            await again.stop()  # writes what it read
    assert history() == lifted
    assert clickhouse.rows("SELECT count() FROM blocks_history WHERE scope_id = 'forged'") == [(0,)]
    assert clickhouse.rows(UTILISATION) == raised
    # eng's 4 caps, ops's record, gone's and its deletion, eng's raised cap
    assert clickhouse.column("SELECT count() FROM budget_history FINAL") == [8]

    # blocks: the scope over its caps at the full 1.20, and its gpt-4o spend over the lifetime model cap
    latest = by_model(blocks)
    assert latest[""][-1][:4] == ("team", "eng", "", "block")
    assert latest[""][-1][5] == Decimal("1.2")
    assert latest["gpt-4o"][-1][3:4] + latest["gpt-4o"][-1][5:8] == (
        "block",
        Decimal("0.3"),
        Decimal("0.2"),
        "lifetime",
    )
    # then the unblocks: per model, blocks in version order and one unblock after them
    for rows in by_model(lifted).values():
        assert [row[3] for row in rows] == ["block"] * (len(rows) - 1) + ["unblock"]
        assert [row[4] for row in rows] == sorted({row[4] for row in rows})

    # utilisation: each cap of the budget in force, in its current window, spend summed exactly
    def spent(start: datetime, end: datetime | None, model: str | None = None) -> Decimal:
        chosen = [e for e in events if e.team_id == "eng" and (model is None or e.model == model)]
        return sum(
            (e.cost for e in chosen if start <= e.occurred_at and (end is None or e.occurred_at < end)), Decimal(0)
        )

    expected = []
    for model, duration, cap in [
        ("", "1mo", "1.00"),
        ("", "24h", "0.50"),
        ("", "2h", "0.40"),
        ("gpt-4o", None, "0.20"),
    ]:
        start, end = bounds(duration, now)
        spend = spent(start, end, model or None)
        shown = duration if duration is not None else "lifetime"
        expected.append(("team", "eng", model, shown, start, end, Decimal(cap), spend, Decimal(cap) - spend))
    assert sorted(row[:9] for row in _aware(utilisation)) == sorted(expected)
    assert expected[0][7] == Decimal("1.20")  # the month holds every call (unless it turned meanwhile)
    # `used` is a float for charts; the exact amounts are spend, cap and remaining above
    assert [row[9] for row in utilisation] == pytest.approx([float(row[7]) / float(row[6]) for row in utilisation])
    assert raised[0][3:4] + raised[0][6:8] == ("1mo", Decimal(100), expected[0][7])


def test_every_query_in_the_analysts_guide_runs(clickhouse: ClickhouseStore) -> None:
    queries = [
        statement.strip()
        for block in re.findall(r"```sql\n(.*?)```", GUIDE.read_text(), flags=re.DOTALL)
        for statement in block.split(";")
        if "SELECT" in statement
    ]
    assert any("blocks_history" in query for query in queries)
    assert any("budget_utilisation" in query for query in queries)
    for query in queries:
        clickhouse.rows(query)  # a query that does not run raises


def _aware(rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """chDB returns DateTime columns as naive UTC datetimes."""
    return [
        tuple(v.replace(tzinfo=UTC) if isinstance(v, datetime) and v.tzinfo is None else v for v in row) for row in rows
    ]


async def test_the_budget_in_force_is_the_highest_version_whatever_the_record_timestamps(
    clickhouse: ClickhouseStore,
) -> None:
    """A genuine older budget record copied into another partition with a timestamp in the year
    3000 (its signature does not cover the timestamp). A recorder that reads that partition first
    (a restart reads partitions in any order) records the copy; the view still shows the cap of
    the highest version."""
    writer = WriterKey.generate()
    recorder = HistoryRecorder(
        kafka=KafkaSettings(bootstrap_servers="127.0.0.1:1"),
        topics=Topics(),
        signing=reader_settings(writer),
        store=clickhouse,
    )
    signer = writer.settings().signer()

    def record(value: bytes, partition: int, offset: int, timestamp_ms: int) -> TopicRecord:
        headers = signer.headers(BUDGET_TYPE, b"team:eng", value)
        return TopicRecord(
            "spend.budgets", partition, offset, timestamp_ms, 0, b"team:eng", value, None, 8, len(value), headers
        )

    v1 = b'{"scope": "team:eng", "max_budget": "100", "budget_duration": "1mo", "version": 1}'
    v2 = b'{"scope": "team:eng", "max_budget": "5", "budget_duration": "1mo", "version": 2}'
    now_ms = int(time.time() * 1000)
    copy_first = [record(v1, 1, 0, 32_503_680_000_000), record(v1, 0, 0, now_ms - 2000), record(v2, 0, 1, now_ms)]
    for read in copy_first:
        recorder._on_budget(read)
    await recorder.flush()

    assert clickhouse.rows("SELECT scope_id, cap FROM budget_utilisation") == [("eng", Decimal(5))]
