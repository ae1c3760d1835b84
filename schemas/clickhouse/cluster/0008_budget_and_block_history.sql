-- clickhouse/migrations/0008_budget_and_block_history.sql, run with SPENDPIPE_CLICKHOUSE__CLUSTER=spendpipe (spendpipe/store/cluster.py)
CREATE TABLE IF NOT EXISTS decision_history ON CLUSTER 'spendpipe'
(
    scope           String,
    scope_type      LowCardinality(String),
    scope_id        String,
    model           String,
    kind            LowCardinality(String),
    rate_limit_type LowCardinality(String),
    version         UInt64,
    blocked         Bool,
    reason          String,
    window          String,
    spend           Nullable(Decimal(76, 24)),
    cap             Nullable(Decimal(76, 24)),
    decided_at      DateTime64(3, 'UTC'),
    expires_at      Nullable(DateTime64(3, 'UTC')),
    recorded_at     DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/{database}/{table}', '{replica}')
ORDER BY (scope, model, kind, version);

CREATE TABLE IF NOT EXISTS budget_history ON CLUSTER 'spendpipe'
(
    topic          LowCardinality(String),
    partition      UInt32,
    offset         UInt64,
    cap_index      UInt16,
    published_at   DateTime64(3, 'UTC'),
    scope          String,
    scope_type     LowCardinality(String),
    scope_id       String,
    deleted        Bool,
    model          String,
    duration       String,
    calendar       LowCardinality(String),
    period_s       UInt32,
    rows_window    LowCardinality(String),
    cap            Nullable(Decimal(76, 24)),
    spend_reset_at Nullable(DateTime('UTC')),
    budget         String,
    recorded_at    DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/{database}/{table}', '{replica}')
ORDER BY (topic, partition, offset, cap_index);

CREATE VIEW IF NOT EXISTS blocks_history ON CLUSTER 'spendpipe' AS
SELECT
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
FROM decision_history FINAL;

CREATE VIEW IF NOT EXISTS budget_utilisation ON CLUSTER 'spendpipe' AS
SELECT
    c.scope_type AS scope_type,
    c.scope_id AS scope_id,
    c.model AS model,
    c.duration AS duration,
    c.window_start AS window_start,
    c.window_end AS window_end,
    c.cap_usd AS cap,
    sumIf(t.spend, t.window_start >= c.window_start AND (c.window_end IS NULL OR t.window_start < c.window_end))
        AS spend,
    c.cap_usd - spend AS remaining,
    toFloat64(spend) / toFloat64(c.cap_usd) AS used,
    c.spend_reset_at AS spend_reset_at,
    c.published_at AS budget_published_at
FROM
(
    SELECT
        scope_type,
        scope_id,
        model,
        if(calendar = 'lifetime', 'lifetime', duration) AS duration,
        rows_window,
        assumeNotNull(cap) AS cap_usd,
        spend_reset_at,
        published_at,
        multiIf(
            calendar = 'minute', toStartOfMinute(now('UTC')),
            calendar = 'hour', toStartOfHour(now('UTC')),
            calendar = 'day', toStartOfDay(now('UTC')),
            calendar = 'week', toDateTime(toStartOfWeek(now('UTC'), 0), 'UTC'),
            calendar = 'month', toDateTime(toStartOfMonth(now('UTC')), 'UTC'),
            calendar = 'lifetime', toDateTime(0, 'UTC'),
            toDateTime(intDiv(toUnixTimestamp(now('UTC')), greatest(period_s, 1)) * period_s, 'UTC')
        ) AS window_start,
        multiIf(
            calendar = 'minute', window_start + INTERVAL 1 MINUTE,
            calendar = 'hour', window_start + INTERVAL 1 HOUR,
            calendar = 'day', window_start + INTERVAL 1 DAY,
            calendar = 'week', window_start + INTERVAL 7 DAY,
            calendar = 'month', window_start + INTERVAL 1 MONTH,
            calendar = 'lifetime', NULL,
            window_start + toIntervalSecond(period_s)
        ) AS window_end
    FROM budget_history FINAL
    WHERE cap IS NOT NULL
      AND (scope, (published_at, partition, offset)) IN (
          SELECT scope, max((published_at, partition, offset)) FROM budget_history GROUP BY scope
      )
) AS c
LEFT JOIN
(
    SELECT scope_type, scope_id, model, window, window_start, sum(spend) AS spend
    FROM spend_totals
    WHERE window != 'watermark' AND scope_type != 'ingest'
    GROUP BY scope_type, scope_id, model, window, window_start
) AS t
ON t.scope_type = c.scope_type AND t.scope_id = c.scope_id AND t.model = c.model AND t.window = c.rows_window
GROUP BY
    c.scope_type, c.scope_id, c.model, c.duration, c.window_start, c.window_end, c.cap_usd, c.spend_reset_at,
    c.published_at;
