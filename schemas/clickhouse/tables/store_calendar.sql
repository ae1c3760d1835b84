CREATE TABLE store_calendar
(
    `timezone` String,
    `week_start` LowCardinality(String),
    `recorded_at` DateTime64(6, 'UTC') DEFAULT now64(6)
)
ENGINE = MergeTree
ORDER BY recorded_at
SETTINGS index_granularity = 8192;
