CREATE TABLE calendar_windows
(
    `window` LowCardinality(String),
    `start` DateTime('UTC'),
    `day_number` Int32
)
ENGINE = ReplacingMergeTree
ORDER BY (window, start)
SETTINGS index_granularity = 8192;
