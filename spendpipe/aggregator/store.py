"""The aggregator's reads and writes in ClickHouse: events, totals and their watermarks."""

from collections.abc import Sequence
from datetime import datetime
from operator import attrgetter
from typing import Any

import pyarrow as pa

from spendpipe.aggregator.dedup import CONTENT_COLUMNS, Origin, content_digest
from spendpipe.aggregator.rollup import ROLLUP_SQL, STAGE_TABLE, rows_after
from spendpipe.contracts.events import SpendEvent
from spendpipe.contracts.money import COST_PRECISION, COST_SCALE
from spendpipe.platform.clickhouse import ClickhouseStore
from spendpipe.store.totals import INGEST_SCOPE_TYPE, WATERMARK_WINDOW

EVENT_SCHEMA = pa.schema(
    [
        ("event_id", pa.string()),
        ("occurred_at", pa.timestamp("us", tz="UTC")),
        ("ingested_at", pa.timestamp("ms", tz="UTC")),
        ("key_hash", pa.string()),
        ("key_alias", pa.string()),
        ("user_id", pa.string()),
        ("team_id", pa.string()),
        ("org_id", pa.string()),
        ("end_user", pa.string()),
        ("model", pa.string()),
        ("model_group", pa.string()),
        ("billed_model", pa.string()),
        ("provider", pa.string()),
        ("call_type", pa.string()),
        ("prompt_tokens", pa.uint64()),
        ("completion_tokens", pa.uint64()),
        ("total_tokens", pa.uint64()),
        ("cost", pa.decimal128(COST_PRECISION, COST_SCALE)),
        ("cache_hit", pa.bool_()),
        ("status", pa.string()),
        ("error_class", pa.string()),
        ("latency_ms", pa.float64()),
        ("request_tags", pa.list_(pa.string())),
        ("gateway_id", pa.string()),
        ("schema_version", pa.uint8()),
        ("kafka_topic", pa.string()),
        ("kafka_partition", pa.uint32()),
        ("kafka_offset", pa.int64()),
        ("agent_id", pa.string()),
        ("session_id", pa.string()),
    ]
)
"""The `events` table's columns, in its order, as Arrow types. Absent labels travel as nulls
and land as '' (ClickHouse's `input_format_null_as_default`). Decimals convert exactly."""

_FROM_THE_EVENT = [name for name in EVENT_SCHEMA.names if name in SpendEvent.model_fields]
_read_fields = attrgetter(*_FROM_THE_EVENT)


_NO_LIMIT = 2**64 - 1
ONE_PART = (
    f" SETTINGS max_insert_threads = 1, min_insert_block_size_rows = {_NO_LIMIT}, "
    f"min_insert_block_size_bytes = {_NO_LIMIT}"
)
"""An `INSERT … SELECT` writes one part only if its whole result is squashed into one block, in
one thread: by default ClickHouse cuts blocks at about 1M rows or 256 MiB, and a server may
insert with several threads. A flush's inserts are all-or-nothing only as one part."""


_CONTENT = ", ".join(CONTENT_COLUMNS)


def _origin(row: Sequence[Any]) -> Origin:
    """(partition, offset, *CONTENT_COLUMNS) as read from `events`."""
    return Origin(int(row[0]), int(row[1]), content_digest(row[2:]))


def source_name(topic: str, partition: int) -> str:
    return f"{topic}:{partition}"


class SpendStore:
    """Blocking calls; the aggregator runs them on the ClickHouse thread (`store.run`)."""

    def __init__(self, *, clickhouse: ClickhouseStore) -> None:
        self._clickhouse = clickhouse

    def totals_watermarks(self, topic: str) -> dict[int, int]:
        rows = self._clickhouse.rows(
            "SELECT scope_id, max(ingest_offset) FROM spend_totals "
            "WHERE scope_type = {scope_type:String} AND window = {window:String} "
            "AND startsWith(scope_id, {prefix:String}) GROUP BY scope_id",
            {"scope_type": INGEST_SCOPE_TYPE, "window": WATERMARK_WINDOW, "prefix": f"{topic}:"},
        )
        return {int(scope_id.rsplit(":", 1)[1]): int(offset) for scope_id, offset in rows}

    def events_watermarks(self, topic: str) -> dict[int, int]:
        rows = self._clickhouse.rows(
            "SELECT kafka_partition, max(kafka_offset) FROM events "
            "WHERE kafka_topic = {topic:String} GROUP BY kafka_partition",
            {"topic": topic},
        )
        return {int(partition): int(offset) for partition, offset in rows}

    def event_ids_ingested_since(self, since: datetime) -> list[tuple[str, datetime, Origin]]:
        rows = self._clickhouse.rows(
            f"SELECT event_id, ingested_at, kafka_partition, kafka_offset, {_CONTENT} FROM events "
            "WHERE ingested_at >= {since:DateTime64(3)}",
            {"since": since},
        )
        return [(str(row[0]), row[1], _origin(row[2:])) for row in rows]

    def existing_event_ids(self, event_ids: Sequence[str]) -> dict[str, Origin]:
        """Each of `event_ids` found in `events`, with the record it was first counted from."""
        if not event_ids:
            return {}
        rows = self._clickhouse.rows(
            f"SELECT event_id, argMin(tuple(kafka_partition, kafka_offset, {_CONTENT}), ingested_at) FROM events "
            "WHERE event_id IN {ids:Array(String)} GROUP BY event_id",
            {"ids": list(event_ids)},
        )
        return {str(event_id): _origin(first) for event_id, first in rows}

    def stage(self, events: Sequence[tuple[SpendEvent, int, int]], *, topic: str, ingested_at: datetime) -> None:
        """Replace the stage's contents with `(event, partition, offset)` triples. The stage is
        a temporary table of this store's session: no other client sees it."""
        self._clickhouse.command(
            f"CREATE TEMPORARY TABLE IF NOT EXISTS {STAGE_TABLE} ENGINE = Memory AS SELECT * FROM events LIMIT 0"
        )
        self._clickhouse.command(f"TRUNCATE TABLE {STAGE_TABLE}")
        if events:
            self._clickhouse.insert_arrow(STAGE_TABLE, _event_table(events, topic, ingested_at))

    def insert_totals(self, *, after: dict[int, int], watermarks: dict[str, int]) -> None:
        """Totals of the staged events past `after` (per partition), with the watermark rows, in
        one insert."""
        sources = sorted(watermarks)
        self._clickhouse.command(
            ROLLUP_SQL.replace("{new_rows}", rows_after(after)) + ONE_PART,
            {"sources": sources, "offsets": [watermarks[source] for source in sources]},
        )

    def insert_events(self, *, after: dict[int, int]) -> None:
        """The staged events past `after` (per partition) into `events`, as one part."""
        self._clickhouse.command(f"INSERT INTO events SELECT * FROM {STAGE_TABLE} WHERE {rows_after(after)}{ONE_PART}")


def _event_table(events: Sequence[tuple[SpendEvent, int, int]], topic: str, ingested_at: datetime) -> pa.Table:
    """Column by column: one attribute read per field and event, the rest in C (zip, Arrow)."""
    fields = dict(zip(_FROM_THE_EVENT, zip(*(_read_fields(event) for event, _, _ in events), strict=True), strict=True))
    count = len(events)
    columns: dict[str, Sequence[object]] = {
        **fields,
        "ingested_at": [ingested_at] * count,
        "billed_model": [group or model for group, model in zip(fields["model_group"], fields["model"], strict=True)],
        "request_tags": [list(tags) for tags in fields["request_tags"]],
        "kafka_topic": [topic] * count,
        "kafka_partition": [partition for _, partition, _ in events],
        "kafka_offset": [offset for _, _, offset in events],
    }
    return pa.Table.from_arrays(
        [pa.array(columns[field.name], type=field.type) for field in EVENT_SCHEMA], schema=EVENT_SCHEMA
    )
