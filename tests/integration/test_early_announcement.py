"""A flush's scopes can be announced as soon as its totals are in ClickHouse: the writer hands
the outcome over (`durable`) between the totals insert and the copy into `events`, and never for
a flush whose partitions another aggregator claimed before its totals."""

import pytest

from spendpipe.aggregator.ownership import Fence, Ownership, OwnershipLostError
from spendpipe.aggregator.store import SpendStore
from spendpipe.aggregator.writer import BatchWriter, FlushOutcome, SourceRecord
from spendpipe.contracts.scopes import scopes_of
from spendpipe.platform.clickhouse import ClickhouseStore
from tests.conftest import on_every_engine
from tests.support.events import make_event

pytestmark = on_every_engine

TOPIC = "spend.events"


class NotedStore(SpendStore):
    """Notes each insert that counts as it ends."""

    def __init__(self, *, clickhouse: ClickhouseStore, steps: list[str]) -> None:
        super().__init__(clickhouse=clickhouse)
        self._steps = steps

    def insert_totals(self, *, after: dict[int, int], watermarks: dict[str, int], fence: Fence | None = None) -> None:
        super().insert_totals(after=after, watermarks=watermarks, fence=fence)
        self._steps.append("totals")

    def insert_events(
        self, *, after: dict[int, int], fence: Fence | None = None, watermarks: dict[str, int] | None = None
    ) -> None:
        super().insert_events(after=after, fence=fence, watermarks=watermarks)
        self._steps.append("events")


def test_the_outcome_is_handed_over_once_the_totals_are_in_before_the_events(clickhouse: ClickhouseStore) -> None:
    # given a batch of events over a few keys
    events = [make_event(key_hash=f"{n % 3:064x}") for n in range(12)]
    steps: list[str] = []
    writer = BatchWriter(store=NotedStore(clickhouse=clickhouse, steps=steps), topic=TOPIC, dedup_horizon_s=600)
    handed: list[FlushOutcome] = []

    def durable(outcome: FlushOutcome) -> None:
        steps.append("durable")
        handed.append(outcome)

    # when it is written
    outcome = writer.write([SourceRecord(0, n, e.to_json()) for n, e in enumerate(events)], None, durable)

    # then the outcome, naming every scope and event, came between the totals and the events
    assert steps == ["totals", "durable", "events"]
    assert handed == [outcome]
    assert outcome.counted == 12
    assert outcome.scopes == {
        scope
        for e in events
        for scope in scopes_of(e.key_hash, e.user_id, e.team_id, e.org_id, e.end_user, tags=(), provider=e.provider)
    }


def test_a_flush_fenced_before_its_totals_hands_nothing_over(clickhouse: ClickhouseStore) -> None:
    # given an owner whose partition another aggregator claimed at a later epoch
    stale, heir = (Ownership(group="g", topic=TOPIC, settle_s=0.0, embedded=True) for _ in range(2))
    stale.assigned({0}, generation=1)
    stale.claim(clickhouse)
    heir.assigned({0}, generation=2)
    heir.claim(clickhouse)
    handed: list[FlushOutcome] = []
    writer = BatchWriter(store=SpendStore(clickhouse=clickhouse), topic=TOPIC, dedup_horizon_s=600)

    # when the stale owner writes a batch
    with pytest.raises(OwnershipLostError):
        writer.write([SourceRecord(0, 0, make_event().to_json())], stale.fence, handed.append)

    # then nothing was handed over to announce
    assert handed == []
