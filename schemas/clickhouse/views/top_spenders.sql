CREATE VIEW top_spenders
(
    `window` LowCardinality(String),
    `window_start` DateTime('UTC'),
    `scope_type` LowCardinality(String),
    `rank` UInt64,
    `scope_id` String,
    `spend` Decimal(76, 24),
    `requests` UInt64
)
AS WITH
    (
        SELECT max(start)
        FROM calendar_windows
        WHERE (window = 'day') AND (start <= now('UTC'))
    ) AS zone_day,
    (
        SELECT min(start)
        FROM calendar_windows
        WHERE (window = 'day') AND (start > now('UTC'))
    ) AS zone_day_end,
    (
        SELECT max(start)
        FROM calendar_windows
        WHERE (window = 'week') AND (start <= now('UTC'))
    ) AS zone_week,
    (
        SELECT min(start)
        FROM calendar_windows
        WHERE (window = 'week') AND (start > now('UTC'))
    ) AS zone_week_end,
    (
        SELECT max(start)
        FROM calendar_windows
        WHERE (window = 'month') AND (start <= now('UTC'))
    ) AS zone_month,
    (
        SELECT min(start)
        FROM calendar_windows
        WHERE (window = 'month') AND (start > now('UTC'))
    ) AS zone_month_end
SELECT
    window,
    window_start,
    scope_type,
    row_number() OVER (PARTITION BY window, scope_type ORDER BY spend DESC, scope_id ASC) AS rank,
    scope_id,
    spend,
    requests
FROM spend_by_scope
WHERE window_start = multiIf(window = 'minute', toStartOfMinute(now('UTC')), window = 'hour', toStartOfHour(now('UTC')), window = 'day', if(toUnixTimestamp(zone_day) = 0, toStartOfDay(now('UTC')), zone_day), window = 'week', if(toUnixTimestamp(zone_week) = 0, toDateTime(toStartOfWeek(now('UTC'), 0), 'UTC'), zone_week), if(toUnixTimestamp(zone_month) = 0, toDateTime(toStartOfMonth(now('UTC')), 'UTC'), zone_month));
