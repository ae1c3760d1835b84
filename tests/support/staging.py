"""Stage events the way the writer does (as their wire JSON, parsed by ClickHouse), for tests
of the SQL that reads the stage."""

from collections.abc import Sequence
from datetime import datetime

from spendpipe.aggregator.store import SourceRecord, SpendStore
from spendpipe.contracts.events import LATEST, SpendEvent


def stage(
    store: SpendStore, events: Sequence[tuple[SpendEvent, int, int]], *, topic: str, ingested_at: datetime
) -> None:
    """`(event, partition, offset)` triples into the stage; fails if any does not parse."""
    store.load_raw([SourceRecord(partition, offset, event.to_json()) for event, partition, offset in events])
    store.parse(topic=topic, ingested_at=ingested_at, latest=LATEST)
    assert store.dead_rows() == []
