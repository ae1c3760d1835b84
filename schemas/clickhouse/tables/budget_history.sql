CREATE TABLE budget_history
(
    `topic` LowCardinality(String),
    `partition` UInt32,
    `offset` UInt64,
    `cap_index` UInt16,
    `published_at` DateTime64(3, 'UTC'),
    `scope` String,
    `scope_type` LowCardinality(String),
    `scope_id` String,
    `deleted` Bool,
    `model` String,
    `duration` String,
    `calendar` LowCardinality(String),
    `period_s` UInt32,
    `rows_window` LowCardinality(String),
    `cap` Nullable(Decimal(76, 24)),
    `spend_reset_at` Nullable(DateTime('UTC')),
    `budget` String,
    `recorded_at` DateTime64(3, 'UTC') DEFAULT now64(3),
    `version` UInt64 DEFAULT 0
)
ENGINE = ReplacingMergeTree
ORDER BY (topic, partition, offset, cap_index)
SETTINGS index_granularity = 8192;
