CREATE VIEW spend_by_session
(
    `agent_id` String,
    `session_id` String,
    `first_call` DateTime64(6, 'UTC'),
    `last_call` DateTime64(6, 'UTC'),
    `spend` Decimal(76, 24),
    `requests` UInt64,
    `failures` UInt64,
    `total_tokens` UInt128
)
AS SELECT
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
GROUP BY
    agent_id,
    session_id;
