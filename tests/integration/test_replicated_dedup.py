"""Flushes into tables that deduplicate inserts, as replicated tables do (docs/exactly-once.md,
"Replicated tables"). chDB cannot run a replica, but its MergeTree tables deduplicate by the same
rules once given a `non_replicated_deduplication_window`: a block's hash, or the insert's
`insert_deduplication_token`. So on real chDB: a retried flush counts once, two flushes whose
totals change by the same rows both count, and a fenced flush leaves nothing behind that would
make its records' next owner's insert look like a duplicate."""

from collections.abc import Iterator

import pytest

from spendpipe.aggregator.ownership import Ownership, OwnershipLostError
from spendpipe.aggregator.store import SpendStore
from spendpipe.aggregator.writer import BatchWriter, SourceRecord
from spendpipe.contracts.events import SpendEvent
from spendpipe.contracts.windows import Window
from spendpipe.platform.clickhouse import ClickhouseSettings, ClickhouseStore, connect_clickhouse
from tests.conftest import ParseRoute, on_every_engine
from tests.support.events import expected_spend, make_event
from tests.support.pipeline import counted_events, totals

pytestmark = on_every_engine

TOPIC = "spend.events"
WINDOW = 10_000
"""Blocks remembered per table: 26.x's default `replicated_deduplication_window`."""


@pytest.fixture
def deduplicating(clickhouse: ClickhouseStore) -> ClickhouseStore:
    """The store with the counting tables deduplicating inserts as replicated tables do (on a
    cluster, `SPENDPIPE_TEST_CLICKHOUSE_CLUSTER`, they are replicated and do already)."""
    if clickhouse.settings.replication is None:
        for table in ("spend_totals", "events"):
            clickhouse.command(f"ALTER TABLE {table} MODIFY SETTING non_replicated_deduplication_window = {WINDOW}")
    return clickhouse


@pytest.fixture
def second_session(
    deduplicating: ClickhouseStore, clickhouse_settings: ClickhouseSettings
) -> Iterator[ClickhouseStore]:
    """Another writer's connection to the same store (its own stage tables)."""
    store = connect_clickhouse(clickhouse_settings)
    yield store
    store.close()


def writer(clickhouse: ClickhouseStore, route: ParseRoute | None = None) -> BatchWriter:
    """The aggregator's writer, parsing as `route` says (the writer's defaults without one)."""
    store = SpendStore(clickhouse=clickhouse)
    if route is None:
        return BatchWriter(store=store, topic=TOPIC, dedup_horizon_s=600)
    return BatchWriter(store=store, topic=TOPIC, dedup_horizon_s=600, **route)


def records(events: list[SpendEvent], first_offset: int = 0) -> list[SourceRecord]:
    return [SourceRecord(i % 2, first_offset + i, e.to_json()) for i, e in enumerate(events)]


def assert_counted_once(clickhouse: ClickhouseStore, events: list[SpendEvent]) -> None:
    assert counted_events(clickhouse) == len(events)
    for window in (Window.MINUTE, Window.DAY):
        assert totals(clickhouse, window.value) == expected_spend(events, window)


def test_a_retried_flush_counts_once(
    deduplicating: ClickhouseStore, second_session: ClickhouseStore, parse_route: ParseRoute
) -> None:
    # given a writer that read the watermarks before another's flush of the same records landed,
    # as one reading a replica that has not yet fetched that flush's parts
    events = [make_event() for _ in range(30)]
    lagging = writer(second_session, parse_route)
    lagging.write([])
    writer(deduplicating, parse_route).write(records(events))

    # when it writes the same records again: the same inserts, at another time
    lagging.write(records(events))

    # then the tables took them once
    assert_counted_once(deduplicating, events)


def test_two_flushes_that_change_the_totals_by_the_same_rows_both_count(deduplicating: ClickhouseStore) -> None:
    # given two events alike in everything the totals keep (time, attribution, model, cost, tokens)
    first = make_event()
    second = make_event(**first.model_dump(exclude={"event_id"}))
    flushes = writer(deduplicating)

    # when they come in two flushes, one after the other
    flushes.write([SourceRecord(0, 0, first.to_json())])
    flushes.write([SourceRecord(0, 1, second.to_json())])

    # then both are in the totals, though each flush added the same totals rows
    assert_counted_once(deduplicating, [first, second])


def test_a_fenced_flush_leaves_no_token_that_drops_the_next_owners_insert(
    deduplicating: ClickhouseStore, second_session: ClickhouseStore
) -> None:
    # given an owner whose partitions another aggregator claimed at a later epoch
    events = [make_event() for _ in range(20)]
    stale, heir = (Ownership(group="g", topic=TOPIC, settle_s=0.0, embedded=True) for _ in range(2))
    stale.assigned({0, 1}, generation=1)
    stale.claim(deduplicating)
    heir.assigned({0, 1}, generation=2)
    heir.claim(second_session)

    # when the stale owner writes a batch (fenced: its inserts select nothing) and the heir then
    # writes the same records, with the same deduplication tokens
    with pytest.raises(OwnershipLostError):
        writer(deduplicating).write(records(events), stale.fence)
    writer(second_session).write(records(events), heir.fence)

    # then the heir's inserts were not taken for duplicates of the stale ones
    assert_counted_once(deduplicating, events)
