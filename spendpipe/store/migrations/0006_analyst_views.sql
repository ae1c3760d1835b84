-- Views for analysts: spend as people ask for it, without knowing how the tables are
-- kept. Each view sums at read time (`spend_totals` is an AggregatingMergeTree: rows of one key
-- are summed by background merges, so a bare SELECT can show a key twice), and none shows the
-- aggregator's bookkeeping rows (window 'watermark', scope_type 'ingest'). Money stays exact:
-- `spend` is Decimal(76, 24), as in `spend_totals`, and the views over `events` widen `cost` to it
-- before summing (a Decimal(38, 24) sum wraps silently, see 0005). Views hold no data: dropping
-- and recreating one loses nothing. schemas/clickhouse/views/ has each as the server shows it.
--
-- spend_by_scope: one row per (window, window_start, scope_type, scope_id), all models together.
CREATE VIEW IF NOT EXISTS spend_by_scope AS
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

-- spend_by_model: the same per model (LiteLLM's model group when the call had one).
CREATE VIEW IF NOT EXISTS spend_by_model AS
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

-- spend_by_tag: per request tag and hour (UTC) of the call, from `events`. A call with two tags
-- counts under each; a call without tags under none, so tags do not add up to the total.
CREATE VIEW IF NOT EXISTS spend_by_tag AS
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

-- top_spenders: every scope ranked by spend within its window kind and scope type, in the
-- window that contains now (UTC; weeks start on Sunday, as the totals' weeks do).
CREATE VIEW IF NOT EXISTS top_spenders AS
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

-- spend_by_session: per agent session, from `events`; calls without a session apart.
CREATE VIEW IF NOT EXISTS spend_by_session AS
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
