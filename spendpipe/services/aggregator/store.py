"""The aggregator's reads and writes in ClickHouse: events, totals and their watermarks."""

from collections.abc import Sequence
from datetime import datetime

from spendpipe.platform.clickhouse import ClickhouseStore
from spendpipe.schemas.events import SpendEvent
from spendpipe.services.aggregator.rollup import INGEST_SCOPE_TYPE, TOTALS_COLUMNS, WATERMARK_WINDOW

EVENT_COLUMNS = (
    "event_id",
    "occurred_at",
    "ingested_at",
    "key_hash",
    "key_alias",
    "user_id",
    "team_id",
    "org_id",
    "end_user",
    "model",
    "model_group",
    "billed_model",
    "provider",
    "call_type",
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
    "cost",
    "cache_hit",
    "status",
    "error_class",
    "latency_ms",
    "request_tags",
    "gateway_id",
    "schema_version",
    "kafka_topic",
    "kafka_partition",
    "kafka_offset",
)


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

    def event_ids_ingested_since(self, since: datetime) -> list[tuple[str, datetime]]:
        rows = self._clickhouse.rows(
            "SELECT event_id, ingested_at FROM events WHERE ingested_at >= {since:DateTime64(3)}",
            {"since": since},
        )
        return [(str(event_id), ingested_at) for event_id, ingested_at in rows]

    def existing_event_ids(self, event_ids: Sequence[str]) -> set[str]:
        if not event_ids:
            return set()
        return {
            str(event_id)
            for event_id in self._clickhouse.column(
                "SELECT DISTINCT event_id FROM events WHERE event_id IN {ids:Array(String)}",
                {"ids": list(event_ids)},
            )
        }

    def insert_totals(self, columns: Sequence[Sequence[object]]) -> None:
        self._clickhouse.insert_columns("spend_totals", columns, TOTALS_COLUMNS)

    def insert_events(
        self,
        events: Sequence[tuple[SpendEvent, int, int]],
        *,
        topic: str,
        ingested_at: datetime,
    ) -> None:
        """Insert `(event, partition, offset)` triples as one block (one part)."""
        rows = [_event_row(event, topic, partition, offset, ingested_at) for event, partition, offset in events]
        columns = [list(column) for column in zip(*rows, strict=True)]
        self._clickhouse.insert_columns("events", columns, EVENT_COLUMNS)


def _event_row(event: SpendEvent, topic: str, partition: int, offset: int, ingested_at: datetime) -> tuple[object, ...]:
    return (
        event.event_id,
        event.occurred_at,
        ingested_at,
        event.key_hash or "",
        event.key_alias or "",
        event.user_id or "",
        event.team_id or "",
        event.org_id or "",
        event.end_user or "",
        event.model,
        event.model_group or "",
        event.billed_model,
        event.provider or "",
        event.call_type or "",
        event.prompt_tokens,
        event.completion_tokens,
        event.total_tokens,
        event.cost,
        event.cache_hit,
        event.status,
        event.error_class or "",
        event.latency_ms,
        list(event.request_tags),
        event.gateway_id,
        event.schema_version,
        topic,
        partition,
        offset,
    )
