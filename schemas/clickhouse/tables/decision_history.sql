CREATE TABLE decision_history
(
    `scope` String,
    `scope_type` LowCardinality(String),
    `scope_id` String,
    `model` String,
    `kind` LowCardinality(String),
    `rate_limit_type` LowCardinality(String),
    `version` UInt64,
    `blocked` Bool,
    `reason` String,
    `window` String,
    `spend` Nullable(Decimal(76, 24)),
    `cap` Nullable(Decimal(76, 24)),
    `decided_at` DateTime64(3, 'UTC'),
    `expires_at` Nullable(DateTime64(3, 'UTC')),
    `recorded_at` DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree
ORDER BY (scope, model, kind, version)
SETTINGS index_granularity = 8192;
