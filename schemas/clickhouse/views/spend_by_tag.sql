CREATE VIEW spend_by_tag
(
    `tag` String,
    `hour` DateTime('UTC'),
    `spend` Decimal(76, 24),
    `requests` UInt64,
    `failures` UInt64,
    `prompt_tokens` UInt128,
    `completion_tokens` UInt128,
    `total_tokens` UInt128
)
AS SELECT
    arrayJoin(arraySlice(arrayFilter((t, i) -> ((t != '') AND (NOT match(t, '^<\\+[0-9]+ more>$')) AND (indexOf(request_tags, t) = i)), request_tags, arrayEnumerate(request_tags)), 1, 32)) AS tag,
    toStartOfHour(occurred_at) AS hour,
    sum(toDecimal256(cost, 24)) AS spend,
    count() AS requests,
    countIf(status = 'failure') AS failures,
    sum(toUInt128(prompt_tokens)) AS prompt_tokens,
    sum(toUInt128(completion_tokens)) AS completion_tokens,
    sum(toUInt128(total_tokens)) AS total_tokens
FROM events
GROUP BY
    tag,
    hour;
