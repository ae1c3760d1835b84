-- Exact windowed totals per scope: one row per (window, window_start, scope, model) after
-- merges. model = '' is the total over all models. Always read with sum(): rows of the same
-- key are summed by merges in the background, not at insert time.
--
-- Rows with window = 'watermark' (scope_type 'ingest', scope_id '<topic>:<partition>') are the
-- aggregator's exactly-once record: the highest Kafka offset whose events these totals include.
-- They are written in the same insert as the totals they cover, so both land or neither does.
CREATE TABLE IF NOT EXISTS spend_totals
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
ENGINE = AggregatingMergeTree
ORDER BY (scope_type, scope_id, window, window_start, model);
