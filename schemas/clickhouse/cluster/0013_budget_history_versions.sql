-- clickhouse/migrations/0013_budget_history_versions.sql, run with SPENDPIPE_CLICKHOUSE__CLUSTER=spendpipe (spendpipe/store/cluster.py)
ALTER TABLE budget_history ON CLUSTER 'spendpipe' ADD COLUMN IF NOT EXISTS version UInt64 DEFAULT 0;

CREATE OR REPLACE VIEW budget_utilisation ON CLUSTER 'spendpipe' AS
WITH
    (SELECT max(start) FROM calendar_windows WHERE window = 'day' AND start <= now('UTC')) AS zone_day,
    (SELECT min(start) FROM calendar_windows WHERE window = 'day' AND start > now('UTC')) AS zone_day_end,
    (SELECT max(start) FROM calendar_windows WHERE window = 'week' AND start <= now('UTC')) AS zone_week,
    (SELECT min(start) FROM calendar_windows WHERE window = 'week' AND start > now('UTC')) AS zone_week_end,
    (SELECT max(start) FROM calendar_windows WHERE window = 'month' AND start <= now('UTC')) AS zone_month,
    (SELECT min(start) FROM calendar_windows WHERE window = 'month' AND start > now('UTC')) AS zone_month_end,
    (SELECT max(day_number) FROM calendar_windows WHERE window = 'day' AND start <= now('UTC')) AS today,
    (SELECT groupArray((day_number, start)) FROM calendar_windows WHERE window = 'day') AS zone_days
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
        today - today % greatest(intDiv(period_s, 86400), 1) AS run_number,
        arrayFirst(d -> d.1 = run_number, zone_days).2 AS run_start,
        arrayFirst(d -> d.1 = run_number + intDiv(period_s, 86400), zone_days).2 AS run_end,
        multiIf(
            calendar = 'minute', toStartOfMinute(now('UTC')),
            calendar = 'hour', toStartOfHour(now('UTC')),
            calendar = 'day', if(toUnixTimestamp(zone_day) = 0, toStartOfDay(now('UTC')), zone_day),
            calendar = 'week',
                if(toUnixTimestamp(zone_week) = 0, toDateTime(toStartOfWeek(now('UTC'), 0), 'UTC'), zone_week),
            calendar = 'month',
                if(toUnixTimestamp(zone_month) = 0, toDateTime(toStartOfMonth(now('UTC')), 'UTC'), zone_month),
            calendar = 'lifetime', toDateTime(0, 'UTC'),
            period_s % 86400 = 0 AND toUnixTimestamp(run_start) != 0, run_start,
            toDateTime(intDiv(toUnixTimestamp(now('UTC')), greatest(period_s, 1)) * period_s, 'UTC')
        ) AS window_start,
        multiIf(
            calendar = 'minute', window_start + INTERVAL 1 MINUTE,
            calendar = 'hour', window_start + INTERVAL 1 HOUR,
            calendar = 'day', if(toUnixTimestamp(zone_day_end) = 0, window_start + INTERVAL 1 DAY, zone_day_end),
            calendar = 'week', if(toUnixTimestamp(zone_week_end) = 0, window_start + INTERVAL 7 DAY, zone_week_end),
            calendar = 'month',
                if(toUnixTimestamp(zone_month_end) = 0, window_start + INTERVAL 1 MONTH, zone_month_end),
            calendar = 'lifetime', NULL,
            period_s % 86400 = 0 AND toUnixTimestamp(run_end) != 0, run_end,
            window_start + toIntervalSecond(period_s)
        ) AS window_end
    FROM budget_history FINAL
    WHERE cap IS NOT NULL
      AND (scope, (version, published_at, partition, offset)) IN (
          SELECT scope, max((version, published_at, partition, offset)) FROM budget_history GROUP BY scope
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
