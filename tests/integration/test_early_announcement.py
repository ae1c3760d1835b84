"""A flush's scopes are announced as soon as its totals are in ClickHouse: the writer hands the
outcome over (`durable`) between the totals insert and the copy into `events`; never for a flush
whose partitions another aggregator claimed before its totals, and a claim that comes between
the two inserts still fails the flush (the copy was fenced: the next owner makes it)."""

from typing import Any

import pytest

from spendpipe.aggregator.ownership import Ownership, OwnershipLostError
from spendpipe.aggregator.store import SpendStore
from spendpipe.aggregator.writer import BatchWriter, FlushOutcome, SourceRecord
from spendpipe.contracts.scopes import scopes_of
from spendpipe.platform.clickhouse import ClickhouseStore
from tests.conftest import on_every_engine
from tests.support.events import make_event
from tests.support.pipeline import counted_events

pytestmark = on_every_engine

TOPIC = "spend.events"


class NotedStore(SpendStore):
    """Notes each insert that counts as it ends."""

    def __init__(self, *, clickhouse: ClickhouseStore, steps: list[str]) -> None:
        super().__init__(clickhouse=clickhouse)
        self._steps = steps

    def insert_totals(self, **arguments: Any) -> None:
        super().insert_totals(**arguments)
        self._steps.append("totals")

    def insert_events(self, **arguments: Any) -> None:
        super().insert_events(**arguments)
        self._steps.append("events")


def owners(clickhouse: ClickhouseStore) -> tuple[Ownership, Ownership]:
    """Two aggregators' claims on partition 0: the first at generation 1, made; the second not yet."""
    stale, heir = (Ownership(group="g", topic=TOPIC, settle_s=0.0, embedded=True) for _ in range(2))
    stale.assigned({0}, generation=1)
    stale.claim(clickhouse)
    heir.assigned({0}, generation=2)
    return stale, heir


def test_the_outcome_is_handed_over_once_the_totals_are_in_before_the_events(clickhouse: ClickhouseStore) -> None:
    # given a batch of events over a few keys
    events = [make_event(key_hash=f"{n % 3:064x}") for n in range(12)]
    steps: list[str] = []
    writer = BatchWriter(store=NotedStore(clickhouse=clickhouse, steps=steps), topic=TOPIC, dedup_horizon_s=600)
    handed: list[tuple[FlushOutcome, int]] = []

    def durable(outcome: FlushOutcome) -> None:
        steps.append("durable")
        handed.append((outcome, counted_events(clickhouse)))

    # when it is written
    outcome = writer.write([SourceRecord(0, n, e.to_json()) for n, e in enumerate(events)], durable=durable)

    # then the outcome, naming every scope and event, came between the totals and the events
    assert steps == ["totals", "durable", "events"]
    assert handed == [(outcome, 0)]
    assert counted_events(clickhouse) == 12
    assert outcome.counted == 12
    assert outcome.scopes == {
        scope
        for e in events
        for scope in scopes_of(e.key_hash, e.user_id, e.team_id, e.org_id, e.end_user, tags=(), provider=e.provider)
    }


def test_a_flush_fenced_before_its_totals_hands_nothing_over(clickhouse: ClickhouseStore) -> None:
    # given an owner whose partition another aggregator claimed at a later epoch
    stale, heir = owners(clickhouse)
    heir.claim(clickhouse)
    handed: list[FlushOutcome] = []
    writer = BatchWriter(store=SpendStore(clickhouse=clickhouse), topic=TOPIC, dedup_horizon_s=600)

    # when the stale owner writes a batch
    with pytest.raises(OwnershipLostError):
        writer.write([SourceRecord(0, 0, make_event().to_json())], stale.fence, durable=handed.append)

    # then nothing was handed over to announce, and nothing written
    assert handed == []
    assert counted_events(clickhouse) == 0


def test_a_claim_between_the_totals_and_the_events_fails_the_flush(clickhouse: ClickhouseStore) -> None:
    # given an owner whose partition another aggregator claims just after its totals went in
    stale, heir = owners(clickhouse)
    handed: list[FlushOutcome] = []

    def durable(outcome: FlushOutcome) -> None:
        handed.append(outcome)
        heir.claim(clickhouse)

    writer = BatchWriter(store=SpendStore(clickhouse=clickhouse), topic=TOPIC, dedup_horizon_s=600)

    # when the stale owner writes a batch
    with pytest.raises(OwnershipLostError):
        writer.write([SourceRecord(0, 0, make_event().to_json())], stale.fence, durable=durable)

    # then its totals were announced, its copy into events was fenced, and the flush failed
    assert [outcome.counted for outcome in handed] == [1]
    assert counted_events(clickhouse) == 0
