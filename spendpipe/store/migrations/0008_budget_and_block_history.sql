-- Budgets and decisions in the store: the caps and the enforcer's blocks live on the
-- compacted topics `spend.budgets` and `spend.decisions`, where compaction keeps only the latest
-- record of each key. The process that runs the enforcer follows both topics and writes every
-- record it accepts (signature verified, as a gateway verifies it) into the two tables below, so
-- the history outlives compaction and SQL can set spend against caps. It reads both topics from
-- the beginning at each start: the tables are ReplacingMergeTrees keyed by a record's identity
-- (a decision's key and version; a budget record's partition and offset), so reading a record
-- again adds no row once merged, and the views read them with FINAL.
--
-- decision_history: one row per decision (block or unblock), as the enforcer published it.
CREATE TABLE IF NOT EXISTS decision_history
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
ENGINE = ReplacingMergeTree
ORDER BY (scope, model, kind, version);

-- budget_history: one row per cap of each budget record (a budget with three caps gives three
-- rows), and one row with a NULL cap for a record that caps no spend: a deletion (tombstone) or
-- a budget of rate limits only. The latest record of a scope is its budget in force.
-- `calendar` is the cap's calendar window (minute ... month), 'lifetime', or '' for a duration
-- aligned on the Unix epoch, `period_s` long; `rows_window` is the window of the `spend_totals`
-- rows its spend is summed from, as the enforcer reads it (store/totals.py, `grain`).
CREATE TABLE IF NOT EXISTS budget_history
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
ENGINE = ReplacingMergeTree
ORDER BY (topic, partition, offset, cap_index);

-- blocks_history: every block and unblock, oldest first per scope (by version).
CREATE VIEW IF NOT EXISTS blocks_history AS
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

-- budget_utilisation: each cap of each budget in force (the latest record of its scope), its
-- current window (UTC, weeks from Sunday; [window_start, window_end), window_end NULL for a
-- lifetime cap) and the spend in it, summed exactly from `spend_totals` as the enforcer sums it.
-- `used` is spend over cap as a float, for charts; `remaining` is exact, negative past the cap.
-- Not shown: caps a team or the global budget sets for each member or end customer
-- (max_budget_in_team, max_end_user_budget). A budget reset inside its window (`spend_reset_at`)
-- is counted here over the whole window, where the enforcer counts from the reset. (The inner
-- query names the cap `cap_usd`: an alias `cap` would shadow the column in its WHERE.)
CREATE VIEW IF NOT EXISTS budget_utilisation AS
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
