-- store_calendar: the calendar the day, week and month rows of `spend_totals` start
-- on (SPENDPIPE_BUDGET_TIMEZONE, SPENDPIPE_WEEK_START). The first row written wins; a service
-- configured otherwise refuses to start, naming both (spendpipe/store/calendar.py).
CREATE TABLE IF NOT EXISTS store_calendar
(
    timezone    String,
    week_start  LowCardinality(String),
    recorded_at DateTime64(6, 'UTC') DEFAULT now64(6)
)
ENGINE = MergeTree
ORDER BY recorded_at;
