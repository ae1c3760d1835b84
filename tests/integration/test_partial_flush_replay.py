"""A crash between the two inserts of a flush, or after both but before the Kafka commit,
replays the batch into a fresh writer (a restarted process). The real ClickHouse engine holds
whatever landed; the totals stay exact."""

import pytest

from spendpipe.aggregator.offsets import ReadFurtherError
from spendpipe.aggregator.ownership import Fence
from spendpipe.aggregator.store import SpendStore
from spendpipe.aggregator.writer import BatchWriter, SourceRecord
from spendpipe.contracts.events import SpendEvent
from spendpipe.contracts.scopes import Scope, ScopeType
from spendpipe.contracts.windows import Window
from spendpipe.platform.clickhouse import ClickhouseStore
from tests.conftest import PARSE_ROUTES, ParseRoute, on_every_engine
from tests.support.events import expected_spend, make_event
from tests.support.pipeline import counted_events, totals

pytestmark = on_every_engine

TOPIC = "spend.events"


class CrashBeforeEvents(SpendStore):
    """The process dies right after the totals insert: the events insert never happens."""

    def insert_events(
        self,
        *,
        after: dict[int, int],
        fence: Fence | None = None,
        watermarks: dict[str, int] | None = None,
        up_to: dict[int, int] | None = None,
    ) -> None:
        raise SystemExit("killed between the totals and the events insert")


def records(events: list[SpendEvent], first_offset: int = 0) -> list[SourceRecord]:
    return [SourceRecord(i % 2, first_offset + i, e.to_json()) for i, e in enumerate(events)]


def restarted_writer(clickhouse: ClickhouseStore, route: ParseRoute) -> BatchWriter:
    return BatchWriter(store=SpendStore(clickhouse=clickhouse), topic=TOPIC, dedup_horizon_s=600, **route)


def crashing_writer(clickhouse: ClickhouseStore, route: ParseRoute) -> BatchWriter:
    return BatchWriter(
        store=CrashBeforeEvents(clickhouse=clickhouse),
        topic=TOPIC,
        dedup_horizon_s=600,
        **route,
    )


def test_crash_between_totals_and_events_insert(clickhouse: ClickhouseStore, parse_route: ParseRoute) -> None:
    first, second = [make_event() for _ in range(40)], [make_event() for _ in range(40)]
    restarted_writer(clickhouse, parse_route).write(records(first))
    crashing = crashing_writer(clickhouse, parse_route)

    with pytest.raises(SystemExit):
        crashing.write(records(second, first_offset=40))
    # the totals landed, the events did not, the offsets were not committed: Kafka replays the
    # batch, with the events that arrived since behind it
    later = [make_event() for _ in range(20)]
    restarted_writer(clickhouse, parse_route).write(records(second + later, first_offset=40))

    assert counted_events(clickhouse) == 100
    assert totals(clickhouse, "day") == expected_spend(first + second + later, Window.DAY)
    assert totals(clickhouse, "minute") == expected_spend(first + second + later, Window.MINUTE)


def test_crash_after_both_inserts_before_commit(clickhouse: ClickhouseStore, parse_route: ParseRoute) -> None:
    events = [make_event() for _ in range(50)]
    restarted_writer(clickhouse, parse_route).write(records(events))

    # the batch is replayed from the last committed offset, with more events behind it
    more = [make_event() for _ in range(10)]
    outcome = restarted_writer(clickhouse, parse_route).write(records(events + more))

    assert outcome.counted == 10
    assert counted_events(clickhouse) == 60
    assert totals(clickhouse, "day") == expected_spend(events + more, Window.DAY)


def test_replayed_batch_cut_at_different_boundaries(clickhouse: ClickhouseStore, parse_route: ParseRoute) -> None:
    events = [make_event() for _ in range(30)]
    batch = records(events)
    restarted_writer(clickhouse, parse_route).write(batch[:20])

    writer = restarted_writer(clickhouse, parse_route)
    writer.write(batch[5:12])
    writer.write(batch[12:30])

    assert counted_events(clickhouse) == 30
    assert totals(clickhouse, "hour") == expected_spend(events, Window.HOUR)


def test_a_replayed_flush_announces_what_it_wrote_but_not_older_duplicates(
    clickhouse: ClickhouseStore, parse_route: ParseRoute
) -> None:
    earlier = make_event(key_hash=f"{1:064x}")
    restarted_writer(clickhouse, parse_route).write(records([earlier]))
    batch = [make_event(key_hash=f"{2:064x}"), make_event(key_hash=f"{3:064x}")]
    crashing = crashing_writer(clickhouse, parse_route)
    with pytest.raises(SystemExit):
        crashing.write(records(batch, first_offset=1))

    # the batch read again, with a copy of the earlier event (a gateway resend) behind it
    outcome = restarted_writer(clickhouse, parse_route).write(records([*batch, earlier], first_offset=1))

    assert outcome.counted == 0  # the totals already had the batch
    assert outcome.duplicates == 1
    assert {scope for scope in outcome.scopes if scope.type.value == "key"} == {
        Scope(ScopeType.KEY, f"{2:064x}"),
        Scope(ScopeType.KEY, f"{3:064x}"),
    }
    # and once the events landed too, the same records read again (no commit yet) still announce.
    # Read again without the copy at offset 3, they are sent back to read it first: a record the
    # totals hold and `events` does not is, to the writer, a dropped copy or a failed copy's event
    replaying = restarted_writer(clickhouse, parse_route)
    with pytest.raises(ReadFurtherError) as asked:
        replaying.write(records(batch, first_offset=1))
    assert asked.value.needed == {0: 3}
    again = replaying.write(records([*batch, earlier], first_offset=1))
    assert (again.replayed, again.duplicates) == (2, 1)
    assert Scope(ScopeType.KEY, f"{3:064x}") in again.scopes
    assert counted_events(clickhouse) == 3


@pytest.mark.parametrize(
    ("crashed_with", "replayed_with"),
    [
        ("canonical-then-clickhouse", "parsed-by-pydantic"),
        ("parsed-by-pydantic", "canonical-then-clickhouse"),
        ("canonical-then-clickhouse", "checked-by-clickhouse"),
        ("checked-by-clickhouse", "canonical-then-clickhouse"),
    ],
)
def test_a_batch_replayed_through_the_other_parser_counts_nothing_twice(
    clickhouse: ClickhouseStore, crashed_with: str, replayed_with: str
) -> None:
    # a batch that crashed after its totals, parsed one way, is read again as part of a batch
    # the other way parses (a backlog grew, or shrank, behind it)
    events = [make_event() for _ in range(30)]
    with pytest.raises(SystemExit):
        crashing_writer(clickhouse, PARSE_ROUTES[crashed_with]).write(records(events))
    more = [make_event() for _ in range(10)]
    outcome = restarted_writer(clickhouse, PARSE_ROUTES[replayed_with]).write(records(events + more))

    assert outcome.counted == 10
    assert counted_events(clickhouse) == 40
    assert totals(clickhouse, "day") == expected_spend(events + more, Window.DAY)
