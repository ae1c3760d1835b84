-- clickhouse/migrations/0011_tag_view_as_scopes.sql, run with SPENDPIPE_CLICKHOUSE__CLUSTER=spendpipe (spendpipe/store/cluster.py)
CREATE OR REPLACE VIEW spend_by_tag ON CLUSTER 'spendpipe' AS
SELECT
    arrayJoin(arraySlice(arrayFilter((t, i) -> t != '' AND NOT match(t, '^<\\+[0-9]+ more>$') AND indexOf(request_tags, t) = i, request_tags, arrayEnumerate(request_tags)), 1, 32)) AS tag,
    toStartOfHour(occurred_at) AS hour,
    sum(toDecimal256(cost, 24)) AS spend,
    count() AS requests,
    countIf(status = 'failure') AS failures,
    sum(toUInt128(prompt_tokens)) AS prompt_tokens,
    sum(toUInt128(completion_tokens)) AS completion_tokens,
    sum(toUInt128(total_tokens)) AS total_tokens
FROM events
GROUP BY tag, hour;
