CREATE VIEW spend_by_scope
(
    `window` LowCardinality(String),
    `window_start` DateTime('UTC'),
    `scope_type` LowCardinality(String),
    `scope_id` String,
    `spend` Decimal(76, 24),
    `requests` UInt64,
    `failures` UInt64,
    `cache_hits` UInt64,
    `prompt_tokens` UInt128,
    `completion_tokens` UInt128,
    `total_tokens` UInt128
)
AS SELECT
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
WHERE (model = '') AND (window != 'watermark') AND (scope_type != 'ingest')
GROUP BY
    window,
    window_start,
    scope_type,
    scope_id;
