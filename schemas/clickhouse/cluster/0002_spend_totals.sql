-- clickhouse/migrations/0002_spend_totals.sql, run with SPENDPIPE_CLICKHOUSE__CLUSTER=spendpipe (spendpipe/store/cluster.py)
CREATE TABLE IF NOT EXISTS spend_totals ON CLUSTER 'spendpipe'
(
    window            LowCardinality(String),
    window_start      DateTime('UTC'),
    scope_type        LowCardinality(String),
    scope_id          String,
    model             String,
    spend             SimpleAggregateFunction(sum, Decimal(38, 24)),
    requests          SimpleAggregateFunction(sum, UInt64),
    failures          SimpleAggregateFunction(sum, UInt64),
    cache_hits        SimpleAggregateFunction(sum, UInt64),
    prompt_tokens     SimpleAggregateFunction(sum, UInt64),
    completion_tokens SimpleAggregateFunction(sum, UInt64),
    total_tokens      SimpleAggregateFunction(sum, UInt64),
    ingest_offset     SimpleAggregateFunction(max, Int64)
)
ENGINE = ReplicatedAggregatingMergeTree('/clickhouse/tables/{shard}/{database}/{table}', '{replica}')
ORDER BY (scope_type, scope_id, window, window_start, model);
