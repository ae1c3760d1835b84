CREATE VIEW budget_utilisation
(
    `scope_type` LowCardinality(String),
    `scope_id` String,
    `model` String,
    `duration` String,
    `window_start` DateTime('UTC'),
    `window_end` Nullable(DateTime('UTC')),
    `cap` Decimal(76, 24),
    `spend` Decimal(76, 24),
    `remaining` Decimal(76, 24),
    `used` Float64,
    `spend_reset_at` Nullable(DateTime('UTC')),
    `budget_published_at` DateTime64(3, 'UTC')
)
AS SELECT
    c.scope_type AS scope_type,
    c.scope_id AS scope_id,
    c.model AS model,
    c.duration AS duration,
    c.window_start AS window_start,
    c.window_end AS window_end,
    c.cap_usd AS cap,
    sumIf(t.spend, (t.window_start >= c.window_start) AND ((c.window_end IS NULL) OR (t.window_start < c.window_end))) AS spend,
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
        multiIf(calendar = 'minute', toStartOfMinute(now('UTC')), calendar = 'hour', toStartOfHour(now('UTC')), calendar = 'day', toStartOfDay(now('UTC')), calendar = 'week', toDateTime(toStartOfWeek(now('UTC'), 0), 'UTC'), calendar = 'month', toDateTime(toStartOfMonth(now('UTC')), 'UTC'), calendar = 'lifetime', toDateTime(0, 'UTC'), toDateTime(intDiv(toUnixTimestamp(now('UTC')), greatest(period_s, 1)) * period_s, 'UTC')) AS window_start,
        multiIf(calendar = 'minute', window_start + toIntervalMinute(1), calendar = 'hour', window_start + toIntervalHour(1), calendar = 'day', window_start + toIntervalDay(1), calendar = 'week', window_start + toIntervalDay(7), calendar = 'month', window_start + toIntervalMonth(1), calendar = 'lifetime', NULL, window_start + toIntervalSecond(period_s)) AS window_end
    FROM budget_history
    FINAL
    WHERE (cap IS NOT NULL) AND ((scope, (published_at, partition, offset)) IN (
        SELECT
            scope,
            max((published_at, partition, offset))
        FROM budget_history
        GROUP BY scope
    ))
) AS c
LEFT JOIN
(
    SELECT
        scope_type,
        scope_id,
        model,
        window,
        window_start,
        sum(spend) AS spend
    FROM spend_totals
    WHERE (window != 'watermark') AND (scope_type != 'ingest')
    GROUP BY
        scope_type,
        scope_id,
        model,
        window,
        window_start
) AS t ON (t.scope_type = c.scope_type) AND (t.scope_id = c.scope_id) AND (t.model = c.model) AND (t.window = c.rows_window)
GROUP BY
    c.scope_type,
    c.scope_id,
    c.model,
    c.duration,
    c.window_start,
    c.window_end,
    c.cap_usd,
    c.spend_reset_at,
    c.published_at;
