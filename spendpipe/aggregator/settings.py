"""Settings of the aggregator (env prefix `SPENDPIPE_`, `__` between section and field)."""

from pydantic import Field, model_validator

from spendpipe.platform.settings import PipelineSettings
from spendpipe.store.sql_endpoint.settings import SqlEndpointSettings


class AggregatorSettings(PipelineSettings):
    group_id: str = Field(default="spendpipe-aggregator", min_length=1)
    batch_size: int = Field(default=200_000, ge=1, le=500_000)
    """Most events per flush (one ClickHouse insert per table, each one part: `store.ONE_PART`).
    A batch grows towards it only while the flush before it runs (`intake`): a quiet pipeline
    flushes what it has as soon as the writer is free, a backlog goes in batches this large.
    A flush pays a fixed cost (a few tenths of a second of CPU): on 2026-12-02,
    the writer alone took 0.79-0.88 s of CPU per 100,000 events in flushes of 200,000 against
    0.96-1.05 s in flushes of 100,000 (400,000: 0.80). The bound keeps a batch's sums inside
    the money type (`MAX_EVENT_COST` times it) and its records in memory twice over (the batch
    written and the one read meanwhile)."""
    flush_interval_ms: int = Field(default=20, ge=1, le=60_000)
    """Longest an event waits in Kafka's fetch before it is read: the broker answers a fetch
    when it has `fetch_min_bytes` or this much time has passed."""
    fetch_min_bytes: int = Field(default=65_536, ge=1)
    """What the broker waits for before it answers a fetch (up to `flush_interval_ms`). Under load
    records arrive in fetches of this size, not one fetch per producer request (at 10,000 events/s
    of about 550 bytes, one every 12 ms or so): less work on the event loop that also announces
    flushes and publishes decisions (enforcement p50 lower in 5 of 5 alternating runs
    on 2026-12-03, by 3-30 ms, docs/performance.md). The batches grow while the flush before them
    runs anyway (`intake`). 1: every record is read as soon as it is on the topic."""
    dedup_horizon_s: float = Field(default=600.0, ge=60, le=86_400)
    """How long counted event ids are remembered in memory; older duplicates are looked up in ClickHouse."""
    future_allowance_s: float = Field(default=300.0, ge=0, le=86_400)
    """How far ahead of the aggregator's clock an event may be dated (gateway clocks run fast,
    queues replay): a later `occurred_at` is dead-lettered. It must be below `dedup_horizon_s`:
    an event's id is remembered for the horizon, and copies dated earlier than horizon minus
    allowance are looked up in `events` instead."""
    canonical_from: int = Field(default=500, ge=1)
    """Batches of at least this many records are loaded into ClickHouse, which reads those in
    the gateways' canonical form (`parse.CANONICAL_SQL`, about 20 ms a statement and 3 µs a
    record); smaller batches go to pydantic (~40 µs a record) or, see below, the full check."""
    parse_in_clickhouse_from: int = Field(default=5_000, ge=1)
    """The records the canonical form did not take (all of a smaller batch) are parsed and
    checked by ClickHouse when there are at least this many, else by pydantic (same verdicts;
    ClickHouse's full check costs a fixed ~0.3 s to analyse). 1 sends them all to ClickHouse."""
    retry_backoff_s: float = Field(default=1.0, gt=0, le=300)
    """Pause after a failed flush before the batch is read again."""
    write_timeout_s: int = Field(default=30, ge=1, le=3600)
    """`max_execution_time` of every insert that counts: it has landed or failed this long after
    it started. Well above the slowest flush's insert (a 100,000-event flush's inserts take
    about 1 s on this machine kind): an insert that times out fails its flush."""
    owner_settle_s: float = Field(default=32.0, gt=0, le=3600)
    """How long an aggregator that acquired a partition waits after claiming it before it reads
    its watermarks and writes, when the earlier owner may still have an insert in flight (it
    crashed, was cut off, or did not say it was done). Must exceed `write_timeout_s`."""
    gc_young_threshold: int = Field(default=100_000, ge=0)
    """Python's first garbage-collection threshold while an aggregator runs in the process
    (`platform.gc_tuning`; Python's own is 700, 0 leaves it). With it the collector stops
    walking every batch's records again and again: on 2026-12-02 the aggregator wrote a million
    events at 100,000-103,000 a second against 87,000-89,000 with Python's, run alternately
    (docs/performance.md)."""
    session_timeout_ms: int = Field(default=10_000, ge=1_000)
    """Kafka group membership: a consumer silent this long (no heartbeat) loses its partitions."""
    max_poll_interval_ms: int = Field(default=300_000, ge=1_000)
    """Also the rebalance timeout: how long the group waits for a member to finish its flush in
    flight and rejoin before it reassigns the member's partitions without it."""
    metadata_max_age_ms: int = Field(default=60_000, ge=100)
    """How soon partitions added to the events topic are noticed (and the group rebalanced)."""
    sql_endpoint: SqlEndpointSettings = SqlEndpointSettings()

    @model_validator(mode="after")
    def _settle_past_timeout(self) -> "AggregatorSettings":
        if self.owner_settle_s <= self.write_timeout_s:
            raise ValueError(
                f"owner_settle_s ({self.owner_settle_s:g}) must exceed write_timeout_s ({self.write_timeout_s}): "
                "a new owner waits out every insert an earlier owner may have in flight"
            )
        return self

    @model_validator(mode="after")
    def _allowance_within_horizon(self) -> "AggregatorSettings":
        if self.future_allowance_s >= self.dedup_horizon_s:
            raise ValueError(
                f"future_allowance_s ({self.future_allowance_s:g}) must be below dedup_horizon_s "
                f"({self.dedup_horizon_s:g}): ids are remembered for the horizon"
            )
        return self
