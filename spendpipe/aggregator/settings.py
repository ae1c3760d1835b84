"""Settings of the aggregator (env prefix `SPENDPIPE_`, `__` between section and field)."""

from pydantic import Field, model_validator

from spendpipe.platform.settings import PipelineSettings
from spendpipe.store.sql_endpoint.settings import SqlEndpointSettings


class AggregatorSettings(PipelineSettings):
    group_id: str = Field(default="spendpipe-aggregator", min_length=1)
    batch_size: int = Field(default=100_000, ge=1, le=100_000)
    """Most events per flush (one ClickHouse insert per table). Kept well below ClickHouse's
    `min_insert_block_size_rows` (about 1M): an insert below it is squashed into one part, which
    is what makes a flush all-or-nothing. A batch grows towards it only while the flush before
    it runs (`intake`): a quiet pipeline flushes what it has as soon as the writer is free."""
    flush_interval_ms: int = Field(default=100, ge=1, le=60_000)
    """Longest an event waits in Kafka's fetch before it is read: the broker answers a fetch
    when it has `fetch_min_bytes` or this much time has passed."""
    fetch_min_bytes: int = Field(default=1, ge=1)
    """What the broker waits for before it answers a fetch (up to `flush_interval_ms`). 1: an
    event is read as soon as it is on the topic; under load the batches grow anyway, while the
    flush before them runs (`intake`)."""
    dedup_horizon_s: float = Field(default=600.0, ge=60)
    """How long counted event ids are remembered in memory; older duplicates are looked up in ClickHouse."""
    future_allowance_s: float = Field(default=300.0, ge=0)
    """How far ahead of the aggregator's clock an event may be dated (gateway clocks run fast,
    queues replay): a later `occurred_at` is dead-lettered. It must be below `dedup_horizon_s`:
    an event's id is remembered for the horizon, and copies dated earlier than horizon minus
    allowance are looked up in `events` instead."""
    parse_in_clickhouse_from: int = Field(default=5_000, ge=1)
    """Batches of at least this many records are parsed and checked by ClickHouse, smaller ones
    by pydantic (same verdicts; ClickHouse's statement costs a fixed ~0.3 s to analyse, pydantic
    ~40 µs a record). 1 sends every batch to ClickHouse."""
    retry_backoff_s: float = Field(default=1.0, gt=0)
    """Pause after a failed flush before the batch is read again."""
    sql_endpoint: SqlEndpointSettings = SqlEndpointSettings()

    @model_validator(mode="after")
    def _allowance_within_horizon(self) -> "AggregatorSettings":
        if self.future_allowance_s >= self.dedup_horizon_s:
            raise ValueError(
                f"future_allowance_s ({self.future_allowance_s:g}) must be below dedup_horizon_s "
                f"({self.dedup_horizon_s:g}): ids are remembered for the horizon"
            )
        return self
