-- clickhouse/migrations/0006_analyst_views.sql, run with SPENDPIPE_CLICKHOUSE__CLUSTER=spendpipe (spendpipe/store/cluster.py)
CREATE VIEW IF NOT EXISTS spend_by_scope ON CLUSTER 'spendpipe' AS
SELECT
    window,
    window_start,
    scope_type,
    scope_id,
    sum(spend) AS spend,
    sum(requests) AS requests,
    sum(failures) AS failures,
    sum(cache_hits) AS cache_hits,
    sum(prompt_tokens) AS prompt_tokens,
    sum(completion_tokens) AS completion_tokens,
    sum(total_tokens) AS total_tokens
FROM spend_totals
WHERE model = '' AND window != 'watermark' AND scope_type != 'ingest'
GROUP BY window, window_start, scope_type, scope_id;

CREATE VIEW IF NOT EXISTS spend_by_model ON CLUSTER 'spendpipe' AS
SELECT
    window,
    window_start,
    scope_type,
    scope_id,
    model,
    sum(spend) AS spend,
    sum(requests) AS requests,
    sum(failures) AS failures,
    sum(cache_hits) AS cache_hits,
    sum(prompt_tokens) AS prompt_tokens,
    sum(completion_tokens) AS completion_tokens,
    sum(total_tokens) AS total_tokens
FROM spend_totals
WHERE model != '' AND window != 'watermark' AND scope_type != 'ingest'
GROUP BY window, window_start, scope_type, scope_id, model;

CREATE VIEW IF NOT EXISTS spend_by_tag ON CLUSTER 'spendpipe' AS
SELECT
    arrayJoin(request_tags) AS tag,
    toStartOfHour(occurred_at) AS hour,
    sum(toDecimal256(cost, 24)) AS spend,
    count() AS requests,
    countIf(status = 'failure') AS failures,
    sum(toUInt128(prompt_tokens)) AS prompt_tokens,
    sum(toUInt128(completion_tokens)) AS completion_tokens,
    sum(toUInt128(total_tokens)) AS total_tokens
FROM events
GROUP BY tag, hour;

CREATE VIEW IF NOT EXISTS top_spenders ON CLUSTER 'spendpipe' AS
SELECT
    window,
    window_start,
    scope_type,
    row_number() OVER (PARTITION BY window, scope_type ORDER BY spend DESC, scope_id) AS rank,
    scope_id,
    spend,
    requests
FROM spend_by_scope
WHERE window_start = multiIf(
    window = 'minute', toStartOfMinute(now('UTC')),
    window = 'hour', toStartOfHour(now('UTC')),
    window = 'day', toStartOfDay(now('UTC')),
    window = 'week', toDateTime(toStartOfWeek(now('UTC'), 0), 'UTC'),
    toDateTime(toStartOfMonth(now('UTC')), 'UTC')
);

CREATE VIEW IF NOT EXISTS spend_by_session ON CLUSTER 'spendpipe' AS
SELECT
    agent_id,
    session_id,
    min(occurred_at) AS first_call,
    max(occurred_at) AS last_call,
    sum(toDecimal256(cost, 24)) AS spend,
    count() AS requests,
    countIf(status = 'failure') AS failures,
    sum(toUInt128(total_tokens)) AS total_tokens
FROM events
WHERE session_id != ''
GROUP BY agent_id, session_id;
