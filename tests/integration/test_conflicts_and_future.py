"""Copies of an event id that say something else are dead-lettered, wherever the first copy is
remembered (the batch, the memory, the memory rebuilt after a restart, `events`); events dated
too far ahead are dead-lettered, and a late copy of one dated ahead is still found."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from spendpipe.aggregator.store import SpendStore
from spendpipe.aggregator.writer import BatchWriter, FlushOutcome, SourceRecord
from spendpipe.contracts.events import SpendEvent
from spendpipe.contracts.windows import Window
from spendpipe.platform.clickhouse import ClickhouseStore
from tests.conftest import ParseRoute, on_every_engine
from tests.support.events import expected_spend, make_event
from tests.support.pipeline import ManualClock, counted_events, totals

pytestmark = on_every_engine

TOPIC = "spend.events"
START = datetime.now(UTC).replace(microsecond=0)


def writer(clickhouse: ClickhouseStore, clock: ManualClock, route: ParseRoute) -> BatchWriter:
    """A fresh writer (a restarted aggregator) with the default horizon and allowance."""
    return BatchWriter(
        store=SpendStore(clickhouse=clickhouse),
        topic=TOPIC,
        dedup_horizon_s=600,
        **route,
        clock=clock,
    )


def records(events: list[SpendEvent], first_offset: int = 0) -> list[SourceRecord]:
    return [
        SourceRecord(0, first_offset + i, e.to_json(), key=f"key-{first_offset + i}".encode())
        for i, e in enumerate(events)
    ]


def reasons(outcome: FlushOutcome) -> list[tuple[int, str]]:
    return [(letter.record.offset, letter.reason) for letter in outcome.dead_letters]


def test_a_copy_with_another_cost_in_the_same_batch_is_dead_lettered(
    clickhouse: ClickhouseStore, parse_route: ParseRoute
) -> None:
    clock = ManualClock(START)
    first = make_event(occurred_at=START)
    same, other = first.model_copy(), first.model_copy(update={"cost": first.cost + 1})

    outcome = writer(clickhouse, clock, parse_route).write(records([first, same, other]))

    assert outcome.counted == 1
    assert outcome.duplicates == 1
    assert len(reasons(outcome)) == 1
    offset, reason = reasons(outcome)[0]
    assert offset == 2
    assert reason.startswith(
        f"conflicting duplicate: event_id '{first.event_id}' was counted from partition 0 offset 0"
    )
    assert totals(clickhouse)[("global", "", "")] == first.cost


def test_a_copy_that_names_another_provider_or_other_tags_is_dead_lettered(
    clickhouse: ClickhouseStore, parse_route: ParseRoute
) -> None:
    """Both name scopes of their own (`provider:`, `tag:`): a copy that changes them would move
    the spend there, so it conflicts as a copy with another cost does."""
    clock = ManualClock(START)
    first = make_event(occurred_at=START, provider="openai", request_tags=["project-a"])
    copies = [
        first.model_copy(update={"provider": "anthropic"}),
        first.model_copy(update={"request_tags": ["project-b"]}),
        first.model_copy(update={"request_tags": ["project-a", "project-b"]}),
    ]

    outcome = writer(clickhouse, clock, parse_route).write(records([first, *copies]))

    assert outcome.counted == 1
    assert [offset for offset, reason in reasons(outcome) if reason.startswith("conflicting duplicate")] == [1, 2, 3]
    assert totals(clickhouse)[("provider", "openai", "")] == first.cost
    assert ("provider", "anthropic", "") not in totals(clickhouse)
    assert ("tag", "project-b", "") not in totals(clickhouse)


def test_a_conflicting_copy_is_found_in_memory_after_a_restart_and_in_events_when_late(
    clickhouse: ClickhouseStore,
    parse_route: ParseRoute,
) -> None:
    clock = ManualClock(START)
    recent = make_event(occurred_at=START)
    old = make_event(occurred_at=START - timedelta(days=3))
    writer(clickhouse, clock, parse_route).write(records([recent, old]))

    # a restarted aggregator: the recent id comes back from `events` with its content; the old
    # event is past the horizon, so its copy is looked up in `events`
    copies = [
        recent.model_copy(update={"end_user": "someone-else"}),
        old.model_copy(update={"cost": Decimal("0.5")}),
        recent.model_copy(),
        old.model_copy(),
    ]
    outcome = writer(clickhouse, clock, parse_route).write(records(copies, first_offset=2))

    assert [offset for offset, _ in reasons(outcome)] == [2, 3]
    assert all(reason.startswith("conflicting duplicate") for _, reason in reasons(outcome))
    assert (outcome.counted, outcome.duplicates) == (0, 2)
    assert counted_events(clickhouse) == 2
    assert totals(clickhouse, "day") == expected_spend([recent, old], Window.DAY)


def test_events_dated_past_the_allowance_are_dead_lettered(
    clickhouse: ClickhouseStore, parse_route: ParseRoute
) -> None:
    clock = ManualClock(START)
    within = make_event(occurred_at=START + timedelta(seconds=299))
    ahead = make_event(occurred_at=START + timedelta(seconds=301))

    outcome = writer(clickhouse, clock, parse_route).write(records([within, ahead]))

    assert outcome.counted == 1
    [(offset, reason)] = reasons(outcome)
    assert offset == 1
    assert reason.startswith(f"occurred_at {ahead.occurred_at.isoformat()} is more than 300 s ahead")


def test_a_late_copy_of_an_event_dated_ahead_is_not_counted_again(
    clickhouse: ClickhouseStore, parse_route: ParseRoute
) -> None:
    clock = ManualClock(START)
    ahead = make_event(occurred_at=START + timedelta(seconds=250))
    writer(clickhouse, clock, parse_route).write(records([ahead]))

    # 700 s later (past the 600 s horizon) a restarted aggregator sees a copy: the memory no
    # longer has the id, the copy is dated only 450 s back, and must still be looked up
    clock.set(START + timedelta(seconds=700))
    outcome = writer(clickhouse, clock, parse_route).write(records([ahead.model_copy()], first_offset=1))

    assert (outcome.counted, outcome.duplicates) == (0, 1)
    assert counted_events(clickhouse) == 1
