CREATE VIEW blocks_history
(
    `decided_at` DateTime64(3, 'UTC'),
    `scope_type` LowCardinality(String),
    `scope_id` String,
    `model` String,
    `kind` LowCardinality(String),
    `rate_limit_type` LowCardinality(String),
    `action` String,
    `version` UInt64,
    `spend` Nullable(Decimal(76, 24)),
    `cap` Nullable(Decimal(76, 24)),
    `window` String,
    `expires_at` Nullable(DateTime64(3, 'UTC')),
    `reason` String
)
AS SELECT
    decided_at,
    scope_type,
    scope_id,
    model,
    kind,
    rate_limit_type,
    if(blocked, 'block', 'unblock') AS action,
    version,
    spend,
    cap,
    window,
    expires_at,
    reason
FROM decision_history
FINAL;
