CREATE TABLE spend_totals
(
    `window` LowCardinality(String),
    `window_start` DateTime('UTC'),
    `scope_type` LowCardinality(String),
    `scope_id` String,
    `model` String,
    `spend` SimpleAggregateFunction(sum, Decimal(76, 24)),
    `requests` SimpleAggregateFunction(sum, UInt64),
    `failures` SimpleAggregateFunction(sum, UInt64),
    `cache_hits` SimpleAggregateFunction(sum, UInt64),
    `prompt_tokens` SimpleAggregateFunction(sum, UInt128),
    `completion_tokens` SimpleAggregateFunction(sum, UInt128),
    `total_tokens` SimpleAggregateFunction(sum, UInt128),
    `ingest_offset` SimpleAggregateFunction(max, Int64)
)
ENGINE = AggregatingMergeTree
ORDER BY (scope_type, scope_id, window, window_start, model)
SETTINGS index_granularity = 8192;
