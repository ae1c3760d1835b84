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
AS SELECT
    window,
    window_start,
    scope_type,
    row_number() OVER (PARTITION BY window, scope_type ORDER BY spend DESC, scope_id ASC) AS rank,
    scope_id,
    spend,
    requests
FROM spend_by_scope
WHERE window_start = multiIf(window = 'minute', toStartOfMinute(now('UTC')), window = 'hour', toStartOfHour(now('UTC')), window = 'day', toStartOfDay(now('UTC')), window = 'week', toDateTime(toStartOfWeek(now('UTC'), 0), 'UTC'), toDateTime(toStartOfMonth(now('UTC')), 'UTC'));
